"""Benchmark: our warehouse push-down against Evidently 0.7 and fairlearn on the same rows (speed and agreement).

    python -m bench.monitoring [--rows 1000000 10000000] [--repeat 3] [--out bench/RESULTS.md]

**Data.** A deterministic synthetic prediction log is generated *inside DuckDB* (``range()`` and a
hash-based pseudo-random stream, so 10M rows take seconds and little memory) into a DuckDB file of
the cache directory, reused while its parameters are unchanged: 20 numerical and 5 categorical
features, a sensitive attribute, prediction/score/label (labels partly NULL), latency, status,
version and a timestamp spread evenly over five weeks, plus a reference table. Several features
drift in the last week, which is the benchmark window (one fifth of the log).

**Contenders**, each run in a fresh child process so that its peak memory (``VmHWM``) is its own,
timed in wall-clock and in CPU seconds (the machine is shared: CPU time moves less with its load):

* ``ours_warm`` -- ``services.monitoring.report.window_report`` (drift, fairness, latency and
  performance pushed into DuckDB as SQL) with the reference profile already kept in the tower
  state: loading it is timed, computing it is not. Its pieces are timed by wrapping the
  ``services.stores.warehouse`` functions the report calls.
* ``ours_cold`` -- the same after computing the reference profile from the warehouse.
* ``evidently`` -- ``Report([DataDriftPreset()]).run`` on pandas frames of the same reference and
  window rows (loading them from DuckDB is timed apart).
* ``fairlearn`` -- ``MetricFrame`` (selection rate, TPR, FPR by the sensitive attribute),
  ``demographic_parity_difference`` and ``equalized_odds_difference`` on the window's rows.
* ``scan`` -- the floor: ``SELECT count/sum`` over every feature column of the window (and over
  every column the report reads), through the same engine.
* ``probe`` -- what bounds the histogram push-down: the same binning without aggregation, with an
  equi-width bin (no search), with a plain binary search, and an ASOF-JOIN alternative.

The parent prints a table of medians, the ratios, peak memory, the speed targets, whether our
drift verdicts equal Evidently's per column, and writes ``bench/RESULTS.md`` with ``--out``. ``--json``
keeps every raw measurement; ``--from-json`` renders them again without running anything. A full run
(1M and 10M rows) takes about 15-25 minutes here, most of it Evidently on 10M rows (run once: runs
slower than ``--slow-seconds`` are not repeated); ``--skip-evidently-above N`` and
``--evidently-timeout`` bound it.
"""

# ruff: noqa: S608 -- every statement here is built from this module's constant names and numbers
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.results_file import write_section

ROOT = Path(__file__).resolve().parent.parent
FORMAT = 1  # bump when the generated data changes, so cached files are rebuilt
LOG_TABLE, REFERENCE_TABLE = "bench_log", "bench_reference"
DAY0 = datetime(2026, 1, 5)
DAYS = 35
WINDOW = (DAY0 + timedelta(days=DAYS - 7), DAY0 + timedelta(days=DAYS))  # the last week: where drift is
REFERENCE_OFFSET = 10**12  # the reference's row numbers, so its pseudo-random stream is its own
MODEL = "bench-model"

# --------------------------------------------------------------------------------------------
# Synthetic data, generated in DuckDB
# --------------------------------------------------------------------------------------------
# Pseudo-random streams: u(k) is uniform on (0, 1), from hash(i * 128 + k) (a hash of the row number
# and the stream; hash(i, k) with two arguments correlates streams); z(k) is standard normal
# (Box-Muller over u(k), u(k + 1)).


def _u(k: int) -> str:
    return f"((hash(i * 128 + {k}) >> 11)::DOUBLE + 0.5) * 1.1102230246251565e-16"


def _z(k: int) -> str:
    return f"(sqrt(-2 * ln({_u(k)})) * cos(6.283185307179586 * {_u(k + 1)}))"


def _pick(k: int, values: Sequence[str], shares: Sequence[float]) -> str:
    """A categorical draw with the given shares: CASE over the cumulative shares of u(k)."""
    cases, total = [], 0.0
    for value, share in zip(values[:-1], shares[:-1], strict=True):
        total += share
        cases.append(f"WHEN {_u(k)} < {total!r} THEN '{value}'")
    return f"CASE {' '.join(cases)} ELSE '{values[-1]}' END"


def _drift(stable: str, drifted: str) -> str:
    return f"CASE WHEN d THEN {drifted} ELSE {stable} END"


REGIONS = ["north", "south", "east", "west"]
CHANNELS = ["web", "app", "branch"]
PRODUCTS = [f"p{j:02d}" for j in range(12)]
SEGMENTS = ["s1", "s2", "s3", "s4", "s5", "s6"]
DEVICES = [f"d{j:02d}" for j in range(30)]

# name -> (SQL of the value, SQL type, what it is, whether it drifts in the window)
NUMERICAL: dict[str, tuple[str, str, str, bool]] = {
    "num_00": (_drift(f"50 + 10 * {_z(0)}", f"55 + 10 * {_z(0)}"), "DOUBLE", "normal, mean +0.5 sd", True),
    "num_01": (_drift(_z(2), f"0.03 + {_z(2)}"), "DOUBLE", "normal, mean +0.03 sd", False),
    "num_02": (f"100 + 15 * {_z(4)}", "DOUBLE", "normal", False),
    "num_03": (f"CASE WHEN {_u(90)} < 0.02 THEN NULL ELSE -20 + 3 * {_z(6)} END", "DOUBLE", "normal, 2% NULL",
               False),
    "num_04": (_drift(_z(8), f"1.6 * {_z(8)}"), "DOUBLE", "normal, sd x1.6", True),
    "num_05": (f"5 + 2 * {_z(10)}", "DOUBLE", "normal", False),
    "num_06": (_drift(f"exp(3 + 0.8 * {_z(12)})", f"exp(3.3 + 0.8 * {_z(12)})"), "DOUBLE", "lognormal, x1.35",
               True),
    "num_07": (f"exp(1 + 1.2 * {_z(14)})", "DOUBLE", "lognormal, heavy tail", False),
    "num_08": (f"exp(10 + 0.5 * {_z(16)})", "DOUBLE", "lognormal (income-like)", False),
    "num_09": (f"-30 * ln({_u(18)})", "DOUBLE", "exponential", False),
    "num_10": (_drift(f"-2 * ln({_u(19)})", f"-2.1 * ln({_u(19)})"), "DOUBLE", "exponential, scale x1.05",
               False),
    "num_11": (_drift(_u(20), f"0.2 + {_u(20)}"), "DOUBLE", "uniform, +0.2", True),
    "num_12": (f"-5 + 10 * {_u(21)}", "DOUBLE", "uniform", False),
    "num_13": (f"floor(100 * {_u(22)})::BIGINT", "BIGINT", "integer 0-99", False),
    "num_14": (_drift(f"floor(40 * {_u(23)})::BIGINT", f"(4 + floor(40 * {_u(23)}))::BIGINT"), "BIGINT",
               "integer 0-39 (value counts), +4", True),
    "num_15": (_drift(f"CASE WHEN {_u(24)} < 0.5 THEN 0.5 WHEN {_u(24)} < 0.8 THEN 1.5 ELSE 2.5 END",
                      f"CASE WHEN {_u(24)} < 0.3 THEN 0.5 WHEN {_u(24)} < 0.6 THEN 1.5 ELSE 2.5 END"),
               "DOUBLE", "three values, shares change", True),
    "num_16": (f"CASE WHEN {_u(25)} < 0.3 THEN 1.0 ELSE 0.0 END", "DOUBLE", "binary 0/1", False),
    "num_17": (f"CASE WHEN {_u(91)} < 0.03 THEN NULL WHEN {_u(91)} < 0.04 THEN 'NaN'::DOUBLE ELSE {_z(26)} END",
               "DOUBLE", "normal, 3% NULL, 1% NaN", False),
    "num_18": (f"CASE WHEN {_u(28)} < 0.5 THEN -2 ELSE 2 END + 0.5 * {_z(29)}", "DOUBLE", "bimodal", False),
    "num_19": (_drift(f"1000 + {_z(31)}", f"1000.2 + {_z(31)}"), "DOUBLE", "normal at 1000, +0.2 sd", True),
}
CATEGORICAL: dict[str, tuple[str, str, bool]] = {
    "cat_region": (_drift(_pick(40, REGIONS, [0.4, 0.3, 0.2, 0.1]), _pick(40, REGIONS, [0.25, 0.3, 0.2, 0.25])),
                   "4 values, shares change", True),
    "cat_channel": (f"CASE WHEN {_u(92)} < 0.02 THEN NULL ELSE {_pick(41, CHANNELS, [0.5, 0.35, 0.15])} END",
                    "3 values, 2% NULL", False),
    "cat_product": (_pick(42, PRODUCTS, [1 / 12] * 12), "12 values", False),
    "cat_segment": (_drift(_pick(43, SEGMENTS, [0.3, 0.25, 0.15, 0.15, 0.1, 0.05]),
                           _pick(43, SEGMENTS, [0.28, 0.25, 0.16, 0.15, 0.11, 0.05])), "6 values, slight change",
                    False),
    "cat_device": (_drift(f"'d' || lpad(floor(30 * pow({_u(44)}, 2))::INT::VARCHAR, 2, '0')",
                          f"CASE WHEN {_u(45)} < 0.1 THEN 'd_new' ELSE "
                          f"'d' || lpad(floor(30 * pow({_u(44)}, 2))::INT::VARCHAR, 2, '0') END"),
                   "30 values, 10% unseen", True),
}
SENSITIVE = "gender"


