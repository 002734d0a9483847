"""The demo's stories, found by the monitoring job and announced once each through a real webhook.

credit-risk drifts from mid-window, loan-approval has a fairness gap by gender, fraud-detection's
p95 latency regresses after version 4 goes live, demand-forecast is healthy. Issue 14 adds two:
loan-approval's business applications slow down from day 21 while its overall p95 stays under the SLO
(the latency rule naming the segment alerts, the overall one does not), and fraud-detection's
chargeback feed stops for the last 7 days while a card-testing wave makes its estimated (CBPE) AUC
fall. One job run over the whole 35-day demo per module (on a private copy of the session's seeded demo).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from services.demo.populations import LOAN_SLOWDOWN_DAY
from services.monitoring import tower_reads
from services.monitoring.distributions import feature_distributions
from services.monitoring.estimated_performance import estimated_over_time
from services.monitoring.evidence import TowerMonitoringEvidence
from services.monitoring.health_chips import health_chips
from services.monitoring.job import ModelRun, run_monitoring
from services.monitoring.reference import load_or_compute
from services.monitoring.report import window_report
from services.monitoring.report_tables import drift_table
from services.monitoring.store import alert_episodes, monitoring_results
from services.settings import Settings, load_settings
from services.stores.tower_db import make_tower_engine
from services.stores.warehouse.engine import make_engine
from tests.support.cbpe_oracle import cbpe
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
    # so does fraud-detection's card-testing wave (issue 14's CBPE story: its features move together)
    assert {model for model, rule, _ in raised if rule == "multivariate_drift"} == {"credit-risk", "fraud-detection"}


def test_credit_risk_drift_starts_in_the_middle_of_the_window(demo):
    heat = tower_reads.drift_heatmap(demo.tower, "credit-risk", demo.first, demo.last + timedelta(days=1))
    assert len(heat) == 35 * 6 and set(heat["column"]) == {"income", "age", "debt_ratio", "credit_history_months",
                                                            "region", "employment_type"}
    income = heat[heat["column"] == "income"].set_index("day")["drifted"]
    assert not income.iloc[:14].any() and income.iloc[-10:].all()
    assert not heat[heat["column"].isin(["age", "employment_type"])]["drifted"].any()


def test_fraud_detection_latency_alert_opens_when_version_4_goes_live(demo):
    # (the card-testing wave of the last days opens drift and estimated-performance episodes beside it)
    (episode,) = [row for _, row in tower_reads.open_alerts(demo.tower, "fraud-detection").iterrows()
                  if row["rule"] == "latency_p95"]
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
    # loan-approval (fraud-detection's labels stop for a week: issue 14's CBPE story below)
    perf = tower_reads.performance_over_time(demo.tower, "loan-approval", demo.first, demo.last + timedelta(days=1))
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


# --------------------------------------------------------------------------------------------
# Issue 14's stories
# --------------------------------------------------------------------------------------------
def raw_rows(demo: Demo, sql: str) -> pd.DataFrame:
    """The log's own rows, read with plain SQL (the oracle computes on them with scikit-learn)."""
    with demo.warehouse.connect() as conn:
        return pd.read_sql(sa.text(sql), conn)


