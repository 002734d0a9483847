"""The "Why" panel on the seeded demo (AppTest): credit-risk's drift alert -> segments and features
ranked, the numbers against pandas on the raw rows of a copy of the warehouse, the links carrying
feature and segment; and the links to the panel from the model and alerts pages."""

from __future__ import annotations

import sqlite3
from urllib.parse import parse_qs, urlparse

import duckdb
import pandas as pd
import pytest

from services.settings import load_settings
from tests.support.app_test import open_page, oracle_copy, texts
from tests.support.production import warehouse_file


def episode(settings, rule: str, subject: str) -> tuple[str, str]:
    """(first, last) day of the open episode, read straight from the tower-state file."""
    url = settings.tower_db_url
    with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
        opened, last = con.execute("SELECT opened_window, last_window FROM alert_episodes WHERE model = "
                                   "'credit-risk' AND rule = ? AND subject = ? AND status != 'resolved'",
                                   (rule, subject)).fetchone()
    return opened[:10], last[:10]


def frame(at, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_the_drift_alert_panel_ranks_features_and_splits_accuracy_as_pandas_does(demo_env):
    start, end = episode(demo_env, "drift", "debt_ratio")
    at = open_page("app_pages/why.py", model="credit-risk", start=start, end=end)
    assert not at.exception and not at.error, [e.value for e in at.error]
    said = texts(at)
    # the demo's training runs log feature_importance.<feature> (issue 14's demo stories)
    assert "Weighted by the feature importances" in said and "logged no feature importances" not in said

    features = frame(at, "Weighted drift")
    assert features.iloc[0]["Feature"] == "debt_ratio"  # the demo's strongest drift
    assert list(features["Weighted drift"]) == sorted(features["Weighted drift"], reverse=True)
    assert {"all", "north", "under-35"} <= set(features["Segment"])
    for _, row in features.iterrows():
        query = parse_qs(urlparse(row["Drift explorer"]).query)
        assert urlparse(row["Drift explorer"]).path.endswith("drift")
        assert query["feature"] == [row["Feature"]] and query["model"] == ["credit-risk"]
        assert query.get("segment", ["all"]) == [row["Segment"]] and query["start"] == [start]

    # The segment bars: accuracy from the reference to the alert window, split by the first column.
    bars = frame(at, "Contribution")
    column = at.selectbox(key="why_split:credit-risk").value
    with duckdb.connect(oracle_copy(str(warehouse_file(demo_env))), read_only=True) as con:
        def parts(sql: str, params: list) -> pd.DataFrame:
            return con.execute(sql, params).df().set_index("g")
        group = f"COALESCE(CAST({column} AS VARCHAR), '(missing)')" if column != "age" else \
            "CASE WHEN age >= 18 AND age < 35 THEN 'under-35' ELSE '(rest)' END"
        counted = f"SELECT {group} AS g, SUM(CASE WHEN prediction = label THEN 1 ELSE 0 END)::DOUBLE AS k, " \
                  "COUNT(label)::DOUBLE AS n FROM {table} WHERE prediction IS NOT NULL {where} GROUP BY 1"
        before = parts(counted.format(table="reference_credit_risk", where=""), [])
        after = parts(counted.format(table="predictions_credit_risk",
                                     where="AND ts >= ?::TIMESTAMP AND ts < ?::TIMESTAMP + INTERVAL 1 DAY"),
                      [start, end])
    n0, n1 = before["n"].sum(), after["n"].sum()
    for _, row in bars.iterrows():
        expected = after["k"].get(row["Segment"], 0) / n1 - before["k"].get(row["Segment"], 0) / n0
        assert abs(row["Contribution"] - expected) < 1e-9, row["Segment"]
    change = after["k"].sum() / n1 - before["k"].sum() / n0
    assert abs(bars["Contribution"].sum() - change) < 1e-9
    assert f"{change:+.4f}" in said


def test_a_performance_metric_that_is_no_mean_falls_back_and_hostile_links_do_not_break(demo_env):
    at = open_page("app_pages/why.py", model="credit-risk", start="<script>", end="2026-99-99", metric="roc_auc")
    assert not at.exception and not at.error
    assert "ROC AUC is not a mean over rows" in texts(at)
    assert at.selectbox(key="why_metric").value == "accuracy"
    at = open_page("app_pages/why.py", model="demand-forecast", metric="'; DROP TABLE x; --")
    assert not at.exception and at.selectbox(key="why_metric").value == "mae"


def test_the_model_and_alerts_pages_link_each_drift_alert_to_its_why_panel(demo_env):
    start, end = episode(demo_env, "drift", "income")
    for page in ("app_pages/model.py", "app_pages/alerts.py"):
        at = open_page(page, model="credit-risk")
        links = [e for e in at.get("page_link") if "Why?" in e.proto.label]
        assert links, page
        income = next(e for e in links if "income" in e.proto.label)
        assert income.proto.page.endswith("why.py") or "why" in income.proto.page
        query = parse_qs(income.proto.query_string)
        assert query == {"model": ["credit-risk"], "start": [start], "end": [end]}
        assert not any("latency" in e.proto.label for e in links)  # the panel explains drift and performance


def test_importances_logged_on_the_serving_versions_run_weight_the_ranking(demo_dir, monkeypatch):
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
    settings = load_settings()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    for v in client.search_model_versions("name='credit-risk'"):  # every version: whichever served most
        # every feature: the demo's runs already log an importance for each (replaced here)
        for feature, weight in {"income": 0.05, "age": 0.9, "debt_ratio": 0.05, "credit_history_months": 0.0,
                                "region": 0.0, "employment_type": 0.0}.items():
            client.log_metric(v.run_id, f"feature_importance.{feature}", weight)
    start, end = episode(settings, "drift", "debt_ratio")
    at = open_page("app_pages/why.py", model="credit-risk", start=start, end=end)
    assert not at.exception and not at.error
    assert "Weighted by the feature importances" in texts(at)
    features = frame(at, "Weighted drift")
    top = features.iloc[0]
    assert top["Feature"] == "age"  # a little drift of the feature that matters most beats much drift elsewhere
    assert top["Importance"] == pytest.approx(0.9)
    assert top["Weighted drift"] == pytest.approx(top["× threshold (mean)"] * 0.9)


def test_the_cbpe_story_is_split_by_segment_on_its_estimate_while_its_labels_are_missing(demo_env):
    from datetime import UTC, datetime, timedelta

    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    start = (yesterday - timedelta(days=2)).isoformat()  # the last days of fraud-detection: no label arrived
    at = open_page("app_pages/why.py", model="fraud-detection", start=start, end=yesterday.isoformat())
    assert not at.exception and not at.error
    said = texts(at)
    assert "needs labels" not in said
    assert "Estimated before labels (CBPE) for the window" in said