def _features_sql(first: int, rows: int, drift_from: int | None) -> str:
    """Row numbers ``first .. first + rows - 1`` with their features; ``d`` marks the drifted rows."""
    d = "FALSE" if drift_from is None else f"i >= {first + drift_from}"
    features = [f"({sql})::{kind} AS {name}" for name, (sql, kind, _, _) in NUMERICAL.items()]
    features += [f"{sql} AS {name}" for name, (sql, _, _) in CATEGORICAL.items()]
    return (f"SELECT i, {', '.join(features)}, {_pick(46, ['F', 'M', 'X'], [0.48, 0.5, 0.02])} AS {SENSITIVE}, "
            f"{_z(47)} AS noise, {_u(49)} AS u_label, {_u(50)} AS u_missing, {_u(51)} AS u_status, "
            f"{_z(52)} AS z_latency, {_u(54)} AS u_version "
            f"FROM (SELECT i, {d} AS d FROM range({first}, {first + rows}) r(i))")


def _log_sql(rows: int) -> str:
    step = DAYS * 86_400_000_000 / rows  # microseconds between two predictions
    drift_from = math.ceil((WINDOW[0] - DAY0).total_seconds() * 1e6 / step)
    day21 = math.ceil(21 * 86_400_000_000 / step)
    return f"""
        SELECT i AS request_id,
               TIMESTAMP '{DAY0:%Y-%m-%d %H:%M:%S}' + to_microseconds(floor(i * {step!r})::BIGINT) AS ts,
               CASE WHEN i >= {day21} AND u_version < 0.5 THEN 'v2' ELSE 'v1' END AS model_version,
               {', '.join([*NUMERICAL, *CATEGORICAL, SENSITIVE])},
               CASE WHEN failed THEN NULL ELSE (score >= 0.5)::INTEGER END AS prediction,
               CASE WHEN failed THEN NULL ELSE score END AS score,
               CASE WHEN failed OR u_missing < CASE WHEN i >= {drift_from} THEN 0.4 ELSE 0.05 END THEN NULL
                    ELSE (u_label < 1 / (1 + exp(-logit)))::INTEGER END AS label,
               exp(4 + 0.35 * z_latency) AS latency_ms,
               CASE WHEN failed THEN 'error' ELSE 'ok' END AS status
        FROM ({_outputs_sql(_features_sql(0, rows, drift_from))})
        ORDER BY request_id"""


def _outputs_sql(features: str) -> str:
    return f"""
        SELECT *, 1 / (1 + exp(-(logit + 0.8 * noise))) AS score, u_status < 0.015 AS failed
        FROM (SELECT *, -0.3 + 0.08 * (num_00 - 50) + 0.5 * num_01 + CASE WHEN cat_region = 'north' THEN 0.4 ELSE 0 END
                        + CASE WHEN {SENSITIVE} = 'F' THEN -0.5 ELSE 0.2 END AS logit
              FROM ({features}))"""


def _reference_sql(rows: int) -> str:
    return f"""
        SELECT i - {REFERENCE_OFFSET} AS request_id, {', '.join([*NUMERICAL, *CATEGORICAL, SENSITIVE])},
               (score >= 0.5)::INTEGER AS prediction, score, (u_label < 1 / (1 + exp(-logit)))::INTEGER AS label
        FROM ({_outputs_sql(_features_sql(REFERENCE_OFFSET, rows, None))})
        ORDER BY request_id"""


def mapping_raw() -> dict[str, Any]:
    """The tower.yaml entry of the benchmark's model."""
    return {
        "table": LOG_TABLE, "task": "binary_classification",
        "columns": {"request_id": "request_id", "timestamp": "ts", "version": "model_version",
                    "prediction": "prediction", "score": "score", "label": "label", "latency_ms": "latency_ms",
                    "status": "status"},
        "features": {"numerical": list(NUMERICAL), "categorical": list(CATEGORICAL)},
        "sensitive": [SENSITIVE],
        "reference": {"table": REFERENCE_TABLE},
        "slo": {"latency_p95_ms": 250, "error_rate": 0.02},
    }


def bench_mapping() -> Any:
    from services.mapping import parse_model_mapping

    return parse_model_mapping(MODEL, mapping_raw())


