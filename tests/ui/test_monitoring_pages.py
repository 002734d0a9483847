"""The monitoring pages on the seeded demo: the stories are visible, and the numbers shown match
scipy and fairlearn on the raw rows (read straight from a copy of the DuckDB file; under the
production backends the pages compute on the PostgreSQL copy of its rows)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import duckdb
import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from scipy.stats import ks_2samp, wasserstein_distance

from tests.support.app_test import DEMO_MODELS, open_page, oracle_copy, texts
from tests.support.production import warehouse_file

# Run again on the production backends by the second pass of `make test`.
pytestmark = pytest.mark.both_backends

PAGES = ["app_pages/drift.py", "app_pages/fairness.py", "app_pages/performance.py", "app_pages/alerts.py"]


def default_window(days: int) -> tuple[datetime, datetime]:
    today = datetime.now(UTC).date()
    return datetime.combine(today - timedelta(days=days), time()), datetime.combine(today, time())


def rows(settings, sql: str, params: list) -> list[tuple]:
    with duckdb.connect(oracle_copy(str(warehouse_file(settings))), read_only=True) as con:
        return con.execute(sql, params).fetchall()


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("model", sorted(DEMO_MODELS))
def test_every_monitoring_page_runs_for_every_model(demo_env, page, model):
    at = open_page(page, model=model)
    assert not at.exception
    assert not at.error, [e.value for e in at.error]


def test_fleet_health_flags_the_three_stories_and_not_the_healthy_model(demo_env):
    table = open_page("app_pages/fleet.py").dataframe[0].value.set_index("Model")
    assert table.loc["demand-forecast", "Health"] == "ok"
    for model in ("credit-risk", "loan-approval", "fraud-detection"):
        assert table.loc[model, "Health"] in ("alert", "critical"), table.loc[model, "Why"]  # critical: severity


def test_alerts_page_lists_open_alerts_for_the_stories_only(demo_env):
    active = open_page("app_pages/alerts.py").dataframe[0].value
    assert set(active["Model"]) == {"credit-risk", "loan-approval", "fraud-detection"}
    assert "income" in set(active.loc[active["Model"] == "credit-risk", "Subject"])


def test_drift_explorer_shows_income_drifting_with_scipy_numbers(demo_env):
    at = open_page("app_pages/drift.py", model="credit-risk")
    table = next(d.value for d in at.dataframe if "Feature" in d.value.columns)
    income = table.set_index("Feature").loc["income"]
    assert income["Verdict"] == "drifted"
    start, end = default_window(14)
    current = np.array([r[0] for r in rows(demo_env, "SELECT income FROM predictions_credit_risk "
                                           "WHERE ts >= ? AND ts < ? AND income IS NOT NULL", [start, end])])
    reference = np.array([r[0] for r in rows(demo_env, "SELECT income FROM reference_credit_risk "
                                             "WHERE income IS NOT NULL", [])])
    assert income["KS statistic"] == pytest.approx(ks_2samp(reference, current).statistic, abs=2e-3)
    expected = wasserstein_distance(reference, current) / np.std(reference)
    assert income["Wasserstein (normed)"] == pytest.approx(expected, rel=0.02)
    age = table.set_index("Feature").loc["age"]
    assert age["Verdict"] == "no drift"


def test_fairness_page_shows_the_gender_gap_as_fairlearn_computes_it(demo_env):
    at = open_page("app_pages/fairness.py", model="loan-approval")
    shown = {m.label: m.value for m in at.metric}
    start, end = default_window(14)
    data = rows(demo_env, "SELECT gender, prediction, label FROM predictions_loan_approval "
                          "WHERE ts >= ? AND ts < ? AND prediction IS NOT NULL", [start, end])
    gender = np.array([r[0] for r in data])
    pred = np.array([r[1] for r in data], dtype=float)
    label = np.array([np.nan if r[2] is None else r[2] for r in data], dtype=float)
    dpd = demographic_parity_difference(pred, pred, sensitive_features=gender)  # y_true unused for DPD
    assert float(shown["Demographic parity difference"]) == pytest.approx(dpd, abs=5e-4)  # shown to 3 decimals
    assert dpd > 0.1
    has_label = ~np.isnan(label)
    eod = equalized_odds_difference(label[has_label], pred[has_label], sensitive_features=gender[has_label])
    assert float(shown["Equalized odds difference"]) == pytest.approx(eod, abs=5e-4)
    assert "fails four-fifths" in texts(at, ("markdown",)) or float(shown["Disparate impact ratio"]) < 0.8


def test_performance_page_marks_recent_windows_provisional(demo_env):
    at = open_page("app_pages/performance.py", model="credit-risk")
    assert not at.exception
    assert "provisional" in texts(at, ("caption",))


def test_a_segment_picked_on_the_drift_page_shows_that_segments_numbers(demo_env):
    at = open_page("app_pages/drift.py", model="credit-risk", segment="north")
    assert not at.exception and not at.error
    assert at.selectbox(key="segment").value == "north"
    table = next(d.value for d in at.dataframe if "Feature" in d.value.columns)
    income = table.set_index("Feature").loc["income"]
    start, end = default_window(14)
    current = np.array([r[0] for r in rows(demo_env, "SELECT income FROM predictions_credit_risk WHERE ts >= ? "
                                           "AND ts < ? AND income IS NOT NULL AND region = 'north'", [start, end])])
    reference = np.array([r[0] for r in rows(demo_env, "SELECT income FROM reference_credit_risk "
                                             "WHERE income IS NOT NULL AND region = 'north'", [])])
    assert income["KS statistic"] == pytest.approx(ks_2samp(reference, current).statistic, abs=2e-3)
    everyone = open_page("app_pages/drift.py", model="credit-risk")
    whole = next(d.value for d in everyone.dataframe if "Feature" in d.value.columns).set_index("Feature")
    assert whole.loc["income", "KS statistic"] != pytest.approx(income["KS statistic"], abs=1e-6)


def test_the_fairness_page_of_a_segment_matches_fairlearn_on_its_rows(demo_env):
    at = open_page("app_pages/fairness.py", model="credit-risk", segment="under-35")
    assert not at.exception and not at.error
    shown = {m.label: m.value for m in at.metric}
    start, end = default_window(14)
    data = rows(demo_env, "SELECT gender, prediction FROM predictions_credit_risk WHERE ts >= ? AND ts < ? "
                          "AND prediction IS NOT NULL AND age >= 18 AND age < 35", [start, end])
    gender = np.array([r[0] for r in data])
    pred = np.array([r[1] for r in data], dtype=float)
    dpd = demographic_parity_difference(pred, pred, sensitive_features=gender)
    assert float(shown["Demographic parity difference"]) == pytest.approx(dpd, abs=5e-4)


@pytest.mark.parametrize("hostile", ["atlantis", "north' OR '1'='1", "<script>x</script>", "x" * 5000])
def test_a_segment_link_naming_no_segment_shows_the_whole_population(demo_env, hostile):
    at = open_page("app_pages/latency.py", model="credit-risk", segment=hostile)
    assert not at.exception and not at.error
    assert at.selectbox(key="segment").value == "all"
