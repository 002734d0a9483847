"""The tables of medians, costs, ratios and agreement (printed, and written to bench/RESULTS.md)."""

from __future__ import annotations

from bench.explain.comparison import cbpe_agreement, pca_agreement, ratios
from bench.explain.data import CBPE_METRICS, CBPE_TOLERANCE, PCA_TOLERANCE, SEGMENTS
from bench.monitoring.runner import SizeResult
from bench.monitoring.tables import mib, secs, times

ROWS = (  # label, what is timed, contender, key
    ("ours: **base window report**", "kept profile loaded + drift, fairness, latency, performance SQL (as today)",
     "base", "report_s"),
    (f"ours: **+ segments** ({len(SEGMENTS)})", "the same report for each segment: its kept profile + its window",
     "segments", "segments_s"),
    ("ours: **+ CBPE**, fit", "reference score/label counts + isotonic fit, kept in tower state", "cbpe", "fit_s"),
    ("ours: + CBPE, window", "one statement (calibrated cells) + the estimate", "cbpe", "window_s"),
    ("ours: + CBPE, the report with it", "the base report with the estimate in it (profile not loaded)", "cbpe",
     "report_with_s"),
    ("**NannyML CBPE**, fit", "CBPE.fit on the reference frame (calibration check + isotonic fit)", "nannyml_cbpe",
     "fit_s"),
    ("NannyML CBPE, estimate", "CBPE.estimate on the window frame (one chunk)", "nannyml_cbpe", "window_s"),
    ("NannyML CBPE: loading the frames", "DuckDB → pandas: score, prediction (, label)", "nannyml_cbpe", "load_s"),
    ("ours: **+ PCA drift**, fit", "moments, PCA, band of 10 reference chunks (3 statements), kept", "pca", "fit_s"),
    ("ours: + PCA drift, window", "one statement: the window's mean reconstruction error", "pca", "window_s"),
    ("ours: + PCA drift, the report with it", "the base report with the value in it (profile not loaded)", "pca",
     "report_with_s"),
    ("**NannyML** DataReconstructionDriftCalculator, fit", "fit on the reference frame (imputer, scaler, PCA, "
     "band)", "nannyml_pca", "fit_s"),
    ("NannyML reconstruction, calculate", "calculate on the window frame", "nannyml_pca", "window_s"),
    ("NannyML reconstruction: loading the frames", "DuckDB → pandas: 20 numerical features", "nannyml_pca",
     "load_s"),
)


def _runs(size: SizeResult, contender: str) -> str:
    n = len(size.ok(contender))
    if n == 0:
        return size.failure(contender) or "not run"
    return f"{n}" + (" (slow: not repeated)" if size.stopped.get(contender, "").startswith("not repeated") else "")


def size_table(size: SizeResult) -> list[str]:
    window = size.median("base", "rows_current")
    lines = [f"#### {size.rows:,}-row log (window: {int(window or 0):,} rows; reference: {size.reference_rows:,} "
             "rows)", "",
             "| contender | what is timed | seconds (median) | CPU seconds (median) | runs | peak RSS MiB (after "
             "imports) |", "|---|---|---:|---:|---|---:|"]
    shown: set[str] = set()
    for label, what, contender, key in ROWS:
        peak, imports = size.peak(contender), size.median(contender, "imports_rss_mib")
        memory = "—" if not peak else f"{mib(peak)} ({mib(imports)})" if contender not in shown else "″"
        shown.add(contender)
        lines.append(f"| {label} | {what} | {secs(size.median(contender, key))} | "
                     f"{secs(size.median(contender, 'cpu.' + key))} | {_runs(size, contender)} | {memory} |")
    segment_rows = (size.last("segments") or {}).get("segment_rows")
    per = (size.last("segments") or {}).get("per_segment_s") or {}
    if segment_rows:
        lines += ["", "Segments (window rows, seconds of the last run): " + ", ".join(
            f"{name} {n:,} rows {secs(per.get(name))} s" for name, n in segment_rows.items()) + "."]
    setup = []
    if size.generate_s is not None:
        setup.append(f"generating the data in DuckDB {size.generate_s:.0f} s (once; the file is cached)")
    if size.keep_profile_s is not None:
        setup.append(f"keeping the reference profiles of the whole log and the {len(SEGMENTS)} segments "
                     f"{size.keep_profile_s:.1f} s")
    if setup:
        lines += ["", "Set-up, not timed above: " + ", ".join(setup) + "."]
    return lines


