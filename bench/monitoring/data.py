"""The benchmark's synthetic prediction log and reference, generated inside DuckDB (deterministic)."""

# ruff: noqa: S608 -- every statement here is built from this package's constant names and numbers
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

FORMAT = 1  # bump when the generated data changes, so cached files are rebuilt
LOG_TABLE, REFERENCE_TABLE = "bench_log", "bench_reference"
DAY0 = datetime(2026, 1, 5)
DAYS = 35
WINDOW = (DAY0 + timedelta(days=DAYS - 7), DAY0 + timedelta(days=DAYS))  # the last week: where drift is
REFERENCE_OFFSET = 10**12  # the reference's row numbers, so its pseudo-random stream is its own
MODEL = "bench-model"
CHUNK_ROWS = 5_000_000  # rows generated (and sorted) per statement

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


def _log_sql(rows: int, first: int = 0, count: int | None = None) -> str:
    """The log of ``rows`` rows, or only its rows ``first .. first + count - 1`` (the same values: a
    large log is generated in chunks, so no statement sorts more than one chunk)."""
    count = rows - first if count is None else count
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
        FROM ({_outputs_sql(_features_sql(first, count, drift_from - first))})
        ORDER BY request_id"""


def _outputs_sql(features: str) -> str:
    return f"""
        SELECT *, 1 / (1 + exp(-(logit + 0.8 * noise))) AS score, u_status < 0.015 AS failed
        FROM (SELECT *, -0.3 + 0.08 * (num_00 - 50) + 0.5 * num_01 + CASE WHEN cat_region = 'north' THEN 0.4 ELSE 0 END
                        + CASE WHEN {SENSITIVE} = 'F' THEN -0.5 ELSE 0.2 END AS logit
              FROM ({features}))"""


def _reference_sql(rows: int, first: int = 0, count: int | None = None) -> str:
    count = rows - first if count is None else count
    return f"""
        SELECT i - {REFERENCE_OFFSET} AS request_id, {', '.join([*NUMERICAL, *CATEGORICAL, SENSITIVE])},
               (score >= 0.5)::INTEGER AS prediction, score, (u_label < 1 / (1 + exp(-logit)))::INTEGER AS label
        FROM ({_outputs_sql(_features_sql(REFERENCE_OFFSET + first, count, None))})
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
        # In chunks of CHUNK_ROWS, each sorted on its own: the same rows in the same order as one
        # statement, without sorting 100M rows at once (bench/scale generates such a log).
        for table, total, sql in ((LOG_TABLE, rows, _log_sql), (REFERENCE_TABLE, reference_rows, _reference_sql)):
            for first in range(0, total, CHUNK_ROWS):
                count = min(CHUNK_ROWS, total - first)
                verb = f"CREATE TABLE {table} AS" if first == 0 else f"INSERT INTO {table}"
                con.execute(f"{verb} {sql(total, first, count)}")
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
