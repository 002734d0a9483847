"""Spark SQL as the warehouse: DuckDB's numbers from the same rows, and a Thrift server's failures said plainly.

The session's Spark cluster (tests/support/spark_cluster.py: a standalone master, two workers and
the Thrift server) reads the rows as Parquet tables; DuckDB reads the same frames. The DuckDB
numbers are themselves checked against numpy, scipy, fairlearn and NannyML by the suites of
tests/monitoring, so equal numbers here carry those oracles over to Spark. The log and aggregate
queries of tests/stores/test_warehouse_*.py run on Spark too (their ``spark`` parameter).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from services.errors import WarehouseUnavailable
from services.mapping import ModelMapping, parse_model_mapping
from services.monitoring import job
from services.monitoring.config import MonitoringConfig
from services.monitoring.reference import compute_profile
from services.monitoring.report import window_report
from services.monitoring.store import monitoring_results
from services.segments import OVERALL
from services.stores.tower_db import create_schema, make_tower_engine
from services.stores.warehouse.engine import connection, make_engine, ping
from services.stores.warehouse.histograms import value_counts
from services.stores.warehouse.rows import log_rows
from tests.support import monitoring_data as data
from tests.support import report_equality
from tests.support.databases import ScratchWarehouse
from tests.support.tcp_proxy import FaultyProxy

pytestmark = pytest.mark.spark

SEGMENTS = [
    {"name": "north", "column": "c_region", "values": ["north"]},
    {"name": "mid-x", "column": "x_normal", "range": [9, 11]},
]
DAYS = 4
LOG = pd.concat([data.make_log(seed=1, rows=2000, days=2),
                 data.make_log(seed=3, rows=2000, days=2, shift=1.0, start=data.day(2))], ignore_index=True)
LOG["request_id"] = [f"q{i}" for i in range(len(LOG))]
REFERENCE = data.make_reference(rows=2500)
NAN_IDS = LOG.loc[LOG["x_lognormal"].isna(), "request_id"].tolist()[::2]  # real IEEE NaN beside NULL


def segmented(log_table: str, reference_table: str) -> ModelMapping:
    return parse_model_mapping("synthetic", {
        "table": log_table, "task": "binary_classification", "columns": data.COLUMNS,
        "features": {"numerical": data.NUMERICAL, "categorical": data.CATEGORICAL}, "sensitive": data.SENSITIVE,
        "reference": {"table": reference_table}, "slo": {"latency_p95_ms": 250, "error_rate": 0.05},
        "segments": SEGMENTS})


@pytest.fixture(scope="module")
def both(spark_url: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str, tuple[ScratchWarehouse, ModelMapping]]]:
    """The same log and reference on DuckDB and on Spark: {kind: (warehouse, segmented mapping)}."""
    found = {}
    for kind in ("duckdb", "spark"):
        wh = ScratchWarehouse(kind, tmp_path_factory.mktemp(kind), spark_url if kind == "spark" else None)
        mapping = segmented(wh.write(LOG, "predictions_synthetic"), wh.write(REFERENCE, "reference_synthetic"))
        data.put_nan(wh.url, wh.schema, "predictions_synthetic", "x_lognormal", NAN_IDS)
        found[kind] = (wh, mapping)
    yield found
    for wh, _ in found.values():
        wh.close()


def assert_same(ours: Any, oracle: Any, path: str = "") -> None:
    report_equality.assert_same(ours, oracle, path, ordered_keys=False)


def stored(tower: sa.Engine) -> list[tuple]:
    """Every stored result but its reference id (a digest that names the tables) and computation time."""
    r = monitoring_results.c
    with tower.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(sa.select(
            r.segment, r.version, r.window_start, r.window_end, r.slice_key, r.slice_value, r.column_name,
            r.metric, r.method, r.value, r.threshold, r.alert)))


# --------------------------------------------------------------------------------------------
# The same numbers as DuckDB
# --------------------------------------------------------------------------------------------
def test_the_window_report_on_spark_equals_duckdbs(both):
    """Drift (every statistic), fairness, latency, performance and data quality of one window."""
    reports = {}
    for kind, (wh, mapping) in both.items():
        plain = mapping.for_segment(None)
        profile = compute_profile(wh.reader(), plain)
        reports[kind] = window_report(wh.reader(), plain, profile, data.day(1), data.day(3)).to_json()
    assert reports["spark"]["rows"]["current"] > 0
    assert_same(reports["spark"], reports["duckdb"])


def test_the_monitoring_job_on_spark_stores_what_it_stores_from_duckdb(both, tmp_path: Path):
    """Every daily window, version, segment, metric and alert of the job, CBPE estimates included."""
    towers = {}
    for kind, (wh, mapping) in both.items():
        tower = make_tower_engine(f"sqlite:///{tmp_path / kind}.db")
        create_schema(tower)
        run = job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=data.day(0).date())
        assert run.segment_errors == () and run.windows == DAYS
        towers[kind] = stored(tower)
        tower.dispose()
    spark, duck = towers["spark"], towers["duckdb"]
    assert {row[0] for row in duck} == {OVERALL, "north", "mid-x"}
    assert any(row[7].startswith("estimated_") and row[9] is not None for row in duck), "CBPE ran"
    assert [row[:9] for row in spark] == [row[:9] for row in duck]
    for ours, theirs in zip(spark, duck, strict=True):
        assert_same(ours[9], theirs[9], str(theirs[:9]))
        assert ours[10:] == theirs[10:], theirs[:9]


# --------------------------------------------------------------------------------------------
# PyHive's pyformat paramstyle: a literal % in SQL text is not a placeholder
# --------------------------------------------------------------------------------------------
def test_a_percent_sign_in_the_sql_text_or_in_the_data_is_not_a_placeholder(both):
    wh, _ = both["spark"]
    engine = wh.reader()
    with connection(engine, None) as conn:
        assert conn.execute(sa.select(sa.literal_column("17") % sa.literal_column("5"))).scalar() == 2
        assert conn.execute(sa.text("SELECT '50%' AS x, '%(x)s' AS y, '%s' AS z")).one() == ("50%", "%(x)s", "%s")
        assert conn.execute(sa.select(sa.literal("100%", sa.String()))).scalar() == "100%"
    frame = data.make_log(rows=4, days=1, start=data.day(1))
    frame["c_region"] = ["50%", "%(x)s", "%s", "50%"]
    mapping = data.mapping(wh.write(frame, "pct"), name="pct",
                           segments=[{"name": "half", "column": "c_region", "values": ["50%"]}])
    rows = log_rows(mapping, data.day(1), data.day(2))
    assert value_counts(engine, mapping, rows, ["c_region"], numeric=False)[(None, None)]["c_region"] == {
        "50%": 2, "%(x)s": 1, "%s": 1}
    half = mapping.for_segment("half")
    assert value_counts(engine, half, log_rows(half, data.day(1), data.day(2)), ["c_region"], numeric=False)[
        (None, None)]["c_region"] == {"50%": 2}


# --------------------------------------------------------------------------------------------
# Read only, and failures said plainly
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("statement", [
    "DROP TABLE {table}",
    "INSERT INTO {table} (request_id) VALUES ('x')",
    "CREATE TABLE {schema}.stolen AS SELECT * FROM {table}",
    "  /* a comment first */ DROP TABLE {table}",
    "SET spark.sql.caseSensitive=true",
])
def test_the_spark_engine_sends_nothing_but_queries(both, statement):
    wh, mapping = both["spark"]
    text = statement.format(table=mapping.table, schema=wh.schema)
    with pytest.raises(sa.exc.DBAPIError, match="read-only"), wh.reader().connect() as conn:
        conn.execute(sa.text(text))
    with wh.reader().connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {mapping.table}")).scalar() == len(LOG)


def test_a_thrift_server_that_is_not_there_is_warehouse_unavailable_at_once(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = make_engine(f"hive://tower@127.0.0.1:{port}/default", connect_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(WarehouseUnavailable, match=rf"Cannot reach the warehouse at hive://tower@127\.0\.0\.1:{port}"):
        ping(engine)
    assert time.monotonic() - started < 5


def test_a_thrift_server_that_accepts_but_never_answers_times_out_as_unavailable():
    """A hung server (or a firewall that swallows packets) must not hang the page: the connect timeout holds."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])  # and never answer
            except TimeoutError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    try:
        engine = make_engine(f"hive://127.0.0.1:{server.getsockname()[1]}/default", connect_timeout_s=1)
        started = time.monotonic()
        with pytest.raises(WarehouseUnavailable, match="Cannot reach the warehouse"):
            ping(engine)
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        server.close()
        for conn in accepted:
            conn.close()


def test_a_thrift_connection_cut_mid_session_is_warehouse_unavailable(both):
    wh, mapping = both["spark"]
    target = sa.make_url(wh.url)
    proxy = FaultyProxy(target.host or "127.0.0.1", target.port or 10000)
    try:
        engine = make_engine(target.set(port=proxy.port).render_as_string(hide_password=False))
        with pytest.raises(WarehouseUnavailable, match="failed to answer: the Thrift connection failed"):
            with connection(engine, mapping) as conn:
                assert conn.execute(sa.text("SELECT 1")).scalar() == 1
                proxy.down()  # mid-session: the next statement's socket is closed under it
                conn.execute(sa.text("SELECT 2"))
        with pytest.raises(WarehouseUnavailable, match="Cannot reach the warehouse"):
            ping(engine)  # and a new connection is refused
        engine.dispose()
    finally:
        proxy.close()