RATIO_ROWS = (
    (f"{len(SEGMENTS)} segments' reports / the base report", "segments_vs_base", "cost on top"),
    ("CBPE window (statement + estimate) / the base report", "cbpe_window_vs_base", "cost on top"),
    ("PCA drift window (statement) / the base report", "pca_window_vs_base", "cost on top"),
    ("NannyML CBPE fit / ours", "nannyml_cbpe_fit", "speed-up"),
    ("NannyML CBPE estimate / our window", "nannyml_cbpe_window", "speed-up"),
    ("NannyML CBPE fit + estimate / ours", "nannyml_cbpe_total", "speed-up"),
    ("(NannyML CBPE + loading its frames) / ours", "nannyml_cbpe_loaded", "speed-up"),
    ("NannyML reconstruction fit / ours", "nannyml_pca_fit", "speed-up"),
    ("NannyML reconstruction calculate / our window", "nannyml_pca_window", "speed-up"),
    ("NannyML reconstruction fit + calculate / ours", "nannyml_pca_total", "speed-up"),
    ("(NannyML reconstruction + loading its frames) / ours", "nannyml_pca_loaded", "speed-up"),
)


def ratio_table(sizes: list[SizeResult]) -> list[str]:
    head = " | ".join(f"{s.rows:,} rows, wall | CPU" for s in sizes)
    lines = [f"| ratio of the medians | {head} | reads as |", "|---|" + "---:|---:|" * len(sizes) + "---|"]
    table = [(ratios(s), ratios(s, cpu=True)) for s in sizes]
    for label, key, kind in RATIO_ROWS:
        lines.append(f"| {label} | " + " | ".join(f"{_ratio(w[key])} | {_ratio(c[key])}" for w, c in table)
                     + f" | {kind} |")
    for label, ours, theirs in (("CBPE", "cbpe", "nannyml_cbpe"), ("PCA drift", "pca", "nannyml_pca")):
        lines.append(f"| peak RSS MiB, {label}: ours / NannyML | " + "".join(
            f"{mib(s.peak(ours))} / {mib(s.peak(theirs))} | | " for s in sizes) + " |")
    lines.append("| peak RSS MiB, base / segments | " + "".join(
        f"{mib(s.peak('base'))} / {mib(s.peak('segments'))} | | " for s in sizes) + " |")
    return lines


def _ratio(value: float | None) -> str:
    """Below 1 too (a cost on top of the base report is usually a fraction of it)."""
    return "—" if value is None else times(value) if value >= 1 else f"{value:.2f}×"


def agreement_lines(sizes: list[SizeResult]) -> list[str]:
    lines = []
    for size in sizes:
        cbpe = cbpe_agreement(size)
        if cbpe is None:
            why = size.failure("nannyml_cbpe") or size.failure("cbpe") or "not run"
            lines.append(f"- {size.rows:,} rows, CBPE: NannyML {why}; no comparison.")
        else:
            lines.append(
                f"- {size.rows:,} rows, CBPE on {cbpe['rows']:,} scored predictions "
                f"({'the same' if cbpe['same_rows'] else '**not the same**'} rows as NannyML's; NannyML "
                f"{'calibrates' if cbpe['nannyml_calibrates'] else '**does not calibrate**'}): largest difference "
                f"{cbpe['largest']:.4f} — **{'agrees' if cbpe['agree'] else 'DISAGREES'}** (tolerance "
                f"{CBPE_TOLERANCE}). " + ", ".join(
                    f"{m} {cbpe['ours'][m]:.4f} vs {cbpe['nannyml'][m]:.4f}" for m in CBPE_METRICS) + ".")
        pca = pca_agreement(size)
        if pca is None:
            why = size.failure("nannyml_pca") or size.failure("pca") or "not run"
            lines.append(f"- {size.rows:,} rows, PCA drift: NannyML {why}; no comparison.")
        else:
            upper = "" if pca["upper_relative"] is None else (
                f"; band upper end {pca['ours_upper']:.4f} vs {pca['nannyml_upper']:.4f} "
                f"({pca['upper_relative']:.2%}, reference chunks numbered in scan order vs table order)")
            lines.append(
                f"- {size.rows:,} rows, PCA reconstruction error of the window ({pca['rows']:,} rows, "
                f"{'the same' if pca['same_rows'] else '**not the same**'} as NannyML's): {pca['ours']:.5f} vs "
                f"{pca['nannyml']:.5f}, relative difference {pca['relative']:.3%} — "
                f"**{'agrees' if pca['agree'] else 'DISAGREES'}** (tolerance {PCA_TOLERANCE:.0%}){upper}; "
                f"drift: {pca['drifted']}.")
    return lines


def print_summary(sizes: list[SizeResult]) -> None:
    print()
    for size in sizes:
        print("\n".join(size_table(size)), end="\n\n")
    print("\n".join(ratio_table(sizes)), end="\n\n")
    print("\n".join(agreement_lines(sizes)).replace("**", ""))
