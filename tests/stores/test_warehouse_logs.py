"""The warehouse's log queries, engine and mapping check on a DuckDB file, a SQLite file and PostgreSQL.

Every number is checked against an oracle computed in Python from the very rows written:
counts and error rates by pandas groupby, quantiles by numpy.percentile (linear interpolation).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from services.errors import MappingError, WarehouseUnavailable
from services.mapping import ModelMapping, parse_model_mapping
from services.stores.warehouse import logs as warehouse
from services.stores.warehouse.engine import make_engine
from services.stores.warehouse.mapping_check import check_mappings
from tests.support.databases import KINDS_AND_SPARK, ScratchWarehouse, ensure_postgres, scratch_warehouse

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAY0 = datetime(2026, 3, 1)
# A window that starts and ends inside a day, so filtering and bucketing both matter.
START = DAY0 + timedelta(days=1, hours=6)
END = DAY0 + timedelta(days=4, hours=18)
QS = [50, 95, 99]
P_COLUMNS = ["p50_ms", "p95_ms", "p99_ms"]

CREDIT_RISK = {  # as in tower.yaml
    "table": "predictions_credit_risk",
    "task": "binary_classification",
    "columns": {"request_id": "request_id", "timestamp": "ts", "version": "model_version",
                "prediction": "prediction", "score": "score", "label": "label",
                "latency_ms": "latency_ms", "status": "status"},
    "features": {"numerical": ["income"], "categorical": ["region"]},
    "sensitive": ["gender"],
    "reference": {"table": "reference_credit_risk"},
    "slo": {"latency_p95_ms": 250, "error_rate": 0.01},
}
DEMAND_FORECAST = {  # as in tower.yaml: a log with its own column names
    "table": "predictions_demand_forecast",
    "task": "regression",
    "columns": {"request_id": "request_id", "timestamp": "event_time", "version": "served_version",
                "prediction": "forecast", "label": "actual", "latency_ms": "latency", "status": "outcome"},
    "features": {"numerical": ["temperature"], "categorical": ["promo"]},
    "sensitive": [],
    "reference": {"table": "reference_demand_forecast"},
    "slo": {"latency_p95_ms": 400, "error_rate": 0.02},
}
LOGICAL_TO_CREDIT = CREDIT_RISK["columns"]


def mapping_for(raw: dict, table: str, name: str = "credit-risk", **changes) -> ModelMapping:
    return parse_model_mapping(name, {**raw, "table": table, **changes})


def synthetic_log(seed: int = 7, rows: int = 3000, days: int = 5) -> pd.DataFrame:
    """A credit-risk style prediction log: 3 integer versions, lognormal latency, some NULLs."""
    rng = np.random.default_rng(seed)
    offsets_us = np.sort(rng.integers(0, days * 86_400 * 1_000_000, rows))
    latency = rng.lognormal(mean=4.5, sigma=0.6, size=rows)
    latency[rng.random(rows) < 0.04] = np.nan
    status = rng.choice(np.array(["ok", "error", "timeout"], dtype=object), size=rows, p=[0.9, 0.07, 0.03])
    status[rng.random(rows) < 0.02] = None
    label = rng.integers(0, 2, rows).astype(float)
    label[rng.random(rows) < 0.3] = np.nan
    score = rng.random(rows)
    return pd.DataFrame({
        "request_id": [f"req-{i:05d}" for i in range(rows)],
        "ts": pd.Timestamp(DAY0) + pd.to_timedelta(offsets_us, unit="us"),
        "model_version": rng.choice([1, 2, 3], size=rows, p=[0.5, 0.3, 0.2]).astype("int64"),
        "prediction": (score > 0.5).astype("int64"),
        "score": score,
        "label": label,
        "latency_ms": latency,
        "status": status,
        "income": rng.normal(50_000, 10_000, rows),
        "region": rng.choice(["north", "south"], rows),
        "gender": rng.choice(["f", "m"], rows),
    })


def in_window(log: pd.DataFrame, start: datetime = START, end: datetime = END, ts: str = "ts") -> pd.DataFrame:
    return log[(log[ts] >= start) & (log[ts] < end)]


def oracle(log: pd.DataFrame, by: list[str], *, ts: str = "ts", version: str = "model_version",
           latency: str = "latency_ms", status: str = "status", ok: str = "ok") -> pd.DataFrame:
    """Counts by pandas, quantiles by numpy.percentile over the non-NULL latencies of each group."""
    frame = pd.DataFrame({
        "day": log[ts].dt.floor("D"),
        "version": log[version].astype(str),
        "is_error": (log[status] != ok).astype("int64"),  # None != "ok" is True: NULL is an error
        "latency": log[latency],
    })

    def per_group(g: pd.DataFrame) -> pd.Series:
        values = g["latency"].dropna().to_numpy()
        p = np.percentile(values, QS) if len(values) else [np.nan] * 3
        return pd.Series({"requests": len(g), "errors": int(g["is_error"].sum()),
                          "p50_ms": p[0], "p95_ms": p[1], "p99_ms": p[2]})

    out = frame.groupby(by).apply(per_group, include_groups=False).reset_index()
    out["error_rate"] = out["errors"] / out["requests"]
    return out


def assert_quantiles_match(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    for column in P_COLUMNS:
        np.testing.assert_allclose(actual[column].to_numpy(float), expected[column].to_numpy(float),
                                   rtol=1e-9, err_msg=column)


# --------------------------------------------------------------------------------------------
# Fixtures: one warehouse per kind
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = ensure_postgres()
    if url is None:
        pytest.skip("PostgreSQL is not installed on this machine (no /etc/postgresql cluster, no pg_ctlcluster)")
    return url


def _open(kind: str, folder: Path, request: pytest.FixtureRequest) -> ScratchWarehouse:
    return scratch_warehouse(kind, folder, request)


@pytest.fixture(scope="module", params=KINDS_AND_SPARK)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ScratchWarehouse, ModelMapping, pd.DataFrame]]:
    """The synthetic log written once per kind; tests only read it."""
    wh = _open(request.param, tmp_path_factory.mktemp(request.param), request)
    log = synthetic_log()
    table = wh.write(log, "predictions_credit_risk")
    yield wh, mapping_for(CREDIT_RISK, table), log
    wh.close()


@pytest.fixture(params=KINDS_AND_SPARK)
def scratch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScratchWarehouse]:
    """An empty warehouse of each kind for one test."""
    wh = _open(request.param, tmp_path, request)
    yield wh
    wh.close()


# --------------------------------------------------------------------------------------------
# Numbers against the oracle
# --------------------------------------------------------------------------------------------
def test_traffic_by_day_counts_requests_and_errors_per_day_and_version(loaded):
    wh, mapping, log = loaded
    got = warehouse.traffic_by_day(wh.reader(), mapping, START, END)
    want = oracle(in_window(log), ["day", "version"])
    assert list(got.columns) == ["day", "version", "requests", "errors"]
    assert str(got["day"].dtype) == "datetime64[ns]"
    assert (got["day"] == got["day"].dt.normalize()).all()
    assert got["requests"].dtype == "int64" and got["errors"].dtype == "int64"
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True),
        want[["day", "version", "requests", "errors"]].astype({"requests": "int64", "errors": "int64"}),
        check_dtype=False,
    )


def test_latency_by_day_quantiles_equal_numpy_percentile(loaded):
    wh, mapping, log = loaded
    got = warehouse.latency_by_day(wh.reader(), mapping, START, END)
    want = oracle(in_window(log), ["day", "version"])
    assert list(got.columns) == ["day", "version", "requests", "errors", "error_rate", *P_COLUMNS]
    assert len(got) == 4 * 3, "4 (partial) days x 3 versions, one row each"
    assert got[["day", "version"]].equals(want[["day", "version"]])
    assert got["requests"].tolist() == want["requests"].tolist()
    assert got["errors"].tolist() == want["errors"].tolist()
    np.testing.assert_allclose(got["error_rate"], want["error_rate"], rtol=1e-12)
    assert_quantiles_match(got, want)


def test_latency_by_version_quantiles_and_first_last_seen(loaded):
    wh, mapping, log = loaded
    got = warehouse.latency_by_version(wh.reader(), mapping, START, END)
    window = in_window(log)
    want = oracle(window, ["version"])
    assert list(got.columns) == ["version", "requests", "errors", "error_rate", *P_COLUMNS,
                                 "first_seen", "last_seen"]
    assert got["version"].tolist() == ["1", "2", "3"]
    assert got["requests"].tolist() == want["requests"].tolist()
    assert got["errors"].tolist() == want["errors"].tolist()
    assert_quantiles_match(got, want)
    seen = window.groupby(window["model_version"].astype(str))["ts"].agg(["min", "max"])
    assert got["first_seen"].tolist() == seen["min"].tolist()
    assert got["last_seen"].tolist() == seen["max"].tolist()
    assert str(got["first_seen"].dtype) == "datetime64[ns]"


def test_window_summary_covers_all_versions_of_the_window(loaded):
    wh, mapping, log = loaded
    got = warehouse.window_summary(wh.reader(), mapping, START, END)
    window = in_window(log)
    p = np.percentile(window["latency_ms"].dropna(), QS)
    assert got.requests == len(window)
    assert got.errors == int((window["status"] != "ok").sum())
    assert got.error_rate == pytest.approx(got.errors / got.requests, rel=1e-12)
    assert [got.p50_ms, got.p95_ms, got.p99_ms] == pytest.approx(list(p), rel=1e-9)
    assert got.last_prediction_at == window["ts"].max().to_pydatetime()
    assert isinstance(got.last_prediction_at, datetime) and got.last_prediction_at.tzinfo is None


def test_versions_stored_as_integers_come_back_as_strings(loaded):
    wh, mapping, _ = loaded
    for frame in (warehouse.traffic_by_day(wh.reader(), mapping, START, END),
                  warehouse.latency_by_version(wh.reader(), mapping, START, END)):
        assert all(type(v) is str for v in frame["version"])
        assert set(frame["version"]) == {"1", "2", "3"}


def test_check_mapping_accepts_a_table_that_holds_every_mapped_column(loaded):
    wh, mapping, _ = loaded
    check_mappings(wh.reader(), [mapping])


def test_empty_window_gives_empty_frames_with_their_columns_and_a_zero_summary(loaded):
    wh, mapping, _ = loaded
    engine = wh.reader()
    later = DAY0 + timedelta(days=30)
    for start, end in [(later, later + timedelta(days=1)), (START, START)]:
        traffic = warehouse.traffic_by_day(engine, mapping, start, end)
        by_day = warehouse.latency_by_day(engine, mapping, start, end)
        by_version = warehouse.latency_by_version(engine, mapping, start, end)
        assert traffic.empty and list(traffic.columns) == ["day", "version", "requests", "errors"]
        assert by_day.empty and list(by_day.columns) == ["day", "version", "requests", "errors", "error_rate",
                                                         *P_COLUMNS]
        assert by_version.empty and list(by_version.columns) == ["version", "requests", "errors", "error_rate",
                                                                 *P_COLUMNS, "first_seen", "last_seen"]
        assert str(traffic["day"].dtype) == "datetime64[ns]"
        summary = warehouse.window_summary(engine, mapping, start, end)
        assert summary == warehouse.WindowSummary(requests=0, errors=0, error_rate=None, p50_ms=None,
                                                  p95_ms=None, p99_ms=None, last_prediction_at=None)


def test_the_warehouse_engine_cannot_write(loaded):
    wh, mapping, _ = loaded
    schema, _, name = mapping.table.rpartition(".")
    log = sa.table(name, sa.column("request_id"), schema=schema or None)
    with pytest.raises(sa.exc.DBAPIError), wh.reader().begin() as conn:
        conn.execute(sa.insert(log).values(request_id="written-by-the-dashboard"))
    with wh.reader().connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(log)
                             .where(log.c.request_id == "written-by-the-dashboard")).scalar()
    assert count == 0


# --------------------------------------------------------------------------------------------
# Edge cases on small hand-made logs
# --------------------------------------------------------------------------------------------
def small_log(rows: list[tuple]) -> pd.DataFrame:
    """(ts, version, latency, status) tuples as a credit-risk log."""
    frame = pd.DataFrame(rows, columns=["ts", "model_version", "latency_ms", "status"])
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame["latency_ms"] = frame["latency_ms"].astype(float)
    frame["request_id"] = [f"r{i}" for i in range(len(frame))]
    for column in ("prediction", "score", "label", "income"):
        frame[column] = 0.5
    frame["region"] = frame["gender"] = "x"
    return frame


def test_window_is_half_open_a_row_at_end_is_excluded_and_a_row_at_start_included(scratch):
    start, end = datetime(2026, 3, 2), datetime(2026, 3, 3)
    us = timedelta(microseconds=1)
    log = small_log([
        (start - us, "a", 1.0, "ok"),       # before the window
        (start, "a", 2.0, "ok"),            # first instant: in
        (end - us, "a", 3.0, "ok"),         # last instant: in
        (end, "a", 4.0, "ok"),              # end itself: out
    ])
    mapping = mapping_for(CREDIT_RISK, scratch.write(log, "predictions_credit_risk"))
    engine = scratch.reader()
    summary = warehouse.window_summary(engine, mapping, start, end)
    assert summary.requests == 2
    assert (summary.p50_ms, summary.last_prediction_at) == (2.5, end - us)
    traffic = warehouse.traffic_by_day(engine, mapping, start, end)
    assert traffic.to_dict("records") == [{"day": pd.Timestamp(start), "version": "a", "requests": 2, "errors": 0}]
    by_version = warehouse.latency_by_version(engine, mapping, start, end)
    assert (by_version.loc[0, "first_seen"], by_version.loc[0, "last_seen"]) == (start, end - us)


def test_null_status_is_an_error_and_null_latency_is_left_out_of_quantiles(scratch):
    day = datetime(2026, 3, 2)
    log = small_log([
        (day + timedelta(hours=1), "1", 10, "ok"),
        (day + timedelta(hours=2), "1", 20, "ok"),
        (day + timedelta(hours=3), "1", 30, "error"),
        (day + timedelta(hours=4), "1", 40, None),
        (day + timedelta(hours=5), "1", None, "ok"),
        (day + timedelta(hours=6), "2", 7, "ok"),      # one latency: every quantile is it
        (day + timedelta(hours=7), "3", None, None),   # no latency at all: no quantiles
    ])
    mapping = mapping_for(CREDIT_RISK, scratch.write(log, "predictions_credit_risk"))
    got = warehouse.latency_by_day(scratch.reader(), mapping, day, day + timedelta(days=1))
    assert got["version"].tolist() == ["1", "2", "3"]
    assert got["requests"].tolist() == [5, 1, 1]
    assert got["errors"].tolist() == [2, 0, 1]
    assert got["error_rate"].tolist() == pytest.approx([0.4, 0.0, 1.0])
    # 10, 20, 30, 40: p50 = 25, p95 at rank 2.85 = 38.5, p99 at rank 2.97 = 39.7
    assert got.loc[0, P_COLUMNS].tolist() == pytest.approx([25.0, 38.5, 39.7], rel=1e-12)
    assert got.loc[1, P_COLUMNS].tolist() == [7.0, 7.0, 7.0]
    assert got.loc[2, P_COLUMNS].isna().all()


def test_a_log_with_its_own_column_names_is_read_through_the_mapping(scratch):
    rng = np.random.default_rng(11)
    rows = 600
    log = pd.DataFrame({
        "request_id": [f"f{i}" for i in range(rows)],
        "event_time": pd.Timestamp(DAY0) + pd.to_timedelta(np.sort(rng.integers(0, 3 * 86_400_000_000, rows)),
                                                           unit="us"),
        "served_version": rng.choice(["7", "8"], rows),
        "forecast": rng.normal(100, 10, rows),
        "actual": rng.normal(100, 10, rows),
        "latency": rng.lognormal(5, 0.4, rows),
        "outcome": rng.choice(["ok", "failed"], rows, p=[0.95, 0.05]),
        "temperature": rng.normal(15, 5, rows),
        "promo": rng.choice(["yes", "no"], rows),
    })
    mapping = mapping_for(DEMAND_FORECAST, scratch.write(log, "predictions_demand_forecast"), name="demand-forecast")
    engine = scratch.reader()
    check_mappings(engine, [mapping])
    start, end = DAY0, DAY0 + timedelta(days=3)
    got = warehouse.latency_by_day(engine, mapping, start, end)
    want = oracle(log, ["day", "version"], ts="event_time", version="served_version", latency="latency",
                  status="outcome")
    assert len(got) == 6
    assert got["requests"].tolist() == want["requests"].tolist()
    assert got["errors"].tolist() == want["errors"].tolist()
    assert_quantiles_match(got, want)
    assert warehouse.log_bounds(engine, mapping)[1] == log["event_time"].max().to_pydatetime()


HOSTILE_VERSIONS = ["v1'; DROP TABLE predictions_credit_risk; --", 'quo"ted', "ünïcødé-🚀", "back\\slash %s %(x)s"]
HOSTILE_OK = "o'k\"; --ü %s"


def test_hostile_strings_in_the_data_come_back_exactly(scratch):
    day = datetime(2026, 3, 2)
    rows = []
    for i, version in enumerate(HOSTILE_VERSIONS):
        rows += [(day + timedelta(minutes=10 * i + k), version, 10.0 * (k + 1), HOSTILE_OK if k else "ok")
                 for k in range(3)]
    log = small_log(rows)
    mapping = mapping_for(CREDIT_RISK, scratch.write(log, "predictions_credit_risk"), ok_status=HOSTILE_OK)
    engine = scratch.reader()
    got = warehouse.latency_by_version(engine, mapping, day, day + timedelta(days=1))
    assert sorted(got["version"]) == sorted(HOSTILE_VERSIONS)
    assert got["requests"].tolist() == [3] * 4
    assert got["errors"].tolist() == [1] * 4, "only the row whose status is not ok_status is an error"
    assert got["p50_ms"].tolist() == [20.0] * 4
    assert set(warehouse.traffic_by_day(engine, mapping, day, day + timedelta(days=1))["version"]) == set(
        HOSTILE_VERSIONS)


# --------------------------------------------------------------------------------------------
# Mapping errors
# --------------------------------------------------------------------------------------------
def test_check_mappings_names_a_missing_table(scratch):
    scratch.write(small_log([(DAY0, "1", 1.0, "ok")]), "predictions_credit_risk")
    mapping = mapping_for(CREDIT_RISK, scratch.table("predictions_nowhere"))
    with pytest.raises(MappingError, match=r"credit-risk: no table (\w+\.)?predictions_nowhere\.") as caught:
        check_mappings(scratch.reader(), [mapping])
    assert "models.credit-risk.table" in caught.value.hint


def test_check_mappings_lists_every_missing_column_with_its_logical_name(scratch):
    log = small_log([(DAY0, "1", 1.0, "ok")]).drop(columns=["latency_ms", "status", "region"])
    table = scratch.write(log, "predictions_credit_risk")
    mapping = mapping_for(CREDIT_RISK, table)
    with pytest.raises(MappingError) as caught:
        check_mappings(scratch.reader(), [mapping])
    message, hint = caught.value.message, caught.value.hint
    assert message.endswith(f"credit-risk: table {table} has no columns latency_ms, status, region.")
    assert "model_version" not in message
    assert "latency_ms (logical latency_ms), status (logical status), region (categorical feature)" in hint
    assert f"{table} has " in hint and "model_version" in hint


def test_check_mappings_names_the_problems_of_every_model_at_once(scratch):
    log = small_log([(DAY0, "1", 1.0, "ok")]).drop(columns=["status"])
    table = scratch.write(log, "predictions_credit_risk")
    models = [mapping_for(CREDIT_RISK, table), mapping_for(CREDIT_RISK, table, name="fine", columns={
        k: v for k, v in LOGICAL_TO_CREDIT.items() if k != "status"} | {"status": "latency_ms"}),
        mapping_for(CREDIT_RISK, scratch.table("predictions_nowhere"), name="fraud-detection")]
    with pytest.raises(MappingError) as caught:
        check_mappings(scratch.reader(), models)
    assert caught.value.message == (f"The warehouse does not match tower.yaml: credit-risk: table {table} has no "
                                    f"column status; fraud-detection: no table {scratch.table('predictions_nowhere')}.")


def test_a_query_on_a_missing_table_raises_mapping_error(scratch):
    scratch.write(small_log([(DAY0, "1", 1.0, "ok")]), "predictions_credit_risk")
    mapping = mapping_for(CREDIT_RISK, scratch.table("predictions_nowhere"))
    engine = scratch.reader()
    with pytest.raises(MappingError, match="predictions_nowhere for model 'credit-risk' failed"):
        warehouse.latency_by_day(engine, mapping, START, END)
    with pytest.raises(MappingError, match="predictions_nowhere"):
        warehouse.log_bounds(engine, mapping)


def test_a_query_on_a_missing_column_raises_mapping_error(scratch):
    table = scratch.write(small_log([(DAY0, "1", 1.0, "ok")]), "predictions_credit_risk")
    mapping = mapping_for(CREDIT_RISK, table, columns={**LOGICAL_TO_CREDIT, "latency_ms": "latency_typo"})
    with pytest.raises(MappingError, match="latency_typo"):
        warehouse.window_summary(scratch.reader(), mapping, START, END)


# --------------------------------------------------------------------------------------------
# Engines and outages
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme, filename", [("duckdb", "missing.duckdb"), ("sqlite", "missing.db")])
def test_make_engine_refuses_a_missing_file_and_does_not_create_it(tmp_path, scheme, filename):
    path = tmp_path / filename
    with pytest.raises(WarehouseUnavailable, match="does not exist") as caught:
        make_engine(f"{scheme}:///{path}")
    assert str(path) in caught.value.message
    assert caught.value.hint == "Set WAREHOUSE_URL or run `make seed`."
    assert not path.exists()


def test_unreachable_postgres_raises_warehouse_unavailable_quickly_without_the_password():
    engine = make_engine("postgresql+psycopg://tower:s3cret-pw@127.0.0.1:1/test", connect_timeout_s=2)
    mapping = mapping_for(CREDIT_RISK, "predictions_credit_risk")
    for call in (lambda: check_mappings(engine, [mapping]),
                 lambda: warehouse.window_summary(engine, mapping, START, END),
                 lambda: warehouse.latency_by_day(engine, mapping, START, END)):
        began = time.monotonic()
        with pytest.raises(WarehouseUnavailable, match=r"Cannot reach the warehouse at .*127\.0\.0\.1:1") as caught:
            call()
        assert time.monotonic() - began < 5
        assert "s3cret-pw" not in str(caught.value)
        assert "***" in caught.value.message


def test_integer_status_codes_are_compared_with_ok_status_as_text(scratch):
    day = datetime(2026, 3, 2)
    log = small_log([(day, "1", 5.0, "x"), (day + timedelta(hours=1), "1", 6.0, "x"),
                     (day + timedelta(hours=2), "1", 7.0, "x")])
    log["status"] = pd.Series([200, 500, None], dtype="Int64")
    mapping = mapping_for(CREDIT_RISK, scratch.write(log, "predictions_credit_risk"), ok_status=200)
    summary = warehouse.window_summary(scratch.reader(), mapping, day, day + timedelta(days=1))
    assert (summary.requests, summary.errors) == (3, 2)


def test_a_duckdb_file_is_read_by_two_processes_at_once(tmp_path):
    wh = ScratchWarehouse("duckdb", tmp_path)
    try:
        table = wh.write(small_log([(DAY0, "1", 1.0, "ok")]), "predictions_credit_risk")
        mapping = mapping_for(CREDIT_RISK, table)
        with wh.reader().connect() as held:  # this process keeps the file open ...
            held.execute(sa.select(1))
            other = subprocess.run(  # ... while another dashboard process reads it too
                [sys.executable, "-c",
                 "import sys; from services.stores.warehouse import logs as warehouse;"
                 "from services.stores.warehouse.engine import make_engine;"
                 "from services.mapping import parse_model_mapping as p;"
                 "print(warehouse.log_bounds(make_engine(sys.argv[1]), p('m', {"
                 "'table': sys.argv[2], 'columns': {'timestamp': 'ts', 'version': 'model_version',"
                 "'prediction': 'prediction', 'latency_ms': 'latency_ms', 'status': 'status'}}))[1])",
                 wh.url, table],
                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
            )
        assert other.returncode == 0, other.stderr
        assert other.stdout.strip() == str(DAY0)
        assert warehouse.log_bounds(wh.reader(), mapping) == (DAY0, DAY0)
    finally:
        wh.close()