def default_reference_rows(rows: int) -> int:
    return max(rows // 5, 1)


def data_path(data_dir: Path, rows: int, reference_rows: int) -> Path:
    return data_dir / f"log_{rows}_{reference_rows}_v{FORMAT}.duckdb"


def generate(data_dir: Path, rows: int, reference_rows: int, *, quiet: bool = False) -> Path:
    """The DuckDB file of the log and reference, generated once (reused when it is complete)."""
    import duckdb

    path = data_path(data_dir, rows, reference_rows)
    done = path.with_suffix(".done")
    if path.exists() and done.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in (path, done, path.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET preserve_insertion_order = true")
        con.execute(f"CREATE TABLE {LOG_TABLE} AS {_log_sql(rows)}")
        con.execute(f"CREATE TABLE {REFERENCE_TABLE} AS {_reference_sql(reference_rows)}")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    seconds = time.perf_counter() - started
    done.write_text(json.dumps({"rows": rows, "reference_rows": reference_rows, "format": FORMAT,
                                "seconds": round(seconds, 1), "mib": round(path.stat().st_size / 2**20)}))
    if not quiet:
        print(f"generated {rows:,} log rows + {reference_rows:,} reference rows in {seconds:.1f} s "
              f"({path.stat().st_size / 2**20:,.0f} MiB): {path}", flush=True)
    return path


def generated(data_dir: Path, rows: int, reference_rows: int) -> dict[str, Any]:
    """What ``generate`` recorded about a data set (its time and size), or {}."""
    try:
        return json.loads(data_path(data_dir, rows, reference_rows).with_suffix(".done").read_text())
    except (OSError, ValueError):
        return {}


def tower_url(data_dir: Path, rows: int, reference_rows: int) -> str:
    """The tower state (SQLite) that keeps this data set's reference profile."""
    return f"sqlite:///{data_dir / f'tower_{rows}_{reference_rows}_v{FORMAT}.db'}"


def keep_profile(db: Path, tower: str) -> float | None:
    """Compute and store the reference profile unless it is kept already; the seconds it took, or None."""
    from services.monitoring import reference
    from services.stores.tower_db import create_schema, make_tower_engine
    from services.stores.warehouse.engine import make_engine

    mapping = bench_mapping()
    tower_engine, engine = make_tower_engine(tower), make_engine(f"duckdb:///{db}")
    try:
        create_schema(tower_engine)
        rid = reference.reference_id(reference.reference_definition(mapping))
        if reference.stored_profile(tower_engine, rid) is not None:
            return None
        started = time.perf_counter()
        reference.save_profile(tower_engine, reference.compute_profile(engine, mapping))
        return time.perf_counter() - started
    finally:
        engine.dispose()
        tower_engine.dispose()


# --------------------------------------------------------------------------------------------
# Contenders (each runs in its own child process)
# --------------------------------------------------------------------------------------------
def _peak_mib() -> float:
    """This process's peak resident memory in MiB.

    ``VmHWM`` of /proc/self/status: ``ru_maxrss`` would not do, as Linux carries the parent's peak
    over a fork and exec into the child's.
    """
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _engine(db: Path) -> Any:
    """The warehouse engine the tower uses, with one connection opened (not timed)."""
    import sqlalchemy as sa

    from services.stores.warehouse.engine import make_engine

    engine = make_engine(f"duckdb:///{db}")
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return engine


def _report_json(report: Any) -> dict[str, Any]:
    drift = {d.column: {"method": d.method, "score": d.score, "drifted": d.drifted} for d in report.drift}
    fairness = {}
    for f in report.fairness:
        fairness[f.sensitive] = {
            "dpd": f.demographic_parity_difference, "eod": f.equalized_odds_difference,
            "groups": {g.group: {"selection_rate": g.selection_rate, "tpr": g.tpr, "fpr": g.fpr} for g in f.groups}}
    lat = report.latency
    return {"drift": drift, "fairness": fairness, "rows_current": report.rows_current,
            "latency": {"p50_ms": lat.p50_ms, "p95_ms": lat.p95_ms, "p99_ms": lat.p99_ms,
                        "error_rate": lat.error_rate}}


PIECES = {"numeric_histograms": "drift", "value_counts": "drift", "fairness_counts": "fairness",
          "latency_summaries": "latency", "classification_counts": "performance", "build_report": "statistics"}


class Clock:
    """Wall-clock seconds and CPU seconds (every thread of this process) since it was started.

    The CPU figure hardly moves with the machine's load, the wall-clock one does: both are kept.
    """

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def _ours(db: Path, tower: str, *, cold: bool) -> dict[str, Any]:
    """``window_report`` for the window; the reference profile loaded from the tower state (warm) or computed."""
    from services.monitoring import reference
    from services.monitoring import report as report_module
    from services.stores.tower_db import make_tower_engine
    from services.stores.warehouse import histograms, logs, outcomes

    mapping = bench_mapping()
    engine, tower_engine = _engine(db), make_tower_engine(tower)
    wall: dict[str, float] = dict.fromkeys(PIECES, 0.0)
    cpu: dict[str, float] = dict.fromkeys(PIECES, 0.0)

    def timed(module: Any, name: str) -> None:
        inner = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            clock = Clock()
            try:
                return inner(*args, **kwargs)
            finally:
                w, c = clock.stop()
                wall[name] += w
                cpu[name] += c
        setattr(module, name, wrapper)

    homes = {"numeric_histograms": histograms, "value_counts": histograms, "fairness_counts": outcomes,
             "classification_counts": outcomes, "latency_summaries": logs, "build_report": report_module}
    for name in PIECES:
        timed(homes[name], name)
    clock = Clock()
    if cold:
        profile = reference.compute_profile(engine, mapping)
    else:
        rid = reference.reference_id(reference.reference_definition(mapping))
        profile = reference.stored_profile(tower_engine, rid)
        if profile is None:
            raise RuntimeError("the reference profile is not kept: run the parent, which keeps it first")
    profile_s = clock.stop()
    clock = Clock()
    report = report_module.window_report(engine, mapping, profile, *WINDOW)
    window_s = clock.stop()

    def figures(pieces: dict[str, float], profile: float, window: float) -> dict[str, Any]:
        drift_sql = pieces["numeric_histograms"] + pieces["value_counts"]
        return {"profile_s": profile, "window_report_s": window, "pieces_s": dict(pieces), "drift_sql_s": drift_sql,
                "drift_s": profile + drift_sql + pieces["build_report"], "fairness_s": pieces["fairness_counts"],
                "latency_s": pieces["latency_summaries"], "report_s": profile + window}

    first = figures(wall, profile_s[0], window_s[0])
    first_cpu = figures(cpu, profile_s[1], window_s[1])
    # Once more in the same process, as a long-lived dashboard or job would run its next window.
    wall.update(dict.fromkeys(wall, 0.0))
    cpu.update(dict.fromkeys(cpu, 0.0))
    clock = Clock()
    report_module.window_report(engine, mapping, profile, *WINDOW)
    hot = figures(wall, profile_s[0], clock.stop()[0])
    return {**first, "cpu": first_cpu, "hot": hot, **_report_json(report)}


def _feature_frames(db: Path) -> tuple[Any, Any, tuple[float, float]]:
    import duckdb

    columns = ", ".join([*NUMERICAL, *CATEGORICAL])
    clock = Clock()
    con = duckdb.connect(str(db), read_only=True)
    try:
        reference = con.execute(f"SELECT {columns} FROM {REFERENCE_TABLE}").df()
        current = con.execute(f"SELECT {columns} FROM {LOG_TABLE} WHERE ts >= $1 AND ts < $2",
                              list(WINDOW)).df()
    finally:
        con.close()
    return reference, current, clock.stop()


def _evidently(db: Path) -> dict[str, Any]:
    """Evidently 0.7's DataDriftPreset on the reference and the window as pandas frames."""
    import warnings

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current, load = _feature_frames(db)
    definition = DataDefinition(numerical_columns=list(NUMERICAL), categorical_columns=list(CATEGORICAL))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clock = Clock()
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition))
        run = clock.stop()
    result = snapshot.dict()
    scores = {m["config"]["column"]: (m["config"]["method"], float(m["value"]))
              for m in result["metrics"] if m["config"]["type"].endswith(":ValueDrift")}
    drifted = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
               for t in result["tests"] if t["name"].startswith("Value Drift for column")}
    return {"load_s": load[0], "run_s": run[0], "cpu": {"load_s": load[1], "run_s": run[1]},
            "rows": [len(reference), len(current)],
            "drift": {c: {"method": scores[c][0], "score": scores[c][1], "drifted": drifted.get(c)} for c in scores}}


def _fairlearn(db: Path) -> dict[str, Any]:
    """fairlearn's MetricFrame and differences on the window's predicted rows, as the tower defines them.

    Selection rate over every row with a prediction; TPR, FPR and the equalized odds difference over
    the rows whose label has arrived (fairlearn needs y_true).
    """
    import duckdb
    import numpy as np
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    clock = Clock()
    con = duckdb.connect(str(db), read_only=True)
    try:
        frame = con.execute(f"SELECT {SENSITIVE}, prediction, label FROM {LOG_TABLE} "
                            "WHERE ts >= $1 AND ts < $2 AND prediction IS NOT NULL", list(WINDOW)).df()
    finally:
        con.close()
    labelled = frame[frame["label"].notna()]
    y_pred, groups = frame["prediction"].astype(int).to_numpy(), frame[SENSITIVE].to_numpy()
    placeholder = np.zeros(len(frame), dtype=int)  # selection rate ignores y_true
    ly, lp = labelled["label"].astype(int).to_numpy(), labelled["prediction"].astype(int).to_numpy()
    lg = labelled[SENSITIVE].to_numpy()
    load = clock.stop()
    clock = Clock()
    selection = MetricFrame(metrics=selection_rate, y_true=placeholder, y_pred=y_pred, sensitive_features=groups)
    rates = MetricFrame(metrics={"tpr": true_positive_rate, "fpr": false_positive_rate}, y_true=ly, y_pred=lp,
                        sensitive_features=lg)
    dpd = demographic_parity_difference(placeholder, y_pred, sensitive_features=groups)
    eod = equalized_odds_difference(ly, lp, sensitive_features=lg)
    run = clock.stop()
    by_group = rates.by_group
    return {"load_s": load[0], "run_s": run[0], "cpu": {"load_s": load[1], "run_s": run[1]}, "fairness": {SENSITIVE: {
        "dpd": float(dpd), "eod": float(eod),
        "groups": {str(g): {"selection_rate": float(selection.by_group[g]), "tpr": float(by_group.loc[g, "tpr"]),
                            "fpr": float(by_group.loc[g, "fpr"])} for g in selection.by_group.index}}}}


