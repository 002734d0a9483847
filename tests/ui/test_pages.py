"""Every page through AppTest on the seeded demo: no exception, the seeded models, right numbers.

Numbers are checked against numpy on the raw rows, read straight from DuckDB (not through our
warehouse module). Under the production backends the pages read PostgreSQL while the oracle reads
the DuckDB file it was loaded from (tests.support.production.warehouse_file).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import duckdb
import numpy as np
import pytest

from services.settings import Settings
from tests.support.app_test import DEMO_MODELS, open_page, oracle_copy
from tests.support.production import warehouse_file

# Run again on the production backends by the second pass of `make test`.
pytestmark = pytest.mark.both_backends

def raw_latencies(settings: Settings, model: str, start: datetime, end: datetime) -> dict[str, np.ndarray]:
    mapping = settings.models[model]
    ts, version, latency = (mapping.column(c) for c in ("timestamp", "version", "latency_ms"))
    path = oracle_copy(str(warehouse_file(settings)))
    with duckdb.connect(path, read_only=True) as con:
        rows = con.execute(
            f"SELECT CAST({version} AS VARCHAR), {latency} FROM {mapping.table} "
            f"WHERE {ts} >= ? AND {ts} < ? AND {latency} IS NOT NULL", [start, end]).fetchall()
    by_version: dict[str, list[float]] = {}
    for v, lat in rows:
        by_version.setdefault(v, []).append(lat)
    return {v: np.asarray(values) for v, values in by_version.items()}


@pytest.mark.parametrize("page", [None, "app_pages/fleet.py", "app_pages/model.py", "app_pages/latency.py"])
def test_every_page_runs_on_the_demo_without_an_exception(demo_env, page):
    at = open_page(page)
    assert not at.exception
    assert not at.error, [e.value for e in at.error]


def test_fleet_lists_every_seeded_model_with_its_stage_holders(demo_env):
    at = open_page("app_pages/fleet.py")
    table = at.dataframe[0].value.set_index("Model")
    assert set(table.index) == DEMO_MODELS
    assert table["Production"].ne("—").all()
    assert int(table.loc["credit-risk", "Requests (7 d)"]) > 1000


def test_fleet_flags_the_latency_regression_and_not_the_healthy_model(demo_env):
    table = open_page("app_pages/fleet.py").dataframe[0].value.set_index("Model")
    assert table.loc["fraud-detection", "SLO (7 d)"] == "SLO breach"
    assert table.loc["demand-forecast", "SLO (7 d)"] == "ok"


def test_fleet_p95_matches_numpy_on_the_same_rows(demo_env):
    at = open_page("app_pages/fleet.py")
    end = datetime.combine(datetime.now(UTC).date(), time())
    start = end - timedelta(days=7)
    table = at.dataframe[0].value.set_index("Model")
    for model in DEMO_MODELS:
        all_rows = np.concatenate(list(raw_latencies(demo_env, model, start, end).values()))
        assert table.loc[model, "p95 (ms)"] == pytest.approx(np.percentile(all_rows, 95), rel=1e-9)
        assert table.loc[model, "Requests (7 d)"] >= len(all_rows)


def test_latency_page_quantiles_per_version_match_numpy_percentiles(demo_env):
    at = open_page("app_pages/latency.py", model="fraud-detection")
    assert at.selectbox(key="model").value == "fraud-detection"
    # The default window: the 21 complete UTC days ending yesterday.
    end = datetime.combine(datetime.now(UTC).date(), time())
    start = end - timedelta(days=21)
    oracle = raw_latencies(demo_env, "fraud-detection", start, end)
    table = at.dataframe[0].value.set_index("Version")
    assert set(table.index) == set(oracle)
    for version, values in oracle.items():
        for q in (50, 95, 99):
            assert table.loc[version, f"p{q} (ms)"] == pytest.approx(np.percentile(values, q), rel=1e-9)
        assert table.loc[version, "Requests"] >= len(values)


def test_model_page_shows_versions_aliases_and_the_staging_comparison(demo_env):
    at = open_page("app_pages/model.py", model="credit-risk")
    assert not at.exception
    versions = at.dataframe[0].value
    assert 3 <= len(versions) <= 6
    assert versions["Aliases"].str.contains("@production").sum() == 1
    comparison = at.dataframe[-1].value
    assert "Metric" in comparison.columns and comparison["Metric"].str.contains("roc_auc").any()


def test_model_page_follows_the_model_in_the_url(demo_env):
    at = open_page("app_pages/model.py", model="demand-forecast")
    assert at.selectbox(key="model").value == "demand-forecast"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Production"].startswith("v")


def test_error_rates_shown_match_a_count_of_the_raw_rows(demo_env):
    end = datetime.combine(datetime.now(UTC).date(), time())
    start = end - timedelta(days=7)
    fleet_table = open_page("app_pages/fleet.py").dataframe[0].value.set_index("Model")
    path = oracle_copy(str(warehouse_file(demo_env)))
    for model in DEMO_MODELS:
        mapping = demo_env.models[model]
        ts, status = mapping.column("timestamp"), mapping.column("status")
        with duckdb.connect(path, read_only=True) as con:
            total, errors = con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE {status} IS DISTINCT FROM 'ok') FROM {mapping.table} "
                f"WHERE {ts} >= ? AND {ts} < ?", [start, end]).fetchone()
        assert fleet_table.loc[model, "Error rate"] == pytest.approx(errors / total, rel=1e-12)
        assert fleet_table.loc[model, "Requests (7 d)"] == total
