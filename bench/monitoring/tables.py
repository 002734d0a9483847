"""The tables of medians, ratios, probe steps and verdicts, and the speed targets (printed and written)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.monitoring.comparison import drift_agreement, fairness_difference, ratios
from bench.monitoring.runner import SizeResult


def secs(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def times(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}×" if value >= 10 else f"{value:.1f}×"


def mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


GB = 1.5e9 / 2**20  # 1.5 GB in MiB


@dataclass
class Target:
    text: str
    measured: str
    met: bool | None  # on the wall-clock medians; None: not measured
    met_cpu: bool | None = None  # on the CPU-time medians (steady under the machine's load)

    @property
    def state(self) -> str:
        if self.met is None:
            return "not measured"
        if self.met and self.met_cpu is False:
            return "met on wall-clock time only (**not** in CPU time)"
        if not self.met and self.met_cpu:
            return "**not met** on wall-clock time (met in CPU time)"
        return "met" if self.met else "**not met**"


def targets(sizes: list[SizeResult]) -> list[Target]:
    by_rows = {s.rows: s for s in sizes}
    out = []

    def speed(rows: int, factor: float) -> Target:
        text = f"drift report >= {factor:.0f}x faster than Evidently at {rows:,} rows (warm; cold beside)"
        size = by_rows.get(rows)
        if size is None:
            return Target(text, f"not run at {rows:,} rows", None)
        r, c = ratios(size), ratios(size, cpu=True)
        warm, cold = r["evidently_vs_drift_warm"], r["evidently_vs_drift_cold"]
        if warm is None:
            return Target(text, f"Evidently {size.failure('evidently') or 'not measured'}", None)
        warm_cpu = c["evidently_vs_drift_warm"]
        return Target(text, f"{times(warm)} warm, {times(cold)} cold (CPU time: {times(warm_cpu)} warm, "
                            f"{times(c['evidently_vs_drift_cold'])} cold)", warm >= factor,
                      None if warm_cpu is None else warm_cpu >= factor)

    out.append(speed(1_000_000, 50))
    out.append(speed(10_000_000, 200))
    big = by_rows.get(10_000_000)
    text = "peak memory of our drift report < 1.5 GB at 10,000,000 rows (warm)"
    if big is None or big.peak("ours_warm") is None:
        out.append(Target(text, "not run", None))
    else:
        peak = big.peak("ours_warm")
        cold = big.peak("ours_cold")
        out.append(Target(text, f"{peak:,.0f} MiB warm ({cold:,.0f} MiB cold)" if cold else f"{peak:,.0f} MiB",
                          peak < GB))
    text = "fairness >= 500x faster than fairlearn at 10,000,000 rows"
    ratio = ratios(big)["fairlearn_vs_fairness"] if big else None
    ratio_cpu = ratios(big, cpu=True)["fairlearn_vs_fairness"] if big else None
    out.append(Target(text, "not measured" if ratio is None else f"{times(ratio)} (CPU time: {times(ratio_cpu)})",
                      None if ratio is None else ratio >= 500, None if ratio_cpu is None else ratio_cpu >= 500))
    for size in sizes:
        ratio, ratio_cpu = ratios(size)["drift_sql_vs_scan"], ratios(size, cpu=True)["drift_sql_vs_scan"]
        out.append(Target(f"current-window drift work within 3x of a plain scan ({size.rows:,} rows)",
                          "not measured" if ratio is None else f"{times(ratio)} (CPU time: {times(ratio_cpu)})",
                          None if ratio is None else ratio <= 3, None if ratio_cpu is None else ratio_cpu <= 3))
    return out


def _runs(size: SizeResult, contender: str) -> str:
    n = len(size.ok(contender))
    failure = size.failure(contender)
    if n == 0:
        return failure or "not run"
    note = size.stopped.get(contender, "")
    return f"{n}" + (" (slow: not repeated)" if note.startswith("not repeated") else "")


def size_table(size: SizeResult) -> list[str]:
    m, window = size.median, size.median("ours_warm", "rows_current")
    rows = [
        ("ours: **drift report, warm**", "kept profile loaded + histogram/value-count SQL + statistics", "ours_warm",
         "drift_s"),
        ("ours: drift report, cold", "reference profile computed from the warehouse + the above", "ours_cold",
         "drift_s"),
        ("ours: drift report, warm, next window", "the same again in that process (as a long-lived app would)",
         "ours_warm", "hot.drift_s"),
        ("ours: whole window report, warm", "drift + fairness + latency + performance (6 statements)", "ours_warm",
         "report_s"),
        ("ours: whole window report, cold", "the above with the profile computed", "ours_cold", "report_s"),
        ("ours: current-window drift SQL", "numeric_histograms + value_counts (warm)", "ours_warm", "drift_sql_s"),
        ("ours: drift statistics", "build_report: PSI, JS, Wasserstein, KS, chi² in Python", "ours_warm",
         "pieces_s.build_report"),
        ("ours: profile load / compute", "kept profile read from tower state (warm) / computed (cold)", "ours_warm",
         "profile_s"),
        ("", "", "ours_cold", "profile_s"),
        ("ours: **fairness**", "fairness_counts, one GROUP BY statement", "ours_warm", "fairness_s"),
        ("ours: latency", "latency_summaries (p50/p95/p99, error rate)", "ours_warm", "latency_s"),
        ("ours: performance", "classification_counts (confusion, AUC levels, coverage)", "ours_warm",
         "pieces_s.classification_counts"),
        ("**Evidently** 0.7 DataDriftPreset", "Report.run on the two pandas frames", "evidently", "run_s"),
        ("Evidently: loading the frames", "DuckDB → pandas, reference + window, 25 features", "evidently",
         "load_s"),
        ("**fairlearn** MetricFrame + differences", "selection rate, TPR, FPR by group; DPD; EOD", "fairlearn",
         "run_s"),
        ("fairlearn: loading the rows", "DuckDB → pandas, 3 columns of the window", "fairlearn", "load_s"),
        ("**plain scan**: 25 feature columns", "SELECT sum/max of each WHERE ts in window", "scan", "features_s"),
        ("plain scan: every column the report reads", "35 columns, right after the above in the same process",
         "scan", "all_s"),
    ]
    lines = [f"#### {size.rows:,}-row log (window: {int(window or 0):,} rows; reference: {size.reference_rows:,} rows)",
             "", "| contender | what is timed | seconds (median) | CPU seconds (median) | runs | "
                 "peak RSS MiB (after imports) |",
             "|---|---|---:|---:|---|---:|"]
    for label, what, contender, key in rows:
        if not label:
            label, what = "", "(cold)"
        peak = size.peak(contender)
        imports = size.median(contender, "imports_rss_mib")
        memory = f"{mib(peak)} ({mib(imports)})" if peak else "—"
        cpu = None if key.startswith("hot.") else m(contender, "cpu." + key)
        lines.append(f"| {label} | {what} | {secs(m(contender, key))} | {secs(cpu)} | {_runs(size, contender)} | "
                     f"{memory} |")
    if size.generate_s is not None or size.keep_profile_s is not None:
        lines += ["", "Set-up, not timed above: " + ", ".join(
            part for part in (
                f"generating the data in DuckDB {size.generate_s:.0f} s (once; the file is cached)"
                if size.generate_s is not None else "",
                f"keeping the reference profile {size.keep_profile_s:.1f} s" if size.keep_profile_s is not None
                else "") if part) + "."]
    return lines


RATIO_ROWS = (
    ("Evidently / ours drift report, warm", "evidently_vs_drift_warm", "≥ 50× at 1M, ≥ 200× at 10M"),
    ("Evidently / ours drift report, cold", "evidently_vs_drift_cold", "printed beside"),
    ("Evidently / ours whole window report, warm", "evidently_vs_report_warm", ""),
    ("(Evidently + loading) / ours whole window report, warm", "evidently_loaded_vs_report_warm", ""),
    ("fairlearn / ours fairness", "fairlearn_vs_fairness", "≥ 500× at 10M"),
    ("ours current-window drift SQL / plain scan of the features", "drift_sql_vs_scan", "≤ 3×"),
    ("ours report SQL (all 6 statements) / plain scan of every used column", "report_sql_vs_scan", ""),
)


def ratio_table(sizes: list[SizeResult]) -> list[str]:
    head = " | ".join(f"{s.rows:,} rows, wall | CPU" for s in sizes)
    lines = [f"| ratio of the medians | {head} | target |", "|---|" + "---:|---:|" * len(sizes) + "---|"]
    table = [(ratios(s), ratios(s, cpu=True)) for s in sizes]
    for label, key, target in RATIO_ROWS:
        lines.append(f"| {label} | " + " | ".join(f"{times(w[key])} | {times(c[key])}" for w, c in table)
                     + f" | {target} |")
    lines.append("| peak RSS of ours, warm / cold (MiB) | " + "".join(
        f"{mib(s.peak('ours_warm'))} / {mib(s.peak('ours_cold'))} | | " for s in sizes)
        + "< 1.5 GB (1,431 MiB) at 10M |")
    lines.append("| peak RSS of Evidently / fairlearn (MiB) | " + "".join(
        f"{mib(s.peak('evidently'))} / {mib(s.peak('fairlearn'))} | | " for s in sizes) + " |")
    return lines


PROBE_ROWS = (
    ("scan", "plain scan of the histogram features, one statement (SUM of each)"),
    ("branches", "one UNION branch per feature reading x (finite check, ts filter), no binning"),
    ("arithmetic", "… + grid-cell arithmetic per value: floor/least/greatest/cast, no lookup"),
    ("lookup", "… + one list subscript per value (the grid lookup alone)"),
    ("binning", "our binning (grid cell joined to its first bin and candidate edges), no GROUP BY: SUM(bin)"),
    ("equi_width", "equi-width cells + GROUP BY count/sum/sum of squares (no search: the aggregation alone)"),
    ("numeric_histograms", "**ours**: numeric_histograms (binning + GROUP BY count/sum/sum of squares)"),
    ("numeric_histograms_empty", "ours on an empty window: the fixed cost (build, compile, bind, plan)"),
    ("numeric_histograms_empty_driver", "… of which DuckDB (the same SQL text sent directly: parse, bind, plan)"),
    ("no_grid", "ours without the grid: the full ten-step binary search"),
    ("asof_join", "alternative: ASOF JOIN of each value to the edge list + GROUP BY"),
    ("histogram_aggregate", "alternative: DuckDB histogram(x, edges) aggregate (counts only; no sums)"),
    ("build_report", "**build_report**: every drift statistic in Python (25 features)"),
)


def probe_table(sizes: list[SizeResult]) -> list[str]:
    probed = [s for s in sizes if s.probe and "seconds" in s.probe]
    if not probed:
        return ["(no probe was run)"]
    head = " | ".join(f"{s.rows:,} rows ({s.probe['columns']} features × {s.probe['rows']:,}): wall | CPU"
                      for s in probed)
    lines = [f"| step | {head} |", "|---|" + "---:|---:|" * len(probed)]
    for key, label in PROBE_ROWS:
        lines.append(f"| {label} | " + " | ".join(
            f"{secs(s.probe['seconds'].get(key))} s | {secs(s.probe.get('cpu', {}).get(key))} s"
            for s in probed) + " |")
    return lines


def agreement_lines(sizes: list[SizeResult]) -> list[str]:
    lines = []
    for size in sizes:
        rows = drift_agreement(size)
        if rows is None:
            lines.append(f"- {size.rows:,} rows: Evidently {size.failure('evidently') or 'not run'}; "
                         "no comparison of verdicts.")
            continue
        agree = sum(r["agree"] for r in rows)
        drifted = [r["column"] for r in rows if r.get("drifted")]
        lines.append(f"- {size.rows:,} rows: our method and verdict equal Evidently's on **{agree} of {len(rows)}** "
                     f"features; drifted: {', '.join(drifted)}.")
    for size in sizes:
        difference = fairness_difference(size)
        if difference is not None:
            lines.append(f"- {size.rows:,} rows: fairness (DPD, EOD, selection rate/TPR/FPR of every group) differs "
                         f"from fairlearn's by at most {difference:.1e}.")
    largest = next((s for s in reversed(sizes) if drift_agreement(s)), None)
    if largest is not None:
        lines += ["", f"Per feature at {largest.rows:,} rows:", "",
                  "| feature | method | our score | Evidently's score | our verdict | Evidently's | agree |",
                  "|---|---|---:|---:|---|---|---|"]
        for r in drift_agreement(largest) or []:
            if r.get("missing"):
                lines.append(f"| {r['column']} | missing from Evidently's output | | | | | no |")
                continue
            lines.append(f"| {r['column']} | {r['method']} | {r['score']:.4f} | {r['evidently_score']:.4f} | "
                         f"{_verdict(r['drifted'])} | {_verdict(r['evidently_drifted'])} | "
                         f"{'yes' if r['agree'] else '**no**'} |")
    return lines


def _verdict(value: bool | None) -> str:
    return "—" if value is None else "drift" if value else "no drift"


def print_summary(sizes: list[SizeResult]) -> None:
    print()
    for size in sizes:
        print("\n".join(size_table(size)), end="\n\n")
    print("\n".join(ratio_table(sizes)), end="\n\n")
    for target in targets(sizes):
        print(f"  - {target.text}: {target.measured} -- {target.state.replace('**', '')}")
    print()
    print("\n".join(agreement_lines(sizes)))