def _scan_sql(columns: Sequence[str], numeric: Sequence[str]) -> str:
    """One pass over the window: SUM of every numerical column, MAX of every other (both read each value)."""
    parts = ["count(*)"] + [f"{'sum' if c in numeric else 'max'}({c})" for c in columns]
    return f"SELECT {', '.join(parts)} FROM {LOG_TABLE} WHERE ts >= $1 AND ts < $2"


NUMERIC_LOG_COLUMNS = (*NUMERICAL, "prediction", "score", "label", "latency_ms")
REPORT_COLUMNS = (*NUMERICAL, *CATEGORICAL, SENSITIVE, "prediction", "score", "label", "latency_ms", "status",
                  "model_version")


def _scan(db: Path) -> dict[str, Any]:
    """The floor: a plain scan of the window's 25 feature columns, then of every column the report reads."""
    engine = _engine(db)
    out: dict[str, Any] = {"cpu": {}}
    with engine.connect() as conn:
        for key, columns in (("features_s", [*NUMERICAL, *CATEGORICAL]), ("all_s", REPORT_COLUMNS)):
            clock = Clock()
            conn.exec_driver_sql(_scan_sql(columns, NUMERIC_LOG_COLUMNS), tuple(WINDOW)).fetchall()
            out[key], out["cpu"][key] = clock.stop()
    return out


def _median_time(fn: Any, repeat: int) -> tuple[float, float]:
    """Median wall-clock and median CPU seconds of ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        clock = Clock()
        fn()
        wall, cpu = clock.stop()
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus)


def _operators(conn: Any, statement: str, parameters: Any) -> dict[str, int]:
    """How many operators of each kind (scans, aggregates, unions...) DuckDB's physical plan holds."""
    import re

    plan = "\n".join(str(v) for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters).fetchall()
                     for v in row)
    found: dict[str, int] = {}
    for name in re.findall(r"[╭┌]─+ ([A-Za-z_ ]+?) ─", plan):
        found[name] = found.get(name, 0) + 1
    return found


def _probe(db: Path, tower: str, repeat: int) -> dict[str, Any]:
    """What bounds the histogram push-down: its parts, alternatives, and the pure-Python statistics.

    Every query runs ``repeat`` times in this process (DuckDB's buffer pool warm after the first);
    the median is kept.
    """
    import numpy as np
    import sqlalchemy as sa

    from services.monitoring import reference
    from services.monitoring import report as report_module
    from services.stats import drift as drift_module
    from services.stores.warehouse import binning
    from services.stores.warehouse.histograms import numeric_histograms
    from services.stores.warehouse.rows import log_rows, rows_source
    from services.stores.warehouse.sql import WHOLE, finite_value

    mapping = bench_mapping()
    engine = _engine(db)
    from services.stores.tower_db import make_tower_engine

    profile = reference.stored_profile(make_tower_engine(tower),
                                       reference.reference_id(reference.reference_definition(mapping)))
    columns = [c for c, r in profile.numerical.items() if not r.value_counted]
    edges = {c: profile.numerical[c].edges for c in columns}
    shifts = {c: profile.numerical[c].histogram.shift for c in columns}
    rows = log_rows(mapping, *WINDOW)
    window = tuple(WINDOW)
    out: dict[str, Any] = {"columns": len(columns), "rows": None, "seconds": {}, "cpu": {}, "operators": {}}

    def measure(key: str, fn: Any) -> None:
        out["seconds"][key], out["cpu"][key] = _median_time(fn, repeat)

    def x_of(c: str) -> str:
        return f"(SELECT CASE WHEN isfinite({c}::DOUBLE) THEN {c}::DOUBLE END AS x FROM {LOG_TABLE} " \
               "WHERE ts >= $1 AND ts < $2)"

    def linear_grid(e: np.ndarray) -> tuple[float, float, list[int]]:
        width = (e[-1] - e[0]) / binning.GRID_CELLS if e.size > 1 and e[-1] > e[0] else 1.0
        lower = np.searchsorted(e, e[0] + width * np.arange(binning.GRID_CELLS), side="left")
        return float(e[0]), float(1 / width), [int(v) for v in lower]

    def cell(c: str) -> str:
        origin, scale, _ = linear_grid(edges[c])
        return f"least(greatest(floor((x - ({origin!r})) * {scale!r}), 0.0), {binning.GRID_CELLS - 1}.0)::BIGINT"

    def union(parts: list[str]) -> str:
        return " UNION ALL ".join(parts)

    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    with engine.connect() as conn:
        out["rows"] = conn.exec_driver_sql(f"SELECT count(*) FROM {LOG_TABLE} WHERE ts >= $1 AND ts < $2",
                                           window).scalar()

        def sql(text: str, parameters: Sequence[Any] = window) -> Any:
            return lambda: conn.exec_driver_sql(text, tuple(parameters)).fetchall()

        sums = ", ".join(f"sum({c})" for c in columns)
        measure("scan", sql(f"SELECT count(*), {sums} FROM {LOG_TABLE} WHERE ts >= $1 AND ts < $2"))
        measure("branches", sql(union(
            [f"SELECT {i} AS f, count(x), sum(x) FROM {x_of(c)}" for i, c in enumerate(columns)])))
        measure("arithmetic", sql(union(
            [f"SELECT {i} AS f, sum({cell(c)}) FROM {x_of(c)}" for i, c in enumerate(columns)])))
        grids = [linear_grid(edges[c])[2] for c in columns]
        measure("lookup", sql(union(
            [f"SELECT {i} AS f, sum(${i + 3}[{cell(c)} + 1]) FROM {x_of(c)}" for i, c in enumerate(columns)]),
            [*window, *grids]))
        plans = {i: binning.grid_plan(edges[c]) for i, c in enumerate(columns)}
        plans = {i: plan for i, plan in plans.items() if plan is not None}
        width = binning.grid_columns(plans)
        bare = []
        for i, c in enumerate(columns):
            x = finite_value("duckdb", c)
            source, keys = rows_source(mapping, rows, "duckdb", False, False, [c], {"x": x})
            grid = (i, plans[i], width) if i in plans else None
            binned = binning.binned_values("duckdb", source, keys, edges[c], f"edges_{i}", grid=grid)
            bare.append(sa.select(sa.literal(i).label("f"), sa.func.sum(binned.c.bin)))
        statement = sa.union_all(*bare)
        grid_edges = {i: edges[columns[i]] for i in plans}
        with binning.duckdb_grids(conn, plans, grid_edges):
            measure("binning", lambda: conn.execute(statement).fetchall())

        def square(c: str) -> str:
            return f"(x - ({shifts[c]!r})) * (x - ({shifts[c]!r}))"
        measure("equi_width", sql(union(
            [f"SELECT {i} AS f, b, count(*), sum(x), sum({square(c)}) FROM (SELECT x, {cell(c)} AS b FROM {x_of(c)}) "
             "GROUP BY b" for i, c in enumerate(columns)])))
        measure("histogram_aggregate", sql(union(
            [f"SELECT {i} AS f, histogram(x, ${i + 3}) FROM {x_of(c)}" for i, c in enumerate(columns)]),
            [*window, *[[float(v) for v in edges[c]] for c in columns]]))
        asof = union([
            f"SELECT {i} AS f, CASE WHEN w.x IS NULL THEN NULL ELSE coalesce(e.bin, 0) END AS bin, count(*) AS n, "
            f"sum(w.x) AS s, sum((w.x - ({shifts[c]!r})) * (w.x - ({shifts[c]!r}))) AS ss FROM {x_of(c)} w "
            f"ASOF LEFT JOIN (SELECT unnest(${i + 3}) AS edge, generate_subscripts(${i + 3}, 1) AS bin) e "
            "ON w.x >= e.edge GROUP BY ALL" for i, c in enumerate(columns)])
        asof_parameters = [*window, *[[float(v) for v in edges[c]] for c in columns]]
        measure("asof_join", sql(asof, asof_parameters))

    def ours() -> Any:
        return numeric_histograms(engine, mapping, rows, edges, shifts=shifts)
    measure("numeric_histograms", ours)
    empty = log_rows(mapping, datetime(2000, 1, 1), datetime(2000, 1, 8))  # no rows: the fixed cost alone
    measure("numeric_histograms_empty",
        lambda: numeric_histograms(engine, mapping, empty, edges, shifts=shifts))
    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute", capture)
    numeric_histograms(engine, mapping, empty, edges, shifts=shifts)
    event.remove(engine, "before_cursor_execute", capture)
    (text, parameters), = captured
    captured.clear()
    with engine.connect() as conn, binning.duckdb_grids(conn, plans, grid_edges):
        # the same statement sent as text: DuckDB's share of the fixed cost
        measure("numeric_histograms_empty_driver",
            lambda: conn.exec_driver_sql(text, parameters).fetchall())
    ours_result = ours()[WHOLE]
    # the ten-step binary search over the edges, without the grid
    measure("no_grid", lambda: numeric_histograms(engine, mapping, rows, edges, shifts=shifts, grid=False))

    with engine.connect() as conn:  # the ASOF alternative gives the same bins as ours
        got: dict[int, dict[Any, int]] = {}
        for f, b, n, _, _ in conn.exec_driver_sql(asof, tuple(asof_parameters)).fetchall():
            got.setdefault(f, {})[b] = n
        same = True
        for i, c in enumerate(columns):
            counts = np.zeros(edges[c].size + 1, dtype=np.int64)
            for b, n in got.get(i, {}).items():
                if b is not None:
                    counts[b] += n
            same &= bool(np.array_equal(counts, ours_result[c].counts)
                         and got.get(i, {}).get(None, 0) == ours_result[c].nulls)
        out["asof_same_bins"] = same

    # Which statements one window report sends, and their operators.
    event.listen(engine, "before_cursor_execute", capture)
    aggregates = report_module.fetch_aggregates(engine, mapping, profile, *WINDOW)[WHOLE]
    event.remove(engine, "before_cursor_execute", capture)
    with engine.connect() as conn:
        out["operators"] = [_operators(conn, s, p) for s, p in captured]

    # The pure-Python side: build_report, and what scipy's exact KS p-value would cost in it (the report
    # computes it only where KS is the verdict, i.e. below 1000 reference rows).
    def build() -> Any:
        return report_module.build_report(mapping, profile, aggregates, start=WINDOW[0], end=WINDOW[1])
    measure("build_report", build)
    ks_seconds = {}
    for column in columns:
        ref_sample, cur_sample = profile.numerical[column].histogram, aggregates.numerical[column]
        started = time.perf_counter()
        drift_module.ks_pvalue(ref_sample, cur_sample)
        ks_seconds[column] = time.perf_counter() - started
    out["ks_pvalue_s"] = ks_seconds
    return out


