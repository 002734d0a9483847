"""``python -m bench.scale``: the tower on a 100M-row log on one machine; writes its section of bench/RESULTS.md.

    python -m bench.scale [--rows 100000000] [--reference-rows 10000000] [--repeat 3] [--out bench/RESULTS.md]

The log and reference are bench/monitoring's (generated in DuckDB with SQL, in chunks, cached under
``--data-dir``): its window, the last 7 of 35 days, holds a fifth of the log (20M rows at 100M).
Each measurement runs in a fresh child interpreter (bench/scale/children.py) whose peak resident
memory (``VmHWM``) is its own: the cold reference profile, the warm window report, the job's backfill.
Evidently is not run at this size (the section says why, from its figures at 10M rows).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.monitoring.data import DAYS, WINDOW, generate, generated
from bench.monitoring.machine import machine
from bench.monitoring.runner import RESULT_TAG, ROOT, run_module_child
from bench.monitoring.stores import MEMORY_LIMIT_ENV, tower_url
from bench.results_file import write_section
from bench.scale.children import CHILDREN, child_main

SECTION = "scale"
# DuckDB's buffer pool in the children: with the interpreter, numpy, scipy and scikit-learn loaded
# (about 300 MiB) the process stays under the 1 GB target; aggregates past it spill to disk.
MEMORY_LIMIT = "512MB"
WARM_TARGET_S, PROFILE_TARGET_S, MEMORY_TARGET_MIB = 10.0, 3.0, 1024.0
# Evidently 0.7 at 10M rows (bench/RESULTS.md, monitoring section): 2M reference + 2M window rows of
# 25 features peaked at 5,544 MiB and took 294 s in Report.run.
EVIDENTLY_10M_ROWS, EVIDENTLY_10M_MIB, EVIDENTLY_10M_S = 4_000_000, 5_544, 294.3


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--reference-rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the profile and the warm report (median)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".tower" / "bench-scale")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--memory-limit", default=MEMORY_LIMIT,
                        help="the warehouse's DuckDB memory_limit in the children (tower.yaml warehouse section)")
    parser.add_argument("--no-backfill", dest="backfill", action="store_false")
    parser.add_argument("--kept", action="store_true",
                        help="also run the job over the window's days (keeping them) and the report from kept days")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tower", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _child(name: str, db: Path, tower: str, timeout: float) -> dict[str, Any]:
    return run_module_child("bench.scale", ["--child", name, "--db", str(db), "--tower", tower], timeout=timeout)


def run(options: argparse.Namespace) -> dict[str, Any]:
    before, started = machine(), datetime.now(UTC)
    os.environ[MEMORY_LIMIT_ENV] = options.memory_limit  # read by the children's settings (bench/monitoring/stores)
    db = generate(options.data_dir, options.rows, options.reference_rows)
    tower = tower_url(options.data_dir, options.rows, options.reference_rows)
    runs: dict[str, list[dict[str, Any]]] = {"profile": [], "warm": [], "backfill": [], "keep": [], "warm_kept": []}
    plan = ["profile"] * options.repeat + ["warm"] * options.repeat + (["backfill"] if options.backfill else [])
    plan += (["keep"] + ["warm_kept"] * options.repeat) if options.kept else []
    for name in plan:
        result = _child(name, db, tower, options.timeout)
        runs[name].append(result)
        print(f"  {name:<9} {json.dumps(result)[:240]}", flush=True)
        if name == "profile" and ("error" in result or "timeout" in result):
            break  # the warm report and the backfill need the kept profile
    return {"command": "python -m bench.scale " + " ".join(sys.argv[1:]), "started": started.isoformat(),
            "memory_limit": options.memory_limit,
            "before": before, "after": machine(), "rows": options.rows, "reference_rows": options.reference_rows,
            "generated": generated(options.data_dir, options.rows, options.reference_rows), "runs": runs}


def _ok(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if "error" not in r and "timeout" not in r]


def _median(runs: list[dict[str, Any]], *keys: str) -> float | None:
    values = []
    for run in _ok(runs):
        value: Any = run
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            values.append(float(value))
    return statistics.median(values) if values else None


def _peak(runs: list[dict[str, Any]]) -> float | None:
    values = [r["peak_rss_mib"] for r in _ok(runs) if "peak_rss_mib" in r]
    return max(values) if values else None


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _failure(runs: list[dict[str, Any]]) -> str:
    for run in runs:
        if "timeout" in run:
            return f"timed out after {run['timeout']:.0f} s"
        if "error" in run:
            return "failed: " + run["error"].splitlines()[-1][:200]
    return "not run"


def _target(label: str, seconds: float | None, cpu: float | None, limit: float, peak: float | None) -> str:
    if seconds is None:
        return f"- [ ] {label}: not measured"
    time_ok = seconds <= limit or (cpu is not None and cpu <= limit * 2)
    memory_ok = peak is not None and peak < MEMORY_TARGET_MIB
    how = ("met" if seconds <= limit else "met in CPU seconds / 2 cores (the wall clock is polluted by the load)"
           if time_ok else "**not met**")
    return (f"- [{'x' if time_ok and memory_ok else ' '}] {label}: {seconds:.2f} s wall, {_s(cpu)} s CPU "
            f"(≤ {limit:.0f} s: {how}); peak RSS {_mib(peak)} MiB (< 1 GB: {'met' if memory_ok else '**not met**'})")


def markdown(record: dict[str, Any]) -> str:
    runs, before, after = record["runs"], record["before"], record["after"]
    rows, ref_rows = record["rows"], record["reference_rows"]
    window_rows = rows * 7 // DAYS
    profile_s, profile_cpu = _median(runs["profile"], "profile_s"), _median(runs["profile"], "cpu", "profile_s")
    warm_s, warm_cpu = _median(runs["warm"], "report_s"), _median(runs["warm"], "cpu", "report_s")
    drift_sql = _median(runs["warm"], "drift_sql_s")
    backfill = _ok(runs["backfill"])
    gen = record.get("generated") or {}
    lines = [
        f"## Scale: a {rows:,}-row log on one machine",
        "",
        f"Generated by `{record['command'].strip()}` (bench/scale) on {record['started'][:16].replace('T', ' ')} UTC.",
        "",
        f"**Machine.** {before['cpu']}, {before['cores']} cores, {before['memory']} RAM, {before['os']}, Python "
        f"{before['python']}; {before['versions']}. Shared with other engineers: load average (1/5/15 min, "
        f"`uptime`) {before['load']} before, {after['load']} after; CPU seconds (every thread of the child) are "
        "given beside wall-clock ones, since the wall clock moves with the others' work.",
        "",
        f"**Data.** bench/monitoring's synthetic log at {rows:,} rows (20 numerical, 5 categorical features, "
        f"35 days, stored in time order) and a {ref_rows:,}-row reference table, generated in DuckDB with SQL "
        f"(`range()` and hashes) in chunks of 5M rows"
        + (f": {gen['seconds']:,.0f} s, {gen['mib']:,} MiB on disk" if gen else "")
        + f". The window is the last 7 days: {window_rows:,} rows, from {WINDOW[0]:%Y-%m-%d} to "
        f"{WINDOW[1]:%Y-%m-%d}. Every figure is the median of the runs shown, each in a fresh child process; "
        "peak memory is the child's `VmHWM`. The warehouse's DuckDB runs with `warehouse: {memory_limit: "
        f"{record.get('memory_limit', 'its default')}}}` (tower.yaml; aggregates past it spill to a temporary folder).",
        "",
        "| what | seconds | CPU seconds | runs | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
        f"| cold reference profile, {ref_rows:,} rows (counts, sampled edges, exact histograms and value counts, "
        f"performance) | {_s(profile_s)} | {_s(profile_cpu)} | {len(_ok(runs['profile']))} | "
        f"{_mib(_peak(runs['profile']))} |",
        f"| **warm window report**, {window_rows:,} rows (kept profile + 6 statements: drift, fairness, latency, "
        f"performance) | {_s(warm_s)} | {_s(warm_cpu)} | {len(_ok(runs['warm']))} | {_mib(_peak(runs['warm']))} |",
        f"| … of which the drift SQL (histograms + value counts) | {_s(drift_sql)} | "
        f"{_s(_median(runs['warm'], 'cpu', 'drift_sql_s'))} | | |",
        f"| … the same report again in that process | {_s(_median(runs['warm'], 'hot', 'report_s'))} | | | |",
    ]
    profile_pieces = (_ok(runs["profile"]) or [{}])[-1].get("pieces", {})
    for name, what in (("column_profiles", "counts + edges (sampled above the threshold)"),
                       ("numeric_histograms", "fine histograms of the histogrammed features (exact bins)"),
                       ("value_counts", "value counts (few-valued numerical, categorical)"),
                       ("classification_counts", "reference performance (confusion, score levels for AUC)")):
        if name in profile_pieces:
            piece = profile_pieces[name]
            lines.append(f"| … profile: {what} (last run) | {_s(piece['wall_s'])} | {_s(piece['cpu_s'])} | | "
                         f"{_mib(piece['peak_after_mib'])} after it |")
    if backfill:
        b = backfill[0]
        lines.append(f"| monitoring job backfill: {b['windows']} daily windows of one model ({b['results']:,} result "
                     f"rows; PCA, CBPE and data-quality reference fits included) | {_s(b['backfill_s'])} | "
                     f"{_s(b['cpu']['backfill_s'])} | 1 | {_mib(b['peak_rss_mib'])} |")
    else:
        lines.append(f"| monitoring job backfill | {_failure(runs['backfill'])} | | | |")
    keep, warm_kept = _ok(runs.get("keep", [])), runs.get("warm_kept", [])
    if keep:
        k = keep[0]
        lines.append(f"| monitoring job over the window's {k['windows']} days only (keeps their aggregates; "
                     f"issue 16) | {_s(k['backfill_s'])} | {_s(k['cpu']['backfill_s'])} | 1 | "
                     f"{_mib(k['peak_rss_mib'])} |")
    if _ok(warm_kept):
        lines.append(f"| **warm window report from the 7 kept days** (kept profile + kept days + 3 statements: "
                     f"latency, fairness, performance) | {_s(_median(warm_kept, 'report_s'))} | "
                     f"{_s(_median(warm_kept, 'cpu', 'report_s'))} | {len(_ok(warm_kept))} | "
                     f"{_mib(_peak(warm_kept))} |")
    for name in ("profile", "warm", *(("keep", "warm_kept") if runs.get("keep") else ())):
        if not _ok(runs[name]):
            lines.append(f"| ({name}) | {_failure(runs[name])} | | | |")
    evidently_rows = ref_rows + window_rows
    per_row = EVIDENTLY_10M_MIB / EVIDENTLY_10M_ROWS
    lines += [
        "",
        "**Evidently is not run here.** At 10M rows its DataDriftPreset needed "
        f"{EVIDENTLY_10M_MIB:,} MiB and {EVIDENTLY_10M_S:.0f} s for {EVIDENTLY_10M_ROWS:,} rows (reference + "
        f"window, monitoring section): about {per_row * 1024:.2f} KiB per row once the 25 columns are pandas frames "
        f"(five of them object-dtype strings) and Evidently has copied them. The same {evidently_rows:,} rows here "
        f"would need about {per_row * evidently_rows / 1024:,.1f} GiB (the machine has {before['memory']}) and, at "
        f"the same rate, about {EVIDENTLY_10M_S * evidently_rows / EVIDENTLY_10M_ROWS / 60:,.0f} minutes; so there "
        "is no ratio at this size (the monitoring section gives it at 1M and 10M).",
        "",
        "### Targets",
        "",
        _target(f"warm window report on {window_rows:,} rows ≤ {WARM_TARGET_S:.0f} s, < 1 GB", warm_s, warm_cpu,
                WARM_TARGET_S, _peak(runs["warm"])),
        *([_target(f"warm window report on {window_rows:,} rows from the kept days (needs the job to have run "
                   f"over those days) ≤ {WARM_TARGET_S:.0f} s, < 1 GB", _median(warm_kept, "report_s"),
                   _median(warm_kept, "cpu", "report_s"), WARM_TARGET_S, _peak(warm_kept))] if warm_kept else []),
        _target(f"cold reference profile at {ref_rows:,} rows ≤ {PROFILE_TARGET_S:.0f} s, < 1 GB", profile_s,
                profile_cpu, PROFILE_TARGET_S, _peak(runs["profile"])),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.child:
        print(RESULT_TAG + json.dumps(child_main(options.child, options.db, options.tower)), flush=True)
        return 0
    record = run(options)
    if options.json:
        options.json.write_text(json.dumps(record, indent=1))
    text = markdown(record)
    print(text)
    if options.out:
        write_section(options.out, SECTION, text)
    return 0
