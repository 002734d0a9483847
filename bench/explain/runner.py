"""The parent's side: the set-up of one data size, then each contender in a fresh child interpreter."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.explain.contenders import CONTENDERS, MAIN_SECONDS
from bench.explain.data import explain_mapping, explain_tower_url
from bench.monitoring.data import generate, generated
from bench.monitoring.machine import wait_quiet
from bench.monitoring.runner import SizeResult, run_module_child, stop_reason
from bench.monitoring.stores import backends

NANNYML = ("nannyml_cbpe", "nannyml_pca")


def keep_profiles(db: Any, tower: str) -> float | None:
    """Keep the reference profile of the whole log and of each segment; the seconds it took (None: all kept)."""
    from services.monitoring import reference

    mapping = explain_mapping()
    stores = backends(db, tower)  # creates the tower state's tables the first time
    try:
        engine, tower_engine = stores.warehouse(), stores.tower()
        populations = [mapping.for_segment(None), *(mapping.for_segment(s.name) for s in mapping.segments)]
        due = [p for p in populations if reference.stored_profile(
            tower_engine, reference.reference_id(reference.reference_definition(p))) is None]
        if not due:
            return None
        started = time.perf_counter()
        for population in due:
            reference.load_or_compute(tower_engine, engine, population)
        return time.perf_counter() - started
    finally:
        stores.close()


def bench_size(rows: int, reference_rows: int, options: argparse.Namespace) -> SizeResult:
    db = generate(options.data_dir, rows, reference_rows)
    tower = explain_tower_url(options.data_dir, rows, reference_rows)
    result = SizeResult(rows, reference_rows, {c: [] for c in CONTENDERS}, {}, None,
                        generated(options.data_dir, rows, reference_rows).get("seconds"), keep_profiles(db, tower))
    above = options.skip_nannyml_above
    if above is not None and rows > above:
        for contender in NANNYML:
            result.stopped[contender] = f"skipped (--skip-nannyml-above {above:,})"
    for attempt in range(options.repeat):
        for contender in [c for c in CONTENDERS if c not in result.stopped]:
            load = wait_quiet(options.wait_quiet)
            timeout = options.nannyml_timeout if contender in NANNYML else options.timeout
            run = {**run_module_child("bench.explain", ["--child", contender, "--db", str(db), "--tower", tower],
                                      timeout=timeout), "load_before": load}
            result.runs[contender].append(run)
            print(f"  {rows:>11,} rows  run {attempt + 1}/{options.repeat}  {contender:<13} "
                  f"{_describe(contender, run)}", flush=True)
            reason = stop_reason(run, (r[MAIN_SECONDS[contender]] for r in result.ok(contender)),
                                 options.slow_seconds)
            if reason is not None:
                result.stopped[contender] = reason
    return result


def _describe(contender: str, run: dict[str, Any]) -> str:
    if "timeout" in run:
        return f"timed out after {run['timeout']:.0f} s"
    if "error" in run:
        return f"FAILED {run['error']}"
    if contender in ("base", "segments"):
        detail = f"{run[MAIN_SECONDS[contender]]:.3f} s"
    else:
        detail = f"fit {run['fit_s']:.3f} s + window {run['window_s']:.3f} s"
        if "load_s" in run:
            detail += f" (+ load {run['load_s']:.3f} s)"
    return f"{detail}, peak RSS {run['peak_rss_mib']:,.0f} MiB, load {run['load_before']:.1f}"