# --------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------
RESULT_TAG = "BENCH-RESULT "
CONTENDERS = ("scan", "ours_warm", "ours_cold", "fairlearn", "evidently")
IMPORTS = {  # imported before the work, so that the RSS they cost is known apart
    "scan": ("services.stores.warehouse.logs",),
    "ours_warm": ("services.monitoring.report", "services.monitoring.reference", "services.stores.tower_db"),
    "ours_cold": ("services.monitoring.report", "services.monitoring.reference", "services.stores.tower_db"),
    "fairlearn": ("duckdb", "pandas", "fairlearn.metrics"),
    "evidently": ("duckdb", "pandas", "evidently", "evidently.presets"),
    "probe": ("services.monitoring.report", "services.monitoring.reference", "services.stores.tower_db"),
}


def child_main(name: str, db: Path, tower: str, probe_repeat: int) -> dict[str, Any]:
    import importlib

    for module in IMPORTS[name]:
        importlib.import_module(module)
    imports_rss = _peak_mib()
    if name in ("ours_warm", "ours_cold"):
        result = _ours(db, tower, cold=name == "ours_cold")
    elif name == "evidently":
        result = _evidently(db)
    elif name == "fairlearn":
        result = _fairlearn(db)
    elif name == "scan":
        result = _scan(db)
    elif name == "probe":
        result = _probe(db, tower, probe_repeat)
    else:
        raise ValueError(f"unknown contender {name!r}")
    return {**result, "imports_rss_mib": imports_rss, "peak_rss_mib": _peak_mib()}


def wait_quiet(max_seconds: float) -> float:
    """Wait (at most ``max_seconds``) until the 1-minute load average is below the number of cores; that load."""
    deadline = time.monotonic() + max_seconds
    while os.getloadavg()[0] >= (os.cpu_count() or 1) and time.monotonic() < deadline:
        time.sleep(2)
    return os.getloadavg()[0]


def run_child(name: str, db: Path, tower: str, *, timeout: float, probe_repeat: int = 3) -> dict[str, Any]:
    """Run one contender in a fresh interpreter; its JSON result, or {"timeout": s} / {"error": text}."""
    command = [sys.executable, "-m", "bench.monitoring", "--child", name, "--db", str(db), "--tower", tower,
               "--probe-repeat", str(probe_repeat)]
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


# --------------------------------------------------------------------------------------------
# One data size
# --------------------------------------------------------------------------------------------
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
            if "timeout" in run:
                result.stopped[contender] = f"timed out after {run['timeout']:.0f} s"
            elif "error" in run:
                result.stopped[contender] = "failed"
            elif (fastest := min(r[MAIN_SECONDS[contender]] for r in result.ok(contender))) > options.slow_seconds:
                result.stopped[contender] = (f"not repeated: its fastest run took {fastest:.0f} s "
                                             f"(> --slow-seconds {options.slow_seconds:.0f})")
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


# --------------------------------------------------------------------------------------------
# Agreement, ratios, targets
# --------------------------------------------------------------------------------------------
def drift_agreement(size: SizeResult) -> list[dict[str, Any]] | None:
    """Per feature: our method, score and verdict beside Evidently's (None unless both ran)."""
    from services.stats.drift import EVIDENTLY_DISPLAY_NAMES

    ours, theirs = size.last("ours_warm"), size.last("evidently")
    if ours is None or theirs is None:
        return None
    rows = []
    for column in [*NUMERICAL, *CATEGORICAL]:
        mine, other = ours["drift"][column], theirs["drift"].get(column)
        if other is None:
            rows.append({"column": column, "agree": False, "missing": True})
            continue
        same_method = EVIDENTLY_DISPLAY_NAMES[mine["method"]] == other["method"]
        rows.append({"column": column, "method": mine["method"], "evidently_method": other["method"],
                     "score": mine["score"], "evidently_score": other["score"], "drifted": mine["drifted"],
                     "evidently_drifted": other["drifted"],
                     "agree": bool(same_method and mine["drifted"] is other["drifted"])})
    return rows


