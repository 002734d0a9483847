"""The parent's side: each contender in a fresh child interpreter, and every run of one data size."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.monitoring.contenders import CONTENDERS
from bench.monitoring.data import generate, generated
from bench.monitoring.machine import wait_quiet
from bench.monitoring.stores import keep_profile, tower_url

ROOT = Path(__file__).resolve().parents[2]
RESULT_TAG = "BENCH-RESULT "


def run_child(name: str, db: Path, tower: str, *, timeout: float, probe_repeat: int = 3) -> dict[str, Any]:
    """Run one contender in a fresh interpreter; its JSON result, or {"timeout": s} / {"error": text}."""
    return run_module_child("bench.monitoring", ["--child", name, "--db", str(db), "--tower", tower,
                                                 "--probe-repeat", str(probe_repeat)], timeout=timeout)


def run_module_child(module: str, arguments: list[str], *, timeout: float) -> dict[str, Any]:
    """``python -m module *arguments`` in a fresh interpreter (any benchmark package of bench/): the JSON
    it printed after RESULT_TAG and its wall-clock seconds, or {"timeout": s} / {"error": text}."""
    command = [sys.executable, "-m", module, *arguments]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        return {"error": f"exit code {done.returncode}: {tail}"}
    return {**json.loads(lines[-1][len(RESULT_TAG):]), "wall_s": wall}


MAIN_SECONDS = {"scan": "features_s", "ours_warm": "drift_s", "ours_cold": "drift_s", "fairlearn": "run_s",
                "evidently": "run_s"}


@dataclass
class SizeResult:
    rows: int
    reference_rows: int
    runs: dict[str, list[dict[str, Any]]]
    stopped: dict[str, str]  # contender -> why it was not run (again)
    probe: dict[str, Any] | None
    generate_s: float | None
    keep_profile_s: float | None

    def ok(self, contender: str) -> list[dict[str, Any]]:
        return [r for r in self.runs.get(contender, []) if "timeout" not in r and "error" not in r]

    def median(self, contender: str, key: str) -> float | None:
        values = [_dig(r, key) for r in self.ok(contender)]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def peak(self, contender: str) -> float | None:
        values = [r["peak_rss_mib"] for r in self.ok(contender)]
        return max(values) if values else None

    def last(self, contender: str) -> dict[str, Any] | None:
        ok = self.ok(contender)
        return ok[-1] if ok else None

    def failure(self, contender: str) -> str | None:
        for run in self.runs.get(contender, []):
            if "timeout" in run:
                return f"timed out after {run['timeout']:.0f} s"
            if "error" in run:
                return "failed: " + run["error"].splitlines()[-1][:200]
        return self.stopped.get(contender) if not self.ok(contender) else None

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "reference_rows": self.reference_rows, "runs": self.runs, "stopped": self.stopped,
                "probe": self.probe, "generate_s": self.generate_s, "keep_profile_s": self.keep_profile_s}


def _dig(record: dict[str, Any], key: str) -> Any:
    value: Any = record
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def bench_size(rows: int, reference_rows: int, options: argparse.Namespace) -> SizeResult:
    db = generate(options.data_dir, rows, reference_rows)
    generate_s = generated(options.data_dir, rows, reference_rows).get("seconds")
    tower = tower_url(options.data_dir, rows, reference_rows)
    keep_s = keep_profile(db, tower)
    result = SizeResult(rows, reference_rows, {c: [] for c in CONTENDERS}, {}, None, generate_s, keep_s)
    above = options.skip_evidently_above
    if above is not None and rows > above:
        result.stopped["evidently"] = f"skipped (--skip-evidently-above {above:,})"
    for attempt in range(options.repeat):
        due = [c for c in CONTENDERS if c not in result.stopped]

        def one(contender: str) -> dict[str, Any]:
            timeout = options.evidently_timeout if contender == "evidently" else options.timeout
            load = wait_quiet(options.wait_quiet)
            return {**run_child(contender, db, tower, timeout=timeout), "load_before": load}
        if options.jobs > 1:  # only to make a smoke test quick: concurrent children disturb each other's timings
            with ThreadPoolExecutor(options.jobs) as pool:
                done: Any = list(zip(due, pool.map(one, due), strict=True))
        else:
            done = ((c, one(c)) for c in due)  # one after the other, each reported as it ends
        for contender, run in done:
            result.runs[contender].append(run)
            print(f"  {rows:>11,} rows  run {attempt + 1}/{options.repeat}  {contender:<10} "
                  f"{_describe(contender, run)}", flush=True)
            reason = stop_reason(run, (r[MAIN_SECONDS[contender]] for r in result.ok(contender)),
                                 options.slow_seconds)
            if reason is not None:
                result.stopped[contender] = reason
    if options.probe:
        load = wait_quiet(options.wait_quiet)
        result.probe = {**run_child("probe", db, tower, timeout=options.timeout, probe_repeat=options.probe_repeat),
                        "load_before": load}
        print(f"  {rows:>11,} rows  probe      {_describe('probe', result.probe)}", flush=True)
    return result


def _describe(contender: str, run: dict[str, Any]) -> str:
    if "timeout" in run:
        return f"timed out after {run['timeout']:.0f} s"
    if "error" in run:
        return "FAILED " + run["error"]
    if contender == "probe":
        return f"{len(run['seconds'])} measurements"
    detail = {
        "scan": lambda r: f"features {r['features_s']:.3f} s, all used columns {r['all_s']:.3f} s",
        "ours_warm": lambda r: f"drift {r['drift_s']:.3f} s, whole report {r['report_s']:.3f} s",
        "ours_cold": lambda r: f"drift {r['drift_s']:.3f} s (profile {r['profile_s']:.3f} s)",
        "fairlearn": lambda r: f"{r['run_s']:.3f} s (+ load {r['load_s']:.3f} s)",
        "evidently": lambda r: f"{r['run_s']:.3f} s (+ load {r['load_s']:.3f} s)",
    }[contender](run)
    return f"{detail}, peak RSS {run['peak_rss_mib']:,.0f} MiB"


def stop_reason(run: dict[str, Any], ok_seconds: Iterable[float], slow_seconds: float) -> str | None:
    """Why a contender is run no more at this size (timed out, failed, or even its fastest run too slow
    to repeat), or None: it goes on."""
    if "timeout" in run:
        return f"timed out after {run['timeout']:.0f} s"
    if "error" in run:
        return "failed"
    fastest = min(ok_seconds)
    if fastest > slow_seconds:
        return f"not repeated: its fastest run took {fastest:.0f} s (> --slow-seconds {slow_seconds:.0f})"
    return None
