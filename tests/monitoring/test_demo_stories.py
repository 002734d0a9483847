"""The demo's stories, found by the monitoring job and announced once each through a real webhook.

credit-risk drifts from mid-window, loan-approval has a fairness gap by gender, fraud-detection's
p95 latency regresses after version 4 goes live, demand-forecast is healthy. One job run over the
whole 35-day demo per module (on a private copy of the session's seeded demo).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from services.monitoring import tower_reads
from services.monitoring.distributions import feature_distributions
from services.monitoring.evidence import TowerMonitoringEvidence
from services.monitoring.job import ModelRun, run_monitoring
from services.monitoring.reference import load_or_compute
from services.monitoring.report import window_report
from services.monitoring.report_tables import drift_table
from services.monitoring.store import alert_episodes, monitoring_results
from services.settings import Settings, load_settings
from services.stores.tower_db import make_tower_engine
from services.stores.warehouse.engine import make_engine
from tests.support.webhook import Receiver


@dataclass
class Demo:
    settings: Settings
    runs: dict[str, ModelRun]
    tower: sa.Engine
    warehouse: sa.Engine
    receiver: Receiver
    first: datetime
    last: datetime


@pytest.fixture(scope="module")
def demo(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("monitored-demo") / "demo"
    shutil.copytree(demo_template, data_dir)
    # The template already holds monitoring results (as `make seed` leaves them); this module is
    # about the first, full run over the whole demo, so it starts from an empty tower state.
    for state in data_dir.glob("tower.db*"):
        state.unlink()
    receiver = Receiver()
    settings = load_settings({"TOWER_DATA_DIR": str(data_dir), "TOWER_ALERT_WEBHOOK_URL": receiver.url})
    runs = {run.model: run for run in run_monitoring(settings)}
    tower, warehouse = make_tower_engine(settings.tower_db_url), make_engine(settings.warehouse_url)
    first = datetime.combine(min(r.first_day for r in runs.values()), datetime.min.time())
    last = datetime.combine(max(r.last_day for r in runs.values()), datetime.min.time())
    yield Demo(settings, runs, tower, warehouse, receiver, first, last)
    receiver.close()
    tower.dispose()
    warehouse.dispose()


def active(demo: Demo) -> set[tuple[str, str, str]]:
    frame = tower_reads.open_alerts(demo.tower)
    return set(zip(frame["model"], frame["rule"], frame["subject"], strict=True))


def test_the_job_covers_35_days_of_every_model(demo):
    assert set(demo.runs) == {"credit-risk", "loan-approval", "fraud-detection", "demand-forecast"}
    assert all(run.error is None and run.windows == 35 for run in demo.runs.values())


def test_alerts_are_raised_for_the_three_stories_and_none_for_demand_forecast(demo):
    raised = active(demo)
    assert {("credit-risk", "drift", "income"), ("credit-risk", "drift", "debt_ratio"),
            ("loan-approval", "fairness_dpd", "gender"), ("fraud-detection", "latency_p95", "")} <= raised
    assert not any(model == "demand-forecast" for model, _, _ in raised)
    assert tower_reads.alert_history(demo.tower, "demand-forecast").empty, "not even a past episode"
    assert not any(model == "credit-risk" and rule not in ("drift", "multivariate_drift") for model, rule, _ in raised)
    # credit-risk's drifting features also move apart from the others: the PCA reconstruction error sees it
    assert ("credit-risk", "multivariate_drift", "") in raised
    assert not any(rule == "multivariate_drift" for model, rule, _ in raised if model != "credit-risk")


def test_credit_risk_drift_starts_in_the_middle_of_the_window(demo):
    heat = tower_reads.drift_heatmap(demo.tower, "credit-risk", demo.first, demo.last + timedelta(days=1))
    assert len(heat) == 35 * 6 and set(heat["column"]) == {"income", "age", "debt_ratio", "credit_history_months",
                                                            "region", "employment_type"}
    income = heat[heat["column"] == "income"].set_index("day")["drifted"]
    assert not income.iloc[:14].any() and income.iloc[-10:].all()
    assert not heat[heat["column"].isin(["age", "employment_type"])]["drifted"].any()


def test_fraud_detection_latency_alert_opens_when_version_4_goes_live(demo):
    (episode,) = [row for _, row in tower_reads.open_alerts(demo.tower, "fraud-detection").iterrows()]
    assert episode["opened_window"] == demo.last - timedelta(days=9)  # version 4 from day 25 of 35
    assert episode["threshold"] == 250.0 and episode["value"] > 300


def test_each_open_episode_was_sent_to_the_webhook_exactly_once(demo):
    sent = sorted((m["model"], m["rule"], m["subject"]) for m in demo.receiver.received)
    assert sent == sorted(active(demo))
    again = run_monitoring(demo.settings)
    assert all(run.alerts.opened == 0 and run.alerts.notified == 0 for run in again)
    assert len(demo.receiver.received) == len(sent)


def test_health_verdicts_follow_the_stories(demo):
    verdicts = {m: tower_reads.latest_health(demo.tower, m) for m in demo.settings.models}
    assert {m: v.status for m, v in verdicts.items()} == {
        "credit-risk": "alert", "loan-approval": "alert", "fraud-detection": "alert", "demand-forecast": "ok"}
    assert any("income" in reason for reason in verdicts["credit-risk"].reasons)
    assert verdicts["demand-forecast"].window_start == demo.last


def test_recent_windows_are_provisional_while_labels_arrive(demo):
    perf = tower_reads.performance_over_time(demo.tower, "fraud-detection", demo.first, demo.last + timedelta(days=1))
    auc = perf[perf["metric"] == "roc_auc"].set_index("day")
    assert auc["rule_metric"].all()
    assert auc["provisional"].iloc[-4:].all() and not auc["provisional"].iloc[:-5].any()
    assert auc["label_coverage"].iloc[-1] < 0.2 and auc["label_coverage"].iloc[0] == 1.0
    assert auc["alert"].iloc[-4:].isna().all(), "provisional windows are not judged"


def test_fairness_over_time_shows_the_gender_gap_every_day(demo):
    fair = tower_reads.fairness_over_time(demo.tower, "loan-approval", demo.first, demo.last + timedelta(days=1))
    dpd = fair[(fair["sensitive"] == "gender") & (fair["metric"] == "demographic_parity_difference")]
    assert len(dpd) == 35 and (dpd["value"] > 0.1).all() and dpd["alert"].all()
    ratio = fair[(fair["sensitive"] == "gender") & (fair["metric"] == "disparate_impact_ratio")]
    assert (ratio["value"] < 0.8).all()


def test_governance_evidence_reads_the_latest_drift_share_and_fairness(demo):
    evidence = TowerMonitoringEvidence(demo.tower)
    assert evidence.latest_drift_share("credit-risk", "3") == 0.5  # income, debt_ratio, region of 6
    assert evidence.latest_drift_share("demand-forecast", "3") == 0.0
    assert evidence.latest_drift_share("credit-risk", "999") is None
    assert evidence.latest_fairness_dpd("loan-approval") > 0.1
    assert evidence.latest_fairness_dpd("demand-forecast") is None


def test_feature_distributions_overlay_reference_and_window(demo):
    mapping = demo.settings.models["credit-risk"]
    profile = load_or_compute(demo.tower, demo.warehouse, mapping)
    week = (demo.last - timedelta(days=6), demo.last + timedelta(days=1))
    income = feature_distributions(demo.warehouse, mapping, profile, "income", *week)
    assert len(income) == 20 and income["reference_share"].round(9).eq(0.05).all()
    assert income["current_share"].sum() == pytest.approx(1.0)
    assert income["current_share"].iloc[0] > 0.1, "poorer applicants fill the lowest bin"
    region = feature_distributions(demo.warehouse, mapping, profile, "region", *week)
    assert list(region["bin"]) == ["east", "north", "south", "west"]
    assert region.set_index("bin").loc["south", "current_share"] > 0.4
    age = feature_distributions(demo.warehouse, mapping, profile, "age", *week)
    assert (age["lower"] == age["upper"]).all(), "integer ages: one row per value"


def test_results_are_readable_by_plain_sql(demo):
    with demo.tower.connect() as conn:
        frame = pd.read_sql(sa.select(monitoring_results).where(monitoring_results.c.model == "demand-forecast"), conn)
        episodes = conn.execute(sa.select(sa.func.count()).select_from(alert_episodes)).scalar()
    assert set(frame["version"]) >= {"*", "2", "3"}
    assert episodes >= 5


def test_the_drift_table_lists_every_feature_of_a_window(demo):
    mapping = demo.settings.models["credit-risk"]
    profile = load_or_compute(demo.tower, demo.warehouse, mapping)
    week = (demo.last - timedelta(days=6), demo.last + timedelta(days=1))
    report = window_report(demo.warehouse, mapping, profile, *week)
    table = drift_table(report)
    assert sorted(table["column"]) == sorted(mapping.numerical + mapping.categorical)
    assert table["ratio"].tolist() == sorted(table["ratio"], reverse=True)  # most drifting first
    assert table["ratio"].tolist() == pytest.approx((table["score"] / table["threshold"]).tolist())  # distances
    assert table.set_index("column").loc["income", "drifted"] and table["null_share"].eq(0).all()