def fairness_difference(size: SizeResult) -> float | None:
    """The largest absolute difference between our fairness figures and fairlearn's (None unless both ran)."""
    ours, theirs = size.last("ours_warm"), size.last("fairlearn")
    if ours is None or theirs is None:
        return None
    mine, other = ours["fairness"][SENSITIVE], theirs["fairness"][SENSITIVE]
    differences = [abs(mine["dpd"] - other["dpd"]), abs(mine["eod"] - other["eod"])]
    if set(mine["groups"]) != set(other["groups"]):
        return math.inf
    for group, rates in mine["groups"].items():
        differences += [abs(rates[k] - other["groups"][group][k]) for k in ("selection_rate", "tpr", "fpr")]
    return max(differences)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def ratios(size: SizeResult, *, cpu: bool = False) -> dict[str, float | None]:
    """The ratios of the medians; of CPU seconds instead of wall-clock seconds with ``cpu``."""
    def m(contender: str, key: str) -> float | None:
        return size.median(contender, ("cpu." + key) if cpu else key)
    return {
        "evidently_vs_drift_warm": _ratio(m("evidently", "run_s"), m("ours_warm", "drift_s")),
        "evidently_vs_drift_cold": _ratio(m("evidently", "run_s"), m("ours_cold", "drift_s")),
        "evidently_vs_report_warm": _ratio(m("evidently", "run_s"), m("ours_warm", "report_s")),
        "evidently_loaded_vs_report_warm": _ratio(_sum(m("evidently", "run_s"), m("evidently", "load_s")),
                                                  m("ours_warm", "report_s")),
        "fairlearn_vs_fairness": _ratio(m("fairlearn", "run_s"), m("ours_warm", "fairness_s")),
        "drift_sql_vs_scan": _ratio(m("ours_warm", "drift_sql_s"), m("scan", "features_s")),
        "report_sql_vs_scan": _ratio(_sum(m("ours_warm", "window_report_s"), -(m("ours_warm", "pieces_s.build_report")
                                                                                or 0.0)), m("scan", "all_s")),
    }


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


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
        return Target(text, f"{_x(warm)} warm, {_x(cold)} cold (CPU time: {_x(warm_cpu)} warm, "
                            f"{_x(c['evidently_vs_drift_cold'])} cold)", warm >= factor,
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
    out.append(Target(text, "not measured" if ratio is None else f"{_x(ratio)} (CPU time: {_x(ratio_cpu)})",
                      None if ratio is None else ratio >= 500, None if ratio_cpu is None else ratio_cpu >= 500))
    for size in sizes:
        ratio, ratio_cpu = ratios(size)["drift_sql_vs_scan"], ratios(size, cpu=True)["drift_sql_vs_scan"]
        out.append(Target(f"current-window drift work within 3x of a plain scan ({size.rows:,} rows)",
                          "not measured" if ratio is None else f"{_x(ratio)} (CPU time: {_x(ratio_cpu)})",
                          None if ratio is None else ratio <= 3, None if ratio_cpu is None else ratio_cpu <= 3))
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    from importlib import metadata

    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), 0)
    versions = {}
    for package in ("duckdb", "duckdb-engine", "sqlalchemy", "evidently", "fairlearn", "pandas", "numpy", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": f"{mem_kib / 2**20:.0f} GiB",
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "load": " / ".join(f"{v:.1f}" for v in os.getloadavg()),
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items())}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _s(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}×" if value >= 10 else f"{value:.1f}×"


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


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
        memory = f"{_mib(peak)} ({_mib(imports)})" if peak else "—"
        cpu = None if key.startswith("hot.") else m(contender, "cpu." + key)
        lines.append(f"| {label} | {what} | {_s(m(contender, key))} | {_s(cpu)} | {_runs(size, contender)} | "
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
        lines.append(f"| {label} | " + " | ".join(f"{_x(w[key])} | {_x(c[key])}" for w, c in table)
                     + f" | {target} |")
    lines.append("| peak RSS of ours, warm / cold (MiB) | " + "".join(
        f"{_mib(s.peak('ours_warm'))} / {_mib(s.peak('ours_cold'))} | | " for s in sizes)
        + "< 1.5 GB (1,431 MiB) at 10M |")
    lines.append("| peak RSS of Evidently / fairlearn (MiB) | " + "".join(
        f"{_mib(s.peak('evidently'))} / {_mib(s.peak('fairlearn'))} | | " for s in sizes) + " |")
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
            f"{_s(s.probe['seconds'].get(key))} s | {_s(s.probe.get('cpu', {}).get(key))} s" for s in probed) + " |")
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


def _busy(machine_state: dict[str, str]) -> float:
    """The 1-minute load average per core recorded in ``machine()``."""
    try:
        return float(machine_state["load"].split(" / ")[0]) / max(int(machine_state["cores"]), 1)
    except (KeyError, ValueError):
        return math.inf


def results_markdown(sizes: list[SizeResult], command: str, before: dict[str, str], after: dict[str, str],
                     started: datetime, options: argparse.Namespace, rendered_from: Path | None = None) -> str:
    """bench/RESULTS.md: machine, command, the tables of medians, the targets and what bounds them."""
    window_days = (WINDOW[1] - WINDOW[0]).days
    lines = [
        "## Monitoring benchmark: the tower's push-down against Evidently 0.7 and fairlearn",
        "",
        f"Generated by `{command}` (bench/monitoring.py) on {started:%Y-%m-%d %H:%M} UTC"
        + (f"; this text was rendered again from that run's saved measurements with `python -m bench.monitoring "
           f"--from-json {rendered_from} --out ...`." if rendered_from else "."),
        "",
        f"**Machine.** {before['cpu']}, {before['cores']} cores, {before['memory']} RAM, {before['os']}, "
        f"Python {before['python']}; {before['versions']}. "
        + ("Nothing else ran on the machine" if _busy(before) <= 1.0 else
           "The machine was shared: other work ran at the same time")
        + f" (load average 1/5/15 min: {before['load']} at the start, {after['load']} at the "
        f"end); every figure is the **median of {options.repeat} runs**, each in a fresh child process (a run "
        f"slower than {options.slow_seconds:.0f} s is not repeated: the runs column says so). Peak memory is the "
        "child's peak resident set (`VmHWM`); the figure in brackets is the same process right after its imports, "
        "before any work.",
        "",
        f"**Data.** A synthetic prediction log generated in DuckDB (bench/monitoring.py `generate`): "
        f"{len(NUMERICAL)} numerical and {len(CATEGORICAL)} categorical features, a sensitive attribute "
        f"(`{SENSITIVE}`), prediction/score/label (labels NULL for 5 % of rows, 40 % in the last week), latency, "
        f"status (1.5 % errors, without prediction), two versions, spread evenly over {DAYS} days and stored in "
        f"time order. The benchmark window is the last {window_days} days (a fifth of the log); {_drifting()} "
        "drift in it. The reference is its own table, as large as the window, drawn like the first four weeks.",
        "",
        "### Results (medians)",
        "",
    ]
    for size in sizes:
        lines += size_table(size) + [""]
    lines += ["### Ratios", ""] + ratio_table(sizes) + ["", "### Targets (issue 3, \"Done when\")", ""]
    for target in targets(sizes):
        box = "x" if target.met and target.met_cpu is not False else " "
        lines.append(f"- [{box}] {target.text}: {target.measured} — {target.state}")
    lines += ["", "### What bounds the drift figures", ""] + bound_lines(sizes)
    lines += ["", "### Agreement with the reference libraries", ""] + agreement_lines(sizes)
    lines += ["", "### Notes", ""] + note_lines(sizes)
    return "\n".join(lines).rstrip() + "\n"


def _drifting() -> str:
    names = [n for n, spec in NUMERICAL.items() if spec[3]] + [n for n, spec in CATEGORICAL.items() if spec[2]]
    return f"{len(names)} features ({', '.join(names)})"


# The drift-vs-Evidently target of each size.
EVIDENTLY_TARGETS = {1_000_000: 50, 10_000_000: 200}


