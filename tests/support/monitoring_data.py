"""Synthetic prediction logs and references for the monitoring tests, with their numpy-side oracles.

The log has every awkward thing the warehouse SQL must survive: NaN, +-inf and NULL features,
NULL statuses and latencies, failed requests without prediction or score, labels still missing,
NULL sensitive groups, a category the reference never saw, integer features with few values.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from services.mapping import ModelMapping, parse_model_mapping

DAY0 = datetime(2026, 3, 1)
NUMERICAL = ["x_normal", "x_lognormal", "x_int", "x_three"]
CATEGORICAL = ["c_region", "c_new"]
SENSITIVE = ["gender", "band"]
COLUMNS = {"request_id": "request_id", "timestamp": "ts", "version": "model_version", "prediction": "prediction",
           "score": "score", "label": "label", "latency_ms": "latency_ms", "status": "status"}


def mapping(log_table: str, reference_table: str | None = None, name: str = "synthetic", **changes) -> ModelMapping:
    raw = {
        "table": log_table, "task": "binary_classification", "columns": COLUMNS,
        "features": {"numerical": NUMERICAL, "categorical": CATEGORICAL}, "sensitive": SENSITIVE,
        "reference": {"table": reference_table} if reference_table else {},
        "slo": {"latency_p95_ms": 250, "error_rate": 0.05},
    }
    raw.update(changes)
    return parse_model_mapping(name, raw)


def _features(rng: np.random.Generator, n: int, shift: float) -> pd.DataFrame:
    x_normal = rng.normal(10 + shift, 2, n)
    specials = rng.random(n)
    x_normal[specials < 0.03] = np.nan
    x_normal[(specials >= 0.03) & (specials < 0.04)] = np.inf
    x_normal[(specials >= 0.04) & (specials < 0.045)] = -np.inf
    x_lognormal = np.exp(rng.normal(3 + shift / 4, 1 + shift / 8, n))
    x_lognormal[rng.random(n) < 0.02] = np.nan
    region_p = [0.4, 0.3, 0.2, 0.1] if shift == 0 else [0.2, 0.3, 0.2, 0.3]
    region = np.asarray(["north", "south", "east", "west"], dtype=object)[rng.choice(4, n, p=region_p)]
    region[rng.random(n) < 0.05] = None
    new = rng.choice(["a", "b", "c"] if shift == 0 else ["a", "b", "c", "d"], n).astype(object)
    gender = rng.choice(["F", "M"], n).astype(object)
    gender[rng.random(n) < 0.03] = None
    return pd.DataFrame({
        "x_normal": x_normal,
        "x_lognormal": x_lognormal,
        "x_int": rng.integers(0, 10 + int(shift * 2), n).astype("int64"),
        "x_three": rng.choice([0.5, 1.5, 2.5], n, p=[0.5, 0.3, 0.2] if shift == 0 else [0.3, 0.3, 0.4]),
        "c_region": region,
        "c_new": new,
        "gender": gender,
        "band": rng.choice(["young", "middle", "old"], n).astype(object),
    })


def _outputs(rng: np.random.Generator, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, score, label) of a scorer that is unfair to F and imperfect."""
    n = len(features)
    bias = np.where(features["gender"].to_numpy() == "F", -0.6, 0.3)
    logit = 0.3 * np.nan_to_num(features["x_normal"].to_numpy() - 10, posinf=0, neginf=0) + bias
    score = 1 / (1 + np.exp(-(logit + rng.normal(0, 1, n))))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    return (score >= 0.5).astype("int64"), score, label


def make_log(seed: int = 1, rows: int = 3000, days: int = 4, shift: float = 0.0, start: datetime = DAY0
             ) -> pd.DataFrame:
    """A log of ``rows`` requests over ``days`` days from ``start``; ``shift`` > 0 makes it drift."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, days * 86_400_000_000, rows))
    features = _features(rng, rows, shift)
    status = rng.choice(np.array(["ok", "error", "timeout"], dtype=object), rows, p=[0.93, 0.05, 0.02])
    status[rng.random(rows) < 0.01] = None
    failed = status != "ok"
    labelled = rng.random(rows) < 0.7
    prediction, score, label = _outputs(rng, features)
    prediction = pd.array(prediction, dtype="Int64")
    prediction[failed] = pd.NA
    score = np.where(failed, np.nan, score)
    label = pd.array(label, dtype="Int64")
    label[~labelled] = pd.NA
    latency = rng.lognormal(4.5, 0.5, rows)
    latency[rng.random(rows) < 0.03] = np.nan
    log = pd.DataFrame({
        "request_id": [f"r{seed}-{i:06d}" for i in range(rows)],
        "ts": pd.Timestamp(start) + pd.to_timedelta(offsets, unit="us"),
        "model_version": rng.choice(["1", "2"], rows, p=[0.7, 0.3]).astype(object),
        "prediction": prediction, "score": score, "label": label,
        "latency_ms": latency, "status": status,
    })
    return pd.concat([log, features], axis=1)


def make_reference(seed: int = 2, rows: int = 2000) -> pd.DataFrame:
    """A reference table: features, sensitive attributes, predictions and labels; no time, no latency."""
    rng = np.random.default_rng(seed)
    features = _features(rng, rows, 0.0)
    prediction, score, label = _outputs(rng, features)
    reference = pd.DataFrame({"model_version": ["1"] * rows, "prediction": prediction, "score": score,
                              "label": label})
    return pd.concat([reference, features], axis=1)


def in_window(log: pd.DataFrame, start: datetime, end: datetime) -> pd.DataFrame:
    return log[(log["ts"] >= start) & (log["ts"] < end)]


def day(i: int) -> datetime:
    return DAY0 + timedelta(days=i)


def put_nan(url: str, schema: str | None, table: str, column: str, request_ids: list[str]) -> None:
    """Store real IEEE NaN in these rows where the database can hold it (DuckDB, PostgreSQL, Spark's Parquet).

    ``pandas.to_sql`` writes NaN as NULL; both must count as nulls, so tests store some of each.
    """
    if url.startswith("hive://"):
        from tests.support.databases import spark_put_nan

        spark_put_nan(url, f"{schema}.{table}", column, request_ids)
        return
    engine = sa.create_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            return  # SQLite turns NaN into NULL
        t = sa.table(table, sa.column(column), sa.column("request_id"), schema=schema)
        with engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.request_id.in_(request_ids))
                         .values({column: sa.cast(sa.literal("NaN"), sa.Double())}))
    finally:
        engine.dispose()
