"""``python -m bench.intervals``: the cost of the drift intervals on top of the report."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bench.intervals
from bench.monitoring.data import WINDOW, bench_mapping, default_reference_rows, generate
from bench.monitoring.stores import backends, keep_profile, open_warehouse, tower_url
from bench.results_file import write_section

SECTION = "intervals"
TIMED = ("numerical_intervals", "categorical_intervals")


@dataclass
class Measured:
    """One size's medians (seconds) and what the machine was doing."""

    rows: int
    reference_rows: int
    features: int
    replicates: int
    week_report_s: float = 0.0
    week_intervals_s: float = 0.0
    week_intervals_cold_s: float = 0.0
    days_report_s: float = 0.0
    days_intervals_s: float = 0.0
    backfill_days: int = 0
    backfill_s: dict[str, float] = field(default_factory=dict)  # mode -> seconds of `monitor run`
    load: list[float] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.intervals",
                                     description=(bench.intervals.__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is reported")
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None, help="write the section into this file (bench/RESULTS.md)")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "ml-control-tower-bench")
    parser.add_argument("--backfill-days", type=int, default=7,
                        help="days of `monitor run` timed per mode (intervals off, fixed, beyond_noise); 0: skip")
    return parser.parse_args(argv)


def measure(rows: int, options: argparse.Namespace) -> Measured:
    from services.monitoring import report as report_module
    from services.monitoring.config import AlertRules, DriftRule
    from services.monitoring.reference import reference_definition, reference_id, stored_profile
    from services.stats import drift_intervals

    reference_rows = default_reference_rows(rows)
    db = generate(options.data_dir, rows, reference_rows)
    tower = tower_url(options.data_dir, rows, reference_rows)
    keep_profile(db, tower)
    mapping = bench_mapping()
    stores = backends(db, tower, create_schema=False)
    engine = open_warehouse(stores)
    profile = stored_profile(stores.tower(), reference_id(reference_definition(mapping)))
    assert profile is not None
    rules = AlertRules(drift=DriftRule(verdict="beyond_noise", replicates=options.replicates))
    spent = [0.0]

    def timed(name: str) -> None:
        inner = getattr(report_module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - started
        setattr(report_module, name, wrapper)

    for name in TIMED:
        timed(name)

    def run(windows: list[tuple[datetime, datetime]], *, cold: bool) -> tuple[float, float]:
        if cold:
            drift_intervals.forget_reference_draws()  # the reference draws are kept between windows
        spent[0] = 0.0
        started = time.perf_counter()
        for start, end in windows:
            report_module.window_report(engine, mapping, profile, start, end, rules=rules)
        return time.perf_counter() - started, spent[0]

    week = [WINDOW]
    days = [(WINDOW[0] + timedelta(days=i), WINDOW[0] + timedelta(days=i + 1)) for i in range(7)]
    result = Measured(rows, reference_rows, len(mapping.numerical) + len(mapping.categorical), options.replicates)
    result.load.append(os.getloadavg()[0])
    cold = [run(week, cold=True) for _ in range(options.repeat)]
    warm = [run(week, cold=False) for _ in range(options.repeat)]
    daily = [run(days, cold=False) for _ in range(options.repeat)]
    result.load.append(os.getloadavg()[0])
    result.week_report_s = statistics.median(t for t, _ in warm)
    result.week_intervals_s = statistics.median(i for _, i in warm)
    result.week_intervals_cold_s = statistics.median(i for _, i in cold)
    result.days_report_s = statistics.median(t for t, _ in daily)
    result.days_intervals_s = statistics.median(i for _, i in daily)
    if options.backfill_days:
        result.backfill_days = options.backfill_days
        result.backfill_s = backfill(engine, mapping, options)
    result.load.append(os.getloadavg()[0])
    stores.close()
    return result


BACKFILL_MODES = ("fixed", "all_versions", "beyond_noise")


def backfill(engine: Any, mapping: Any, options: argparse.Namespace) -> dict[str, float]:
    """Seconds of `monitor run` (job.run_model) over the window's last ``backfill_days`` days into a fresh
    tower state, per mode: fixed (the job computes no interval: as before issue 15), all_versions (fixed,
    but the all-versions windows bounded, an alternative measured and not taken), and beyond_noise (every
    window and version bounded). The reference profile is kept by a first, untimed run of each."""
    from services.monitoring import job
    from services.monitoring import report as report_module
    from services.monitoring.config import AlertRules, DriftRule, MonitoringConfig
    from services.stores.tower_db import create_schema, make_tower_engine

    seconds = {}
    build = report_module.build_report
    first = (WINDOW[1] - timedelta(days=options.backfill_days)).date()
    last = (WINDOW[1] - timedelta(days=1)).date()
    for mode in BACKFILL_MODES:
        folder = Path(tempfile.mkdtemp(prefix=f"backfill-{mode}-"))
        tower = make_tower_engine(f"sqlite:///{folder / 'tower.db'}")
        create_schema(tower)
        verdict = "beyond_noise" if mode == "beyond_noise" else "fixed"
        config = MonitoringConfig(alerts=AlertRules(drift=DriftRule(verdict=verdict, replicates=options.replicates)))
        setattr(job, "build_report",  # noqa: B010 -- the job's own name for it, swapped for the alternative
                (lambda *a, **k: build(*a, **{**k, "intervals": k.get("version") is None}))
                if mode == "all_versions" else build)
        job.run_model(engine, tower, mapping, config, since=first, until=first)  # keeps the profile: not timed
        started = time.perf_counter()
        job.run_model(engine, tower, mapping, config, since=first, until=last)
        seconds[mode] = time.perf_counter() - started
        tower.dispose()
    setattr(job, "build_report", build)  # noqa: B010
    return seconds


def markdown(results: list[Measured], command: str) -> str:
    lines = [
        "## Drift intervals: what the bootstrap costs on top of the report",
        "",
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores shared with other "
        "engineers (1-minute load average before → after each size in the table). The monitoring benchmark's "
        "synthetic log (the reference a fifth of the log); verdict `beyond_noise`, "
        f"{results[0].replicates if results else 200} replicates; reference profile kept. *Week*: the drifted "
        "last week as one window (the drift page); *7 days*: its seven daily windows one after the other, as "
        "`monitor run` computes them (all versions; the job adds each version's windows). *Intervals*: time "
        "inside `numerical_intervals` + `categorical_intervals` (draws and statistics of the distance each "
        "verdict judges, and its noise level); *cold*: without the kept reference draws (a new process).",
        "",
        "| log rows | features | week: report | week: intervals (cold) | share | 7 days: reports | 7 days: "
        "intervals | per feature-window | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        per = r.days_intervals_s / (7 * r.features)
        lines.append(
            f"| {r.rows:,} | {r.features} | {r.week_report_s:.2f} s | {r.week_intervals_s * 1000:.0f} ms "
            f"({r.week_intervals_cold_s * 1000:.0f} ms) | {r.week_intervals_s / r.week_report_s:.0%} | "
            f"{r.days_report_s:.2f} s | {r.days_intervals_s * 1000:.0f} ms | {per * 1000:.1f} ms | "
            f"{r.load[0]:.1f} → {r.load[-1]:.1f} |")
    backfilled = [r for r in results if r.backfill_s]
    if backfilled:
        lines += ["", f"`monitor run` over the week's {backfilled[0].backfill_days} daily windows (every version "
                  "and all versions together), fresh tower state, reference profile kept:", "",
                  "| log rows | fixed (no intervals) | fixed + all-versions windows bounded (not taken) | "
                  "beyond_noise (every window bounded) |",
                  "|---:|---:|---:|---:|"]
        for r in backfilled:
            off = r.backfill_s["fixed"]
            lines.append(f"| {r.rows:,} | {off:.1f} s | {r.backfill_s['all_versions']:.1f} s "
                         f"({r.backfill_s['all_versions'] / off - 1:+.0%}) | {r.backfill_s['beyond_noise']:.1f} s "
                         f"({r.backfill_s['beyond_noise'] / off - 1:+.0%}) |")
    lines += [
        "",
        "The bootstrap works on the binned counts (≤ 1001 bins per numerical feature, the categories of a "
        "categorical one), never on rows: its cost does not grow with the log, while the report's SQL does. "
        "The reference draws depend on the reference and the column only, so a backfill draws them once per "
        "feature and every later window reuses them.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    results = []
    for rows in options.rows:
        result = measure(rows, options)
        print(f"{rows:,} rows: week report {result.week_report_s:.2f} s, intervals {result.week_intervals_s:.3f} s "
              f"(cold {result.week_intervals_cold_s:.3f} s); 7 daily reports {result.days_report_s:.2f} s, "
              f"intervals {result.days_intervals_s:.3f} s; backfill {result.backfill_s}; load {result.load}",
              flush=True)
        results.append(result)
    text = markdown(results, " ".join(["python -m bench.intervals", *(sys.argv[1:] if argv is None else argv)]))
    if options.out:
        write_section(options.out, SECTION, text)
    print(text)
    return 0