def test_loan_approvals_business_segment_alerts_while_its_overall_latency_stays_under_the_slo(demo):
    raised = active(demo)
    assert ("loan-approval", "latency_p95", "segment:business") in raised
    assert ("loan-approval", "latency_p95", "") not in raised
    history = tower_reads.alert_history(demo.tower, "loan-approval")
    assert list(history.loc[history["rule"] == "latency_p95", "subject"]) == ["segment:business"], "one episode"
    (episode,) = [r for _, r in tower_reads.open_alerts(demo.tower, "loan-approval").iterrows()
                  if r["rule"] == "latency_p95"]
    onset = demo.first + timedelta(days=LOAN_SLOWDOWN_DAY)
    assert episode["opened_window"] == onset
    assert episode["message"].startswith("loan-approval in segment business: p95 latency")

    slo = demo.settings.models["loan-approval"].slo.latency_p95_ms
    log = raw_rows(demo, "SELECT ts, latency_ms, purpose FROM predictions_loan_approval WHERE latency_ms IS NOT NULL")
    log["day"] = log["ts"].dt.floor("D")
    window = (demo.first, demo.last + timedelta(days=1))
    for segment, rows in (("", log), ("business", log[log["purpose"] == "business"])):
        with demo.tower.connect() as conn:
            stored = pd.read_sql(sa.select(monitoring_results.c.window_start, monitoring_results.c.value,
                                           monitoring_results.c.alert).where(
                monitoring_results.c.model == "loan-approval", monitoring_results.c.segment == segment,
                monitoring_results.c.version == "*", monitoring_results.c.metric == "p95_ms",
                monitoring_results.c.window_start >= window[0]), conn).set_index("window_start")
        oracle = rows.groupby("day")["latency_ms"].apply(lambda v: np.percentile(v, 95))
        assert len(stored) == 35, segment
        assert stored["value"].to_numpy() == pytest.approx(oracle.loc[stored.index].to_numpy(), rel=1e-9), segment
        before, after = oracle[oracle.index < onset], oracle[oracle.index >= onset]
        assert (before < slo).all() and not stored.loc[stored.index < onset, "alert"].any(), segment
        if segment:
            assert (after > slo).all() and stored.loc[stored.index >= onset, "alert"].all()
        else:  # the overall figure moves, but stays well under the SLO
            assert (after < 0.9 * slo).all() and not stored["alert"].any()
            assert after.mean() > before.mean() + 30


def test_fraud_detections_estimate_falls_while_no_label_arrives(demo):
    window = (demo.first, demo.last + timedelta(days=1))
    wave = demo.last - timedelta(days=6)  # the last 7 days: the chargeback feed is down, the wave arrives
    counts = raw_rows(demo, "SELECT date_trunc('day', ts) AS day, count(label) AS labels, count(*) AS n "
                            "FROM predictions_fraud_detection GROUP BY 1 ORDER BY 1").set_index("day")
    assert (counts.loc[counts.index >= wave, "labels"] == 0).all() and (counts.loc[counts.index >= wave, "n"] > 0).all()
    perf = tower_reads.performance_over_time(demo.tower, "fraud-detection", *window)
    auc = perf[perf["metric"] == "roc_auc"].set_index("day")
    assert auc.loc[auc.index >= wave, "value"].isna().all() and auc.loc[auc.index >= wave, "alert"].isna().all(), \
        "the realised AUC has nothing to judge"
    assert not any(rule == "performance" for model, rule, _ in active(demo) if model == "fraud-detection")

    estimated = estimated_over_time(demo.tower, "fraud-detection", *window)
    est = estimated[estimated["metric"] == "roc_auc"].set_index("day")
    limit = float(est["threshold"].iloc[0])
    before = est[(est.index < wave) & (est.index >= wave - timedelta(days=7))]
    full = est[est.index >= wave + timedelta(days=2)]  # the wave at full strength
    assert (before["upper"] >= limit).all() and not before["alert"].any()
    assert (full["upper"] < limit).all() and full["alert"].all()
    assert before["value"].mean() - full["value"].mean() > 0.08

    # the estimate against the row-level CBPE oracle, on the last day's raw scores
    ref = raw_rows(demo, "SELECT score, label FROM reference_fraud_detection WHERE score IS NOT NULL")
    day = raw_rows(demo, "SELECT score, prediction FROM predictions_fraud_detection WHERE score IS NOT NULL AND "
                         f"ts >= TIMESTAMP '{demo.last:%Y-%m-%d}'")
    want = cbpe(ref["score"].to_numpy(), ref["label"].astype(int).to_numpy(), day["score"].to_numpy(),
                day["prediction"].astype(int).to_numpy())["roc_auc"]
    assert est.loc[demo.last, "value"] == pytest.approx(want, abs=0.005)

    (episode,) = [r for _, r in tower_reads.open_alerts(demo.tower, "fraud-detection").iterrows()
                  if r["rule"] == "estimated_performance_drop"]
    assert wave < episode["opened_window"] <= wave + timedelta(days=2)
    assert episode["subject"] == "estimated_roc_auc"


def test_the_healthy_model_has_no_alert_in_any_segment_or_before_labels(demo):
    assert not demo.settings.models["demand-forecast"].segments
    with demo.tower.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(alert_episodes)
                             .where(alert_episodes.c.model == "demand-forecast")).scalar()
    assert count == 0
    assert {c.status for c in health_chips(demo.tower, "demand-forecast")} == {"ok"}
