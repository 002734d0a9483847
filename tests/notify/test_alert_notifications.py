"""Alert episodes through the outbox: the configured format, the link to the Alerts page, and an
episode withdrawn before anyone heard of it taking its pending notification with it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from services.monitoring.alerts import evaluate_alerts
from services.notify.config import ALERTS, Destination, RetryPolicy
from services.notify.outbox import OUTBOX
from services.notify.sender import deliver_due
from tests.monitoring.test_alerts import MAPPING, RULES, episodes, store_day
from tests.support.webhook import Receiver

NOW = datetime(2026, 5, 10, 6, 0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def outbox_rows(tower: sa.Engine) -> list:
    with tower.connect() as conn:
        return list(conn.execute(sa.select(OUTBOX)))


def test_an_alert_in_slack_format_names_the_rule_and_links_to_the_alerts_page_of_its_model(tower, receiver):
    for day in range(3):
        store_day(tower, day, True)
    summary = evaluate_alerts(tower, MAPPING, RULES, destination=Destination(ALERTS, receiver.url, "slack", 2.0),
                              retry=RetryPolicy(), public_url="https://tower.example.com", now=NOW)
    assert summary.notified == 1
    (body,) = receiver.received
    assert body["blocks"][0]["text"]["text"] == "⚠️ m: drift (x)"
    assert "feature 'x' drifts (wasserstein 0.3, threshold 0.1)" in body["blocks"][1]["text"]["text"]
    assert body["blocks"][-1]["elements"][0]["url"] == "https://tower.example.com/alerts?model=m"
    (episode,) = episodes(tower)
    assert episode.status == "notified" and episode.notified_at == NOW and episode.notify_attempts == 1


def test_an_episode_withdrawn_before_it_was_announced_is_never_sent_later(tower, receiver):
    for day in range(3):
        store_day(tower, day, True)
    receiver.statuses = [500]
    destination = Destination(ALERTS, receiver.url, "generic", 2.0)
    evaluate_alerts(tower, MAPPING, RULES, destination=destination, now=NOW)
    assert len(outbox_rows(tower)) == 1 and receiver.received == []
    store_day(tower, 2, False)  # late data: the third window no longer drifts, the episode did not happen
    evaluate_alerts(tower, MAPPING, RULES, destination=destination, now=NOW + timedelta(hours=1))
    deliver_due(tower, [destination], NOW + timedelta(days=1))
    assert episodes(tower) == [] and outbox_rows(tower) == [] and receiver.received == []


def test_an_episode_reopened_after_a_withdrawal_is_owed_again(tower, receiver):
    for day in range(3):
        store_day(tower, day, True)
    destination = Destination(ALERTS, receiver.url, "generic", 2.0)
    receiver.statuses = [500]
    evaluate_alerts(tower, MAPPING, RULES, destination=destination, now=NOW)
    store_day(tower, 2, False)
    evaluate_alerts(tower, MAPPING, RULES, destination=destination, now=NOW)
    store_day(tower, 2, True)  # and back: a new episode row, the same natural key
    evaluate_alerts(tower, MAPPING, RULES, destination=destination, now=NOW)
    assert [b["opened_window"] for b in receiver.received] == ["2026-05-03T00:00:00"]
