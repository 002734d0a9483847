"""The fleet's batched traffic read on a DuckDB file, a SQLite file, PostgreSQL and Spark SQL: every model's window
summary and requests per day equal what the per-model reads (logs.window_summary, logs.traffic_by_day)
give, in a couple of statements; a broken log table among good ones costs only its own model."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.errors import MappingError
from services.mapping import ModelMapping
from services.stores.warehouse import logs
from services.stores.warehouse.fleet_traffic import fleet_traffic
from tests.stores.test_warehouse_logs import CREDIT_RISK, DEMAND_FORECAST, END, START, mapping_for, synthetic_log
from tests.support.databases import KINDS_AND_SPARK, ScratchWarehouse, scratch_warehouse

# The demand-forecast log: the synthetic log under that mapping's own column names.
RENAMED = {"ts": "event_time", "model_version": "served_version", "prediction": "forecast", "label": "actual",
           "latency_ms": "latency", "status": "outcome", "income": "temperature", "region": "promo"}


@pytest.fixture(scope="module", params=KINDS_AND_SPARK)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[ScratchWarehouse, list[ModelMapping]]]:
    """Four models on three logs: two with the credit-risk columns, one with its own names, and one whose
    log has no row in the window."""
    wh = scratch_warehouse(request.param, tmp_path_factory.mktemp(request.param), request)
    credit = wh.write(synthetic_log(seed=7), "log_credit")
    other = wh.write(synthetic_log(seed=8, rows=2000), "log_other")
    demand = wh.write(synthetic_log(seed=9, rows=1500).rename(columns=RENAMED), "log_demand")
    late = synthetic_log(seed=10, rows=300)
    late["ts"] = late["ts"] + timedelta(days=20)
    quiet = wh.write(late, "log_quiet")
    mappings = [mapping_for(CREDIT_RISK, credit, "credit"), mapping_for(CREDIT_RISK, other, "other"),
                mapping_for(DEMAND_FORECAST, demand, "demand"), mapping_for(CREDIT_RISK, quiet, "quiet")]
    yield wh, mappings
    wh.close()


def _per_model_days(engine: Engine, mapping: ModelMapping) -> dict[datetime, int]:
    frame = logs.traffic_by_day(engine, mapping, START, END)
    return {day.to_pydatetime(): int(n) for day, n in frame.groupby("day")["requests"].sum().items()}


@contextmanager
def _counting(engine: Engine) -> Iterator[list[str]]:
    """The statements sent to ``engine`` inside the block."""
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _assert_equal_to_per_model(engine: Engine, mappings: list[ModelMapping], got) -> None:
    for mapping in mappings:
        want = logs.window_summary(engine, mapping, START, END)
        summary = got.summaries[mapping.name]
        assert (summary.requests, summary.errors, summary.last_prediction_at) == (
            want.requests, want.errors, want.last_prediction_at), mapping.name
        for column in ("error_rate", "p50_ms", "p95_ms", "p99_ms"):
            value, expected = getattr(summary, column), getattr(want, column)
            assert value == (None if expected is None else pytest.approx(expected, rel=1e-9)), (mapping.name, column)
        assert got.requests_by_day[mapping.name] == _per_model_days(engine, mapping), mapping.name


def test_the_batched_read_equals_the_per_model_reads_in_a_few_statements(fleet):
    wh, mappings = fleet
    engine = wh.reader()
    with _counting(engine) as statements:
        got = fleet_traffic(engine, mappings, START, END)
    assert got.failed == {}
    assert len(statements) <= 3, "one statement for the summaries, one for the days (and SQLite's ranked quantiles)"
    assert got.summaries["credit"].requests > 0 and got.summaries["demand"].requests > 0
    assert got.summaries["quiet"] == logs.WindowSummary(0, 0, None, None, None, None, None)
    assert len(got.requests_by_day["credit"]) == 4, "four (partial) days in the window"
    _assert_equal_to_per_model(engine, mappings, got)


def test_small_chunks_give_the_same_numbers(fleet):
    wh, mappings = fleet
    engine = wh.reader()
    _assert_equal_to_per_model(engine, mappings, fleet_traffic(engine, mappings, START, END, chunk=3))


def test_a_broken_table_among_good_ones_costs_only_its_own_model(fleet):
    wh, mappings = fleet
    engine = wh.reader()
    gone = dataclasses.replace(mappings[1], name="gone", table=wh.table("log_never_written"))
    renamed = mapping_for(CREDIT_RISK, mappings[0].table, "renamed",
                          columns={**CREDIT_RISK["columns"], "latency_ms": "latency_in_ms"})
    fleet_with_broken = [mappings[0], gone, mappings[2], renamed, mappings[3]]

    got = fleet_traffic(engine, fleet_with_broken, START, END)

    assert sorted(got.failed) == ["gone", "renamed"]
    for name, mapping in (("gone", gone), ("renamed", renamed)):
        with pytest.raises(MappingError) as per_model:
            logs.window_summary(engine, mapping, START, END)
        assert isinstance(got.failed[name], MappingError)
        # The same words as the per-model read; an engine that says where in its statement it failed (Spark:
        # "line 2 pos 45") points into a different statement, so that place is left out of the comparison.
        assert _without_position(got.failed[name].message) == _without_position(per_model.value.message)
    assert "log_never_written" in got.failed["gone"].message
    assert sorted(got.summaries) == ["credit", "demand", "quiet"]
    _assert_equal_to_per_model(engine, [mappings[0], mappings[2], mappings[3]], got)


def _without_position(message: str) -> str:
    return re.sub(r"line \d+ pos \d+", "line … pos …", message)


def test_an_empty_fleet_sends_nothing(fleet):
    wh, _ = fleet
    engine = wh.reader()
    with _counting(engine) as statements:
        got = fleet_traffic(engine, [], START, END)
    assert (got.summaries, got.requests_by_day, got.failed, statements) == ({}, {}, {}, [])

