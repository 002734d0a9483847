"""What pages read of the stored monitoring, on a real SQLite tower state built with the tower's own schema."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from services.errors import ConfigError, TowerStateUnavailable
from services.monitoring.job import write_windows
from services.monitoring.store import NOTIFIED, OPEN, RESOLVED, alert_episodes
from services.monitoring.tower_reads import (
    alert_history,
    drift_heatmap,
    fairness_over_time,
    latest_health,
    open_alerts,
    performance_over_time,
)
from services.stores.tower_db import make_tower_engine

DAY0 = datetime(2026, 5, 1)
WEEK = (DAY0, DAY0 + timedelta(days=7))


def cell(metric: str, value: float | None, *, column: str = "", version: str = "*", slice_key: str = "",
         slice_value: str = "", method: str = "", threshold: float | None = None,
         alert: bool | None = None) -> dict:
    return {"version": version, "slice_key": slice_key, "slice_value": slice_value, "column_name": column,
            "metric": metric, "method": method, "value": value, "threshold": threshold, "alert": alert,
            "reference_id": None}


def store(tower: sa.Engine, model: str, day: int, *cells: dict, rows: float = 100.0) -> None:
    write_windows(tower, model, {(DAY0 + timedelta(days=day)).date(): [cell("rows", rows), *cells]},
                  DAY0 + timedelta(days=day, hours=26))


def episode(tower: sa.Engine, model: str, status: str, opened_day: int, message: str) -> None:
    opened = DAY0 + timedelta(days=opened_day)
    with tower.begin() as conn:
        conn.execute(sa.insert(alert_episodes).values(
            model=model, rule="drift", subject="x", metric="drift_score", opened_window=opened, last_window=opened,
            resolved_window=opened + timedelta(days=1) if status == RESOLVED else None, status=status, value=0.3,
            threshold=0.1, message=message, opened_at=opened + timedelta(days=1, hours=2)))


def test_the_latest_health_is_alert_with_an_open_episode_warning_on_a_breach_and_ok_otherwise(tower):
    drifted = cell("drift_score", 0.3, column="x", method="wasserstein", threshold=0.1, alert=True)
    calm = cell("drift_score", 0.02, column="x", method="wasserstein", threshold=0.1, alert=False)
    for model in ("alerting", "warned", "calm"):
        store(tower, model, 0, drifted)
    store(tower, "warned", 1, drifted)
    store(tower, "calm", 1, calm)  # the breach of day 0 is history: only the latest window counts
    episode(tower, "alerting", OPEN, 0, "Feature 'x' drifted three days in a row.")
    episode(tower, "calm", RESOLVED, 0, "an episode that is over")

    alerting = latest_health(tower, "alerting")
    assert (alerting.status, alerting.reasons) == ("alert", ("Feature 'x' drifted three days in a row.",))
    assert (alerting.window_start, alerting.window_end) == (DAY0, DAY0 + timedelta(days=1))
    warned = latest_health(tower, "warned")
    assert warned.status == "warning" and warned.window_start == DAY0 + timedelta(days=1)
    assert warned.reasons == ("Feature 'x' drifted in the latest window (score 0.3, threshold 0.1).",)
    calm_verdict = latest_health(tower, "calm")
    assert calm_verdict.status == "ok" and calm_verdict.reasons == ("No rule breached in the window of 2026-05-02.",)


def test_a_window_without_traffic_is_not_the_latest_one(tower):
    store(tower, "m", 0, cell("error_rate", 0.5, threshold=0.1, alert=True))
    store(tower, "m", 1, rows=0.0)
    verdict = latest_health(tower, "m")
    assert (verdict.status, verdict.window_start) == ("warning", DAY0)
    assert verdict.reasons == ("error rate is 0.5 (limit 0.1) in the latest window.",)


def test_an_empty_tower_state_reads_as_not_monitored_and_empty_frames_with_their_columns(tower):
    verdict = latest_health(tower, "m")
    assert verdict.status == "unknown" and verdict.window_start is None and "monitor run" in verdict.reasons[0]
    heat = drift_heatmap(tower, "m", *WEEK)
    assert heat.empty and list(heat.columns) == ["day", "column", "method", "score", "threshold", "drifted", "ratio",
                                                 "reference_id"]
    assert list(fairness_over_time(tower, "m", *WEEK).columns) == ["day", "sensitive", "group", "metric", "value",
                                                                   "threshold", "alert"]
    assert list(performance_over_time(tower, "m", *WEEK).columns) == [
        "day", "metric", "value", "threshold", "alert", "label_coverage", "labeled", "provisional", "rule_metric"]
    assert open_alerts(tower).empty and alert_history(tower, "m").empty
    assert "message" in open_alerts(tower).columns


def test_a_tower_state_without_monitoring_tables_reads_as_no_results(tmp_path):
    engine = make_tower_engine(f"sqlite:///{tmp_path / 'fresh.db'}")  # no schema: the job never ran here
    try:
        assert latest_health(engine, "m").status == "unknown"
        assert drift_heatmap(engine, "m", *WEEK).empty and open_alerts(engine).empty
    finally:
        engine.dispose()


def test_a_tower_state_that_cannot_be_read_is_tower_state_unavailable(tmp_path):
    broken = tmp_path / "tower.db"
    broken.write_bytes(b"this is not a SQLite database, it only has the name of one" * 100)
    engine = make_tower_engine(f"sqlite:///{broken}")
    try:
        with pytest.raises(TowerStateUnavailable, match="The tower state cannot be read") as caught:
            latest_health(engine, "m")
        assert caught.value.hint == "Check TOWER_DB_URL."
        with pytest.raises(TowerStateUnavailable):
            open_alerts(engine)
    finally:
        engine.dispose()


def test_the_drift_heatmap_holds_one_cell_per_feature_and_day_of_the_period_model_and_version(tower):
    for day in range(4):
        store(tower, "m", day, cell("drift_score", 0.1 * day, column="x", method="psi", threshold=0.2,
                                    alert=day >= 2),
              cell("drift_score", 0.9, column="x", version="2", method="psi", threshold=0.2, alert=True))
    store(tower, "other", 1, cell("drift_score", 0.5, column="x", method="psi", threshold=0.2, alert=True))
    heat = drift_heatmap(tower, "m", DAY0 + timedelta(days=1), DAY0 + timedelta(days=3))
    assert heat["day"].tolist() == [DAY0 + timedelta(days=1), DAY0 + timedelta(days=2)]
    assert heat["score"].tolist() == pytest.approx([0.1, 0.2]) and heat["drifted"].tolist() == [False, True]
    assert heat["ratio"].tolist() == pytest.approx([0.5, 1.0])  # score / threshold for a distance
    assert drift_heatmap(tower, "m", *WEEK, version="2")["score"].tolist() == [0.9] * 4
    with pytest.raises(ConfigError, match="start must be before its end"):
        drift_heatmap(tower, "m", DAY0, DAY0)


def test_performance_over_time_carries_the_day_s_coverage_and_marks_the_rule_metric(tower):
    store(tower, "m", 0, cell("roc_auc", 0.8, method="rule", threshold=0.75, alert=False), cell("f1", 0.6),
          cell("label_coverage", 0.4), cell("labeled", 40.0), cell("provisional", 1.0))
    perf = performance_over_time(tower, "m", *WEEK)
    assert sorted(perf["metric"]) == ["f1", "roc_auc"]
    auc = perf[perf["metric"] == "roc_auc"].iloc[0]
    assert (auc["value"], auc["label_coverage"], auc["labeled"], bool(auc["provisional"])) == (0.8, 0.4, 40.0, True)
    assert perf.set_index("metric")["rule_metric"].to_dict() == {"f1": False, "roc_auc": True}


def test_open_alerts_are_the_active_episodes_newest_first_and_the_history_filters_on_the_opening_window(tower):
    episode(tower, "m", RESOLVED, 0, "old")
    episode(tower, "m", NOTIFIED, 2, "notified")
    episode(tower, "m", OPEN, 4, "newest")
    episode(tower, "n", OPEN, 3, "another model")
    assert open_alerts(tower, "m")["message"].tolist() == ["newest", "notified"]
    assert open_alerts(tower)["message"].tolist() == ["newest", "another model", "notified"]
    assert alert_history(tower, "m")["message"].tolist() == ["newest", "notified", "old"]
    assert alert_history(tower, "m", DAY0, DAY0 + timedelta(days=3))["message"].tolist() == ["notified", "old"]