def _evidently_gap(size: SizeResult) -> list[str]:
    """What separates our warm drift report from its target against Evidently, when it is missed."""
    target = EVIDENTLY_TARGETS.get(size.rows)
    evidently, ours = size.median("evidently", "run_s"), size.median("ours_warm", "drift_s")
    fixed = (size.probe or {}).get("seconds", {}).get("numeric_histograms_empty")
    if not target or not evidently or not ours or evidently / ours >= target:
        return []
    budget = evidently / target
    return ["", (
        f"**{size.rows:,} rows — drift report vs Evidently.** The target ({target}×) allows {_s(budget)} s; ours "
        f"takes {_s(ours)} s ({evidently / ours:.0f}×), {_s(ours - budget)} s over. "
        + (f"Of ours, {_s(fixed)} s is the fixed cost of the histogram statement, paid even on an empty window "
           "(SQLAlchemy building and compiling 17 branches, DuckDB parsing, binding and planning them); "
           if fixed else "")
        + "the rest is the per-value binning and aggregation above, and in a fresh process reading the window's "
        "columns (this machine keeps only about 2 GB of files cached, so the 10M-row file is partly read from "
        "disk again by each child). "
        + ("The gap is smaller than that fixed cost, so the lever is the statement itself, not the per-value "
           "work. One variant was tried after this run (1M rows, in one process): a single scan that unnests the "
           "17 features into one join and one GROUP BY lowers the empty-window cost (0.093 s against 0.118 s) but "
           "costs more per value (0.351 s against 0.309 s in all), so it was not kept. The grids are already "
           "lent to DuckDB as an Arrow table rather than bound; what is left is SQLAlchemy's compilation, which "
           "a DuckDB-only statement written as text would skip."
           if fixed and fixed > ours - budget else
           "The gap exceeds that fixed cost, so the per-value work must shrink too: fewer bins than the 1000 "
           "reference quantiles would do it, at the price of coarser Wasserstein and KS figures than the tests "
           "hold them to against scipy. Not done.")
    )]


def bound_lines(sizes: list[SizeResult]) -> list[str]:
    probed = [s for s in sizes if s.probe and "seconds" in s.probe]
    lines = ["Measured by the `probe` child on the same window (each query run several times in one process, "
             "DuckDB's buffer pool warm; medians). \"Values\" are histogram features × window rows.", ""]
    lines += probe_table(sizes)
    for size in probed:
        lines += [""] + _bound_text(size)
    for size in sizes:
        lines += _evidently_gap(size)
    big = max(sizes, key=lambda s: s.rows) if sizes else None
    if big is not None and big.median("fairlearn", "cpu.run_s") and big.median("ours_warm", "cpu.fairness_s"):
        m = big.median
        window = int(m("ours_warm", "rows_current") or 0)
        ours_cpu, theirs_cpu = m("ours_warm", "cpu.fairness_s"), m("fairlearn", "cpu.run_s")
        lines += ["", f"**{big.rows:,} rows — fairness.** Ours is one statement: a scan of three columns of the "
                  f"{window:,}-row window and one hash aggregate over (group, prediction, label), "
                  f"{_s(m('ours_warm', 'fairness_s'))} s (CPU {_s(ours_cpu)} s, {_ns(ours_cpu, window)} per row). "
                  f"fairlearn took {_s(m('fairlearn', 'run_s'))} s (CPU {_s(theirs_cpu)} s"
                  + ("; its wall-clock time is inflated by the machine's load" if (m("fairlearn", "run_s") or 0)
                     > 1.5 * theirs_cpu else "")
                  + f"). Ours runs on both cores where fairlearn runs on one, so the CPU-time ratio is the "
                  f"stricter one: 500× fairlearn's CPU time would leave "
                  f"{_ns(theirs_cpu / 500, window)} of CPU per row for the scan and the aggregate together."]
    cold, warm = (big.peak("ours_cold"), big.peak("ours_warm")) if big else (None, None)
    if cold and warm:
        lines += ["", f"**{big.rows:,} rows — memory.** The warm report peaks at {_mib(warm)} MiB. The cold one "
                  f"peaks at {_mib(cold)} MiB: computing the reference profile ranks every feature of the "
                  f"{big.reference_rows:,}-row reference with `ROW_NUMBER() OVER (ORDER BY x)` for its 1000 "
                  "quantiles, and DuckDB's sorts hold those columns in memory; it happens once per reference."]
    return lines


def _ns(seconds: float | None, values: int) -> str:
    return "—" if seconds is None or not values else f"{seconds / values * 1e9:.1f} ns"


def _bound_text(size: SizeResult) -> list[str]:
    p, c, m = size.probe["seconds"], size.probe["cpu"], size.median
    values = size.probe["columns"] * size.probe["rows"]

    def both(key: str) -> str:
        return f"{_s(p.get(key))} s (CPU {_s(c.get(key))} s)"

    scan, drift_sql = m("scan", "features_s"), m("ours_warm", "drift_sql_s")
    scan_cpu, drift_sql_cpu = m("scan", "cpu.features_s"), m("ours_warm", "cpu.drift_sql_s")
    ops = size.probe.get("operators") or []
    groups = sum(o.get("Hash Group By", 0) + o.get("Perfect Hash Group By", 0) for o in ops)
    scans = sum(o.get("Seq Scan", 0) for o in ops)
    lines = [
        f"**{size.rows:,} rows — current-window drift SQL vs the plain scan.** The plain scan of the window's 25 "
        f"features takes {_s(scan)} s (CPU {_s(scan_cpu)} s) in a fresh process and {both('scan')} for the 17 "
        f"histogram features once DuckDB's buffer pool is warm: the log is stored in time order, so DuckDB's zone "
        f"maps skip the row groups outside the window, and a SUM over a compressed column costs "
        f"{_ns(c.get('scan'), values)} of CPU per value. Our drift SQL (histograms + value counts) takes "
        f"{_s(drift_sql)} s (CPU {_s(drift_sql_cpu)} s), {_x(_ratio(drift_sql, scan))} the scan "
        f"({_x(_ratio(drift_sql_cpu, scan_cpu))} in CPU time). One window report sends {len(ops)} statements "
        f"holding {scans} table scans and {groups} hash aggregates (one per feature, one per sensitive attribute, "
        f"...). Where the histogram time goes (probe, CPU per value = CPU seconds / {values:,} values):",
        "",
        f"- a fixed cost per statement: {both('numeric_histograms_empty')} on an empty window (building the "
        f"statement's {size.probe['columns']} branches, compiling it, lending DuckDB the grid table, binding, "
        f"planning), of which DuckDB's parse/bind/plan of the same SQL text is "
        f"{both('numeric_histograms_empty_driver')};",
        f"- one UNION branch per feature (each re-reads and re-filters `ts`): {both('branches')} instead of "
        f"{both('scan')} for one scan;",
        f"- the bin of each value: the grid-cell arithmetic costs {_ns(_sub(c, 'arithmetic', 'branches'), values)} "
        f"per value, a DuckDB list subscript into the 4096-cell grid (`grid[cell]`; DuckDB copies a bound list "
        f"for every vector it subscripts) about {_ns(_sub(c, 'lookup', 'arithmetic'), values)}, which is why ours "
        f"joins each value's cell to a 4096-row table of its first bin and candidate edges instead (one Arrow "
        f"table of every feature's grid, registered on the connection for the statement: bound as lists, the "
        f"same numbers cost about 0.035 s to convert at 17 features): "
        f"{_ns(_sub(c, 'binning', 'branches'), values)} per value ({both('binning')} in all);",
        f"- the GROUP BY bin with count, sum and sum of squares: equi-width cells with no search at all already "
        f"take {both('equi_width')}, {_x(_ratio(c.get('equi_width'), c.get('scan')))} the scan's CPU.",
        "",
        f"So the 3× target would leave about {_ns(2 * (c.get('scan') or 0), values)} of CPU per value for binning "
        f"*and* aggregating, less than the join probe or one hash-aggregate update costs: the bound is "
        f"per-value computation, not reading the data, and an exact 1000-bin histogram in SQL cannot reach it on "
        f"DuckDB. "
        + ("None of the alternatives measured is clearly better: " if (c.get("asof_join") or 0)
           >= 0.8 * (c.get("numeric_histograms") or 0) else "One alternative is cheaper at this size: ")
        + f"an ASOF JOIN of each value to the edge "
        f"list gives the same bins (verified: {'yes' if size.probe.get('asof_same_bins') else '**no**'}) in "
        f"{both('asof_join')} against {both('numeric_histograms')} for ours; DuckDB's `histogram(x, edges)` "
        f"aggregate takes {both('histogram_aggregate')} and has no per-bin sums (which Wasserstein needs); the "
        f"ten-step binary search without the grid takes {both('no_grid')}.",
    ]
    ks = size.probe.get("ks_pvalue_s", {})
    if ks:
        lines += [
            "",
            f"**{size.rows:,} rows — the statistics in Python.** `build_report` (every drift statistic of the "
            f"25 features from the aggregates) takes {both('build_report')}. It computes scipy's exact KS p-value "
            f"only where KS is the verdict (below 1000 reference rows, as Evidently chooses): here that p-value "
            f"would cost {sum(ks.values()):.2f} s for the {len(ks)} numerical features, "
            f"{max(ks.values()):.2f} s for the slowest, for a number that decides nothing.",
        ]
    return lines


