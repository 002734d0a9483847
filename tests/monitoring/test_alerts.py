"""Alert episodes: derived from stored windows, kept in tower state, notified once through a webhook.

The webhook is a real HTTP server on loopback (``http.server`` in a thread), not a mock: the tests
count the POST requests it actually received.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from services.errors import ConfigError
from services.mapping import parse_model_mapping
from services.monitoring import alerts
from services.monitoring.alerts import Series, derive_episodes, evaluate_alerts, notify_pending
from services.monitoring.config import AlertRules, DriftRule, parse_monitoring_config
from services.monitoring.job import write_windows
from services.monitoring.store import NOTIFIED, OPEN, RESOLVED, alert_episodes
from services.monitoring.tower_reads import alert_history, latest_health, open_alerts
from tests.support.webhook import SECRET, Receiver

DAY0 = datetime(2026, 5, 1)
MAPPING = parse_model_mapping("m", {
    "table": "log", "columns": {"timestamp": "ts", "version": "v", "prediction": "p", "latency_ms": "l",
                                "status": "s"},
    "features": {"numerical": ["x"]}, "slo": {"latency_p95_ms": 100, "error_rate": 0.1},
})
RULES = AlertRules(drift=DriftRule(consecutive=3))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def drift_row(day: int, drifted: bool | None, column: str = "x") -> dict:
    return {"version": "*", "slice_key": "", "slice_value": "", "column_name": column, "metric": "drift_score",
            "method": "wasserstein", "value": 0.3 if drifted else 0.02, "threshold": 0.1, "alert": drifted,
            "reference_id": "r1"}


def store_day(tower: sa.Engine, day: int, drifted: bool | None, *extra: dict) -> None:
    rows = [{"version": "*", "slice_key": "", "slice_value": "", "column_name": "", "metric": "rows", "method": "",
             "value": 100.0, "threshold": None, "alert": None, "reference_id": None}, drift_row(day, drifted), *extra]
    write_windows(tower, "m", {(DAY0 + timedelta(days=day)).date(): rows}, DAY0 + timedelta(days=day, hours=26))


def episodes(tower: sa.Engine) -> list:
    with tower.connect() as conn:
        return list(conn.execute(sa.select(alert_episodes).order_by(alert_episodes.c.opened_window)))


# --------------------------------------------------------------------------------------------
# Episodes from a series (pure)
# --------------------------------------------------------------------------------------------
def series(flags: list[bool | None], consecutive: int = 3) -> Series:
    return Series("drift", "x", "drift_score", consecutive,
                  tuple((DAY0 + timedelta(days=i), f, 0.5 if f else 0.0, 0.1, "wasserstein")
                        for i, f in enumerate(flags)))


def test_an_episode_opens_on_the_third_drifted_window_in_a_row_and_resolves_when_it_clears():
    (episode,) = derive_episodes(series([False, True, True, True, True, False, False]))
    assert (episode.opened_window, episode.last_window, episode.resolved_window) == (
        DAY0 + timedelta(days=3), DAY0 + timedelta(days=4), DAY0 + timedelta(days=5))
    assert not episode.active


def test_two_drifted_windows_are_not_an_episode_and_a_new_run_of_three_reopens_one():
    assert derive_episodes(series([True, True, False, True, True])) == []
    first, second = derive_episodes(series([True, True, True, False, True, True, True]))
    assert not first.active and second.active
    assert second.opened_window == DAY0 + timedelta(days=6)


def test_windows_not_judged_neither_extend_nor_break_a_run():
    (episode,) = derive_episodes(series([True, None, True, None, True]))
    assert episode.opened_window == DAY0 + timedelta(days=4) and episode.active
    (still_open,) = derive_episodes(series([True, True, True, None, None]))
    assert still_open.active and still_open.last_window == DAY0 + timedelta(days=2)


def test_a_single_window_rule_opens_at_once():
    (episode,) = derive_episodes(series([False, True], consecutive=1))
    assert episode.opened_window == DAY0 + timedelta(days=1)


# --------------------------------------------------------------------------------------------
# Daily runs against a real webhook
# --------------------------------------------------------------------------------------------
def test_notified_once_per_episode_resolved_then_reopened_and_notified_again(tower, receiver):
    pattern = [False, True, True, True, True, False, False, True, True, True, True]
    sent_after_day = []
    for day, drifted in enumerate(pattern):
        store_day(tower, day, drifted)
        evaluate_alerts(tower, MAPPING, RULES, webhook_url=receiver.url, now=DAY0 + timedelta(days=day, hours=26))
        evaluate_alerts(tower, MAPPING, RULES, webhook_url=receiver.url)  # a re-run the same day sends nothing
        sent_after_day.append(len(receiver.received))
    assert sent_after_day == [0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2]
    first, second = receiver.received
    assert (first["model"], first["rule"], first["subject"], first["status"]) == ("m", "drift", "x", "open")
    assert first["opened_window"] == "2026-05-04T00:00:00" and second["opened_window"] == "2026-05-10T00:00:00"
    assert "feature 'x' drifts" in first["text"] and receiver.paths == [f"/hooks/{SECRET}"] * 2
    rows = episodes(tower)
    assert [(r.status, r.resolved_window) for r in rows] == [(RESOLVED, DAY0 + timedelta(days=5)), (NOTIFIED, None)]
    assert rows[0].notified_at is not None and rows[0].notify_attempts == 1 and rows[1].notify_attempts == 1
    assert len(open_alerts(tower, "m")) == 1 and len(alert_history(tower, "m")) == 2
    assert latest_health(tower, "m").status == "alert"


def test_a_backfill_records_past_episodes_as_history_and_notifies_only_the_open_one(tower, receiver):
    for day, drifted in enumerate([True, True, True, False, True, True, True]):
        store_day(tower, day, drifted)
    summary = evaluate_alerts(tower, MAPPING, RULES, webhook_url=receiver.url)
    assert (summary.active, summary.opened, summary.notified) == (1, 1, 1)
    assert [r["opened_window"] for r in receiver.received] == ["2026-05-07T00:00:00"]
    assert [r.status for r in episodes(tower)] == [RESOLVED, NOTIFIED]


def test_a_failing_webhook_keeps_the_episode_open_and_the_next_run_sends_it_once(tower, receiver, caplog):
    receiver.statuses = [500]
    for day in range(3):
        store_day(tower, day, True)
    with caplog.at_level(logging.WARNING):
        first = evaluate_alerts(tower, MAPPING, RULES, webhook_url=receiver.url)
    assert (first.notified, first.notify_failed, len(receiver.received)) == (0, 1, 0)
    (row,) = episodes(tower)
    assert row.status == OPEN and row.notify_error == "127.0.0.1 answered HTTP 500" and row.notify_attempts == 1
    assert SECRET not in caplog.text and SECRET not in row.notify_error
    second = evaluate_alerts(tower, MAPPING, RULES, webhook_url=receiver.url)
    third = evaluate_alerts(tower, MAPPING, RULES, webhook_url=receiver.url)
    assert (second.notified, third.notified, len(receiver.received)) == (1, 0, 1)
    (row,) = episodes(tower)
    assert (row.status, row.notify_attempts, row.notify_error) == (NOTIFIED, 2, None)


def test_an_unreachable_webhook_is_logged_without_its_url(tower, caplog):
    for day in range(3):
        store_day(tower, day, True)
    with caplog.at_level(logging.WARNING):
        summary = evaluate_alerts(tower, MAPPING, RULES, webhook_url=f"http://127.0.0.1:9/hooks/{SECRET}",
                                  timeout_s=2)
    assert summary.notify_failed == 1
    assert SECRET not in caplog.text and "127.0.0.1" in caplog.text
    assert episodes(tower)[0].status == OPEN


def test_concurrent_runs_send_an_episode_only_once(tower, receiver):
    for day in range(3):
        store_day(tower, day, True)
    evaluate_alerts(tower, MAPPING, RULES)  # no webhook configured: stays open, unsent
    assert episodes(tower)[0].status == OPEN
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        notify_pending(tower, "m", receiver.url)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(receiver.received) == 1
    assert episodes(tower)[0].status == NOTIFIED


def test_recomputed_windows_withdraw_an_episode_they_no_longer_show(tower, receiver):
    for day in range(3):
        store_day(tower, day, True)
    evaluate_alerts(tower, MAPPING, RULES, webhook_url=receiver.url)
    store_day(tower, 1, False)  # the window was recomputed (e.g. late data): no run of three any more
    summary = evaluate_alerts(tower, MAPPING, RULES, webhook_url=receiver.url)
    (row,) = episodes(tower)
    assert summary.resolved == 1 and row.status == RESOLVED and "Withdrawn" in row.message
    assert len(receiver.received) == 1


def test_an_episode_never_announced_and_no_longer_in_the_data_is_forgotten(tower):
    for day in range(3):
        store_day(tower, day, True)
    evaluate_alerts(tower, MAPPING, RULES)
    store_day(tower, 2, False)
    evaluate_alerts(tower, MAPPING, RULES)
    assert episodes(tower) == []


def test_slo_and_fairness_rules_open_their_own_episodes(tower, receiver):
    extra = [
        {"version": "*", "slice_key": "", "slice_value": "", "column_name": "", "metric": "p95_ms", "method": "",
         "value": 180.0, "threshold": 100.0, "alert": True, "reference_id": None},
        {"version": "*", "slice_key": "gender", "slice_value": "", "column_name": "",
         "metric": "demographic_parity_difference", "method": "", "value": 0.2, "threshold": 0.1, "alert": True,
         "reference_id": "r1"},
        {"version": "*", "slice_key": "gender", "slice_value": "F", "column_name": "", "metric": "selection_rate",
         "method": "", "value": 0.3, "threshold": None, "alert": None, "reference_id": "r1"},
    ]
    store_day(tower, 0, False, *extra)
    evaluate_alerts(tower, MAPPING, RULES, webhook_url=receiver.url)
    assert sorted((r["rule"], r["subject"]) for r in receiver.received) == [("fairness_dpd", "gender"),
                                                                            ("latency_p95", "")]
    assert any("p95 latency 180 ms is over the SLO of 100 ms" in r["text"] for r in receiver.received)


def test_a_disabled_rule_raises_nothing(tower, receiver):
    for day in range(3):
        store_day(tower, day, True)
    evaluate_alerts(tower, MAPPING, AlertRules(drift=DriftRule(enabled=False)), webhook_url=receiver.url)
    assert receiver.received == [] and episodes(tower) == []


def test_the_health_verdict_warns_before_a_run_of_three_and_is_unknown_without_results(tower):
    assert latest_health(tower, "m").status == "unknown"
    store_day(tower, 0, False)
    evaluate_alerts(tower, MAPPING, RULES)
    assert latest_health(tower, "m").status == "ok"
    store_day(tower, 1, True)
    evaluate_alerts(tower, MAPPING, RULES)
    verdict = latest_health(tower, "m")
    assert verdict.status == "warning" and "Feature 'x' drifted" in verdict.reasons[0]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
def test_alert_rules_come_from_tower_yaml_with_per_model_overrides():
    config = parse_monitoring_config({
        "alerts": {"drift": {"consecutive": 2}, "fairness": {"equalized_odds_difference": 0.2}},
        "models": {"m": {"drift": {"enabled": False}, "performance": {"metric": "f1", "max_drop": 0.1}}},
    }, {"TOWER_ALERT_WEBHOOK_URL": "https://hooks.example.com/x"}, {"m": MAPPING, "n": MAPPING})
    assert config.webhook_url == "https://hooks.example.com/x"
    assert config.rules_for("n").drift.consecutive == 2 and config.rules_for("n").fairness.equalized_odds_difference
    m = config.rules_for("m")
    assert (m.drift.enabled, m.drift.consecutive, m.performance.metric, m.performance.max_drop) == (False, 2, "f1", 0.1)


@pytest.mark.parametrize(("raw", "message"), [
    ({"alerts": {"drfit": {}}}, "unknown rules: drfit"),
    ({"alerts": {"drift": {"consecutive": 0}}}, r"consecutive must be at least 1"),
    ({"alerts": {"performance": {"metric": "auc"}}}, "metric is 'auc'"),
    ({"models": {"ghost": {}}}, "no model 'ghost'"),
    ({"backfill": 3}, "unknown keys: backfill"),
])
def test_bad_monitoring_settings_are_refused_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_monitoring_config(raw, {}, {"m": MAPPING})


def test_a_webhook_url_that_is_not_http_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as caught:
        parse_monitoring_config({}, {"TOWER_ALERT_WEBHOOK_URL": f"ftp://host/{SECRET}"})
    assert SECRET not in str(caught.value)


def test_the_claim_timeout_lets_a_later_run_take_over_a_crashed_claim(tower, receiver):
    for day in range(3):
        store_day(tower, day, True)
    evaluate_alerts(tower, MAPPING, RULES)
    with tower.begin() as conn:  # a run claimed it, then died
        conn.execute(sa.update(alert_episodes).values(status="notifying", claimed_at=DAY0))
    notify_pending(tower, "m", receiver.url, now=DAY0 + alerts.CLAIM_TIMEOUT / 2)
    assert receiver.received == []
    notify_pending(tower, "m", receiver.url, now=DAY0 + alerts.CLAIM_TIMEOUT * 2)
    assert len(receiver.received) == 1
