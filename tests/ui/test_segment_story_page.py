"""Issue 14's segment story on the latency page: a link with ?segment=business (what the fleet chip of
the episode opens) shows loan-approval's business applications, whose p95 per version (equal to numpy's
on the segment's raw rows) is over the SLO, with the open alert naming the segment; the page without
the segment shows the whole population, under the SLO."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import duckdb
import numpy as np
import pytest

from tests.support.app_test import open_page, oracle_copy, texts
from tests.support.production import warehouse_file

pytestmark = pytest.mark.both_backends


def p95_by_version(settings, start: datetime, end: datetime, business: bool) -> dict[str, float]:
    where = " AND purpose = 'business'" if business else ""
    with duckdb.connect(oracle_copy(str(warehouse_file(settings))), read_only=True) as con:
        rows = con.execute("SELECT CAST(model_version AS VARCHAR), latency_ms FROM predictions_loan_approval "
                           "WHERE ts >= ? AND ts < ? AND latency_ms IS NOT NULL" + where, [start, end]).fetchall()
    versions: dict[str, list[float]] = {}
    for version, latency in rows:
        versions.setdefault(version, []).append(latency)
    return {v: float(np.percentile(values, 95)) for v, values in versions.items()}


def test_a_segment_link_shows_the_business_applications_over_the_slo_and_the_alert_naming_it(demo_env):
    slo = demo_env.models["loan-approval"].slo.latency_p95_ms
    end = datetime.combine(datetime.now(UTC).date(), time())
    start = end - timedelta(days=7)
    at = open_page("app_pages/latency.py", model="loan-approval", segment="business")
    at.date_input(key="latency_window").set_value((start.date(), (end - timedelta(days=1)).date())).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="segment").value == "business"
    assert "loan-approval in segment business: p95 latency" in texts(at, ("warning",))
    table = at.dataframe[0].value.set_index("Version")
    oracle = p95_by_version(demo_env, start, end, business=True)
    assert set(table.index) == set(oracle)
    for version, want in oracle.items():
        assert table.loc[version, "p95 (ms)"] == pytest.approx(want, rel=1e-9)
    production = max(oracle, key=lambda v: table.loc[v, "Requests"])
    assert oracle[production] > slo

    everyone = open_page("app_pages/latency.py", model="loan-approval")
    everyone.date_input(key="latency_window").set_value((start.date(), (end - timedelta(days=1)).date())).run()
    assert everyone.selectbox(key="segment").value == "all"
    whole = everyone.dataframe[0].value.set_index("Version")
    overall = p95_by_version(demo_env, start, end, business=False)
    assert whole.loc[production, "p95 (ms)"] == pytest.approx(overall[production], rel=1e-9)
    assert overall[production] < slo