def _sub(values: dict[str, float], a: str, b: str) -> float | None:
    return None if values.get(a) is None or values.get(b) is None else max(values[a] - values[b], 0.0)


def note_lines(sizes: list[SizeResult]) -> list[str]:
    return [
        "- **Warm** means the reference profile (per feature its 1000-quantile edges, fine histogram with per-bin "
        "sums, or value counts; per categorical its counts; the reference performance) is already kept in the "
        "tower state, as it is after the monitoring job's first run: the report loads it (timed) and sends six "
        "statements for the window. **Cold** computes the profile from the reference table first "
        "(`compute_profile`: counts, then 1000 quantile ranks per feature with ROW_NUMBER, then the reference "
        "histograms), which happens once per (model, reference definition).",
        "- Each contender runs in a fresh child process, so its figure includes SQLAlchemy compiling the statements "
        "and DuckDB's first read of the window (from the OS page cache); the \"next window\" row is the same "
        "process's second report, as the dashboard or a backfill would run it. Peak memory is per process "
        "(`VmHWM`: `ru_maxrss` would carry the parent's peak over fork and exec).",
        "- **Evidently's own choices.** Its default verdict for a numerical feature with more than 1000 reference "
        "rows is the Wasserstein distance normed by the reference std, computed by `scipy.stats.wasserstein_"
        "distance` on the raw values (no binning); ours rebuilds it from the 1000 reference-quantile bins and their "
        "sums, so the scores above differ in the third or fourth decimal. For PSI and Jensen-Shannon on a "
        "numerical feature Evidently bins both samples together with `np.histogram_bin_edges(..., bins=\"sturges\")` "
        "(about 22 equal-width bins here), while the tower uses the reference deciles (docs/ARCHITECTURE.md), so those "
        "two statistics differ from Evidently's by definition; they are not the default verdict. A numerical "
        "feature with at most 5 values and every categorical feature get Jensen-Shannon on value counts in both.",
        "- Evidently's and fairlearn's loading into pandas is timed apart and left out of their ratios; their "
        "peak memory includes the frames (for Evidently the 25 feature columns of reference and window, five of "
        "them object-dtype strings).",
        "- fairlearn is run with the tower's definitions (services/stats/fairness.py): selection rate and demographic "
        "parity over every row with a prediction; TPR, FPR and equalized odds over the rows whose label has "
        "arrived.",
        "- Also tried once at 1,000,000 rows while writing the benchmark (not part of the run): the balanced CASE "
        "tree of literal edges that other dialects get, ~10 s; a list of STRUCTs as the grid, ~1.4 s; UNPIVOT of "
        "the 17 features with one ASOF JOIN, ~1.2 s; the previous binary search by list subscripts (grid lookup "
        "then two steps into the 1000 edges), 29 % slower than the join at 10M rows and 19 % at 1M (measured on "
        "an idle machine, same bins).",
        "- The machine is shared, so the same query varies by 2× or more from one minute to the next; read the "
        "ratios for their order of magnitude. `load_before` in the `--json` output records the load average "
        "before each run. CPU seconds (`time.process_time`, every thread of the child) move much less with the "
        "load than wall-clock seconds, which is why both are given. They add up DuckDB's two threads, so on an "
        "idle machine our wall-clock figures fall below our CPU figures, while Evidently and fairlearn (one "
        "thread) take about their CPU time: the CPU-time ratios are the conservative ones for us.",
        "- What moved the drift figures without touching their results, each measured against the one before "
        "on the same data: the KS p-value computed only where KS is the verdict (`build_report` 1.2 s → 0.02 s "
        "at 10M rows); the grids lent to DuckDB as one registered Arrow table instead of 17 × (4096 + 1000) bound "
        "list values (the empty-window cost 0.10 s → 0.06 s); no overflow guard around the sum of squares on "
        "DuckDB, whose product already overflows to +inf (a CASE over every value; 5–7 % of the statement); the "
        "result rows added into the histograms with numpy rather than a Python step per row (0.016 s → 0.004 s "
        "for 17,000 rows). Left: SQLAlchemy building and compiling the 17 branches (about 0.03 s per call; "
        "duckdb-engine turns SQLAlchemy's statement cache off, so a long-lived process pays it every time too). "
        "No cheaper exact binning was found in DuckDB.",
    ]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.monitoring", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="log sizes to run (default: 1000000 10000000)")
    parser.add_argument("--reference-rows", type=int, default=None,
                        help="rows of the reference table (default: a fifth of the log, the size of the window)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the median is reported")
    parser.add_argument("--out", type=Path, default=None, help="write the results as Markdown (bench/RESULTS.md)")
    parser.add_argument("--json", type=Path, default=None, help="write every raw measurement as JSON")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "ml-control-tower-bench",
                        help="where the generated DuckDB files and tower states are cached")
    parser.add_argument("--skip-evidently-above", type=int, default=None, metavar="N",
                        help="do not run Evidently on logs of more than N rows (default: run it)")
    parser.add_argument("--evidently-timeout", type=float, default=900.0,
                        help="seconds after which an Evidently run is stopped and recorded as timed out")
    parser.add_argument("--timeout", type=float, default=1800.0, help="timeout of every other child process")
    parser.add_argument("--slow-seconds", type=float, default=60.0,
                        help="a contender whose run takes longer than this is not repeated at that size")
    parser.add_argument("--jobs", type=int, default=1,
                        help="contenders run at the same time (default 1; more only for a quick smoke test, "
                             "since concurrent runs disturb each other's timings)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each run, wait up to this long for the 1-minute load average to fall below "
                             "the number of cores (the machine is shared); default: do not wait")
    parser.add_argument("--no-probe", dest="probe", action="store_false",
                        help="skip the measurements of what bounds the histogram push-down")
    parser.add_argument("--probe-repeat", type=int, default=3, help="runs of each probe query (median)")
    parser.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                        help="run nothing: print (and with --out write) the results saved by an earlier --json")
    parser.add_argument("--child", choices=[*CONTENDERS, "probe"], help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tower", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run(options: argparse.Namespace) -> list[SizeResult]:
    """The whole benchmark: every size, every contender; prints as it goes and a summary at the end."""
    sizes = []
    for rows in options.rows:
        reference_rows = options.reference_rows or default_reference_rows(rows)
        print(f"{rows:,}-row log, {reference_rows:,}-row reference, window {WINDOW[0]:%Y-%m-%d} to "
              f"{WINDOW[1]:%Y-%m-%d}", flush=True)
        sizes.append(bench_size(rows, reference_rows, options))
    print_summary(sizes)
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.child:
        result = child_main(options.child, options.db, options.tower, options.probe_repeat)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0
    if options.from_json:  # render the results of an earlier run again
        record = json.loads(options.from_json.read_text())
        sizes = [SizeResult(**size) for size in record["sizes"]]
        print_summary(sizes)
    else:
        command = "python -m bench.monitoring " + " ".join(sys.argv[1:] if argv is None else argv)
        before, started = machine(), datetime.now(UTC)
        sizes = run(options)
        record = {"command": command.strip(), "started": started.isoformat(), "before": before, "after": machine(),
                  "options": {"repeat": options.repeat, "slow_seconds": options.slow_seconds},
                  "sizes": [s.to_json() for s in sizes]}
        if options.json:
            options.json.write_text(json.dumps(record, indent=1))
    if options.out:
        settings = argparse.Namespace(**record["options"])
        write_section(options.out, "monitoring",
                      results_markdown(sizes, record["command"], record["before"], record["after"],
                                       datetime.fromisoformat(record["started"]), settings,
                                       rendered_from=options.from_json))
        print(f"\nwrote {options.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
