"""The outbox against a real webhook receiver on loopback: retries with backoff, every failure
recorded without the URL's token, one delivery when senders race, redelivery after a crash."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.notify import outbox
from services.notify.config import ALERTS, Destination, RetryPolicy
from services.notify.outbox import OUTBOX
from services.notify.payloads import Notification
from services.notify.sender import deliver_due
from services.stores.tower_db import create_schema, make_tower_engine
from tests.support.governance import TowerDatabase
from tests.support.webhook import SECRET, Receiver

T0 = datetime(2026, 11, 2, 8, 0, 0)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def tower_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tower.db'}"


@pytest.fixture
def tower(tower_url: str) -> Iterator[sa.Engine]:
    engine = make_tower_engine(tower_url)
    create_schema(engine)
    yield engine
    engine.dispose()


def note(i: int = 1) -> Notification:
    return Notification(key=f"alert:test-{i}", kind="alert", title=f"m: drift {i}", severity="warning", model="m",
                        text=f"feature 'x{i}' drifts", extra={"n": i})


def owe(tower: sa.Engine, *notes: Notification, destination: str = ALERTS, at: datetime = T0) -> None:
    with tower.begin() as conn:
        for n in notes:
            outbox.enqueue(conn, n, destination, f"src-{n.key}", at)


def rows(tower: sa.Engine) -> list:
    with tower.connect() as conn:
        return list(conn.execute(sa.select(OUTBOX).order_by(OUTBOX.c.id)))


def dest(receiver: Receiver, fmt: str = "generic") -> Destination:
    return Destination(ALERTS, receiver.url, fmt, 2.0)


def test_the_backoff_waits_for_the_next_pass_then_doubles_from_a_minute_up_to_an_hour():
    policy = RetryPolicy(first_s=60, max_s=3600)
    assert [policy.delay_s(n) for n in range(1, 10)] == [0, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert policy.delay_s(10_000) == 3600  # no overflow, and never given up


def test_a_receiver_failing_twice_then_accepting_gets_the_notification_once_with_each_failure_recorded(
        tower, receiver, caplog):
    owe(tower, note())
    receiver.statuses = [500, 503]
    with caplog.at_level(logging.WARNING):
        first = deliver_due(tower, [dest(receiver)], T0)
    (row,) = rows(tower)
    assert (first.total_sent, first.total_failed) == (0, 1)
    assert (row.attempts, row.last_error, row.next_attempt_at, row.delivered_at) == (
        1, "127.0.0.1 answered HTTP 500", T0, None)  # the first retry: the next pass
    deliver_due(tower, [dest(receiver)], T0 + timedelta(seconds=5))
    (row,) = rows(tower)
    assert (row.attempts, row.last_error) == (2, "127.0.0.1 answered HTTP 503")
    assert row.next_attempt_at == T0 + timedelta(seconds=5 + 60)
    early = deliver_due(tower, [dest(receiver)], T0 + timedelta(seconds=30))  # not due: nothing is sent
    assert (early.total_sent, early.total_failed, receiver.attempts) == (0, 0, 2)
    done = deliver_due(tower, [dest(receiver)], T0 + timedelta(seconds=65))
    (row,) = rows(tower)
    assert done.total_sent == 1 and receiver.attempts == 3 and len(receiver.received) == 1
    assert (row.attempts, row.last_error, row.delivered_at) == (3, None, T0 + timedelta(seconds=65))
    deliver_due(tower, [dest(receiver)], T0 + timedelta(days=1))
    assert len(receiver.received) == 1 and receiver.attempts == 3  # delivered rows are never sent again
    assert SECRET not in caplog.text and all(SECRET not in (r.last_error or "") for r in rows(tower))
    assert receiver.headers[0]["Idempotency-Key"] == "alert:test-1"
    assert receiver.received[0]["idempotency_key"] == "alert:test-1"


def test_a_receiver_down_for_a_day_is_tried_at_the_cap_for_ever_and_nothing_is_dropped(tower, receiver):
    owe(tower, note())
    receiver.statuses = [500] * 40
    moment, gaps = T0, []
    for _ in range(30):
        deliver_due(tower, [dest(receiver)], moment)
        (row,) = rows(tower)
        gaps.append((row.next_attempt_at - moment).total_seconds())
        moment = row.next_attempt_at
    assert gaps[:9] == [0, 60, 120, 240, 480, 960, 1920, 3600, 3600] and set(gaps[9:]) == {3600}
    (row,) = rows(tower)
    assert row.attempts == 30 and row.delivered_at is None and receiver.attempts == 30
    receiver.statuses = []
    deliver_due(tower, [dest(receiver)], moment)
    assert len(receiver.received) == 1 and rows(tower)[0].delivered_at == moment


def test_a_dead_receiver_costs_one_attempt_per_pass_not_one_per_row(tower, receiver):
    owe(tower, note(1), note(2), note(3))
    receiver.statuses = [500]
    report = deliver_due(tower, [dest(receiver)], T0)
    assert (report.total_failed, receiver.attempts) == (1, 1)
    assert [r.attempts for r in rows(tower)] == [1, 0, 0]
    deliver_due(tower, [dest(receiver)], T0)
    assert len(receiver.received) == 3


def test_a_revoked_slack_url_is_said_so_and_still_retried(tower, receiver):
    owe(tower, note())
    receiver.statuses = [(404, "no_service", {})]
    deliver_due(tower, [dest(receiver, "slack")], T0)
    (row,) = rows(tower)
    assert row.last_error.startswith("127.0.0.1 answered HTTP 404 no_service: the webhook URL was revoked")
    assert row.delivered_at is None and row.next_attempt_at == T0
    deliver_due(tower, [dest(receiver, "slack")], T0)
    assert rows(tower)[0].delivered_at == T0 and "blocks" in receiver.received[0]


def test_a_refusing_receiver_body_is_not_echoed_and_a_redirect_is_not_followed(tower, receiver):
    owe(tower, note(1), note(2))
    receiver.statuses = [(400, f"<html>bad {SECRET}</html>", {}),
                         (302, "", {"Location": "http://127.0.0.1:9/elsewhere"})]
    report = deliver_due(tower, [dest(receiver)], T0)  # a refusal is not an outage: the next row is tried
    first, second = rows(tower)
    assert report.total_failed == 2
    assert first.last_error == ("127.0.0.1 answered HTTP 400 (the receiver refuses this request: check the URL "
                                "and notifications.format; still retried)")
    assert "HTTP 302 (a redirect, not followed" in second.last_error
    assert receiver.attempts == 2


def test_a_busy_receiver_is_left_alone_for_as_long_as_it_asks(tower, receiver):
    owe(tower, note())
    receiver.statuses = [(429, "", {"Retry-After": "600"})]
    deliver_due(tower, [dest(receiver)], T0)
    (row,) = rows(tower)
    assert row.next_attempt_at == T0 + timedelta(seconds=600) and "HTTP 429" in row.last_error


def test_an_unreachable_receiver_is_recorded_by_host_and_exception_only(tower):
    owe(tower, note())
    deliver_due(tower, [Destination(ALERTS, f"http://127.0.0.1:9/hooks/{SECRET}", "teams", 1.0)], T0)
    (row,) = rows(tower)
    assert row.last_error == "127.0.0.1: ConnectionError" and row.attempts == 1


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_tower(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """The tower state on SQLite and on a PostgreSQL database of its own."""
    database = TowerDatabase(request.param, tmp_path)
    engine = make_tower_engine(database.url)
    try:
        create_schema(engine)
        yield engine
    finally:
        engine.dispose()
        database.drop()


def test_two_senders_racing_deliver_each_notification_once(any_tower, receiver):
    tower = any_tower
    owe(tower, *(note(i) for i in range(6)))
    barrier = threading.Barrier(6)

    def sender() -> None:
        barrier.wait()
        deliver_due(tower, [dest(receiver)], T0)

    threads = [threading.Thread(target=sender) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["idempotency_key"] for r in receiver.received) == sorted(f"alert:test-{i}" for i in range(6))
    assert receiver.attempts == 6 and all(r.attempts == 1 and r.delivered_at == T0 for r in rows(tower))


def test_enqueueing_the_same_notification_twice_owes_it_once(tower):
    owe(tower, note(), note())
    with tower.begin() as conn:
        assert outbox.enqueue(conn, note(), ALERTS, "again", T0) is False
    assert len(rows(tower)) == 1


CRASH_AFTER_POST = """
import os, sys
from datetime import datetime
from services.notify import outbox
from services.notify.config import Destination
from services.notify.sender import deliver_due
from services.stores.tower_db import make_tower_engine

outbox.mark_delivered = lambda *args, **kwargs: os._exit(9)   # the POST went out; the process dies
deliver_due(make_tower_engine(sys.argv[1]), [Destination("alerts", sys.argv[2], "generic", 5.0)],
            datetime.fromisoformat(sys.argv[3]))
sys.exit(0)
"""


def test_a_crash_after_the_post_redelivers_once_the_claim_expires_with_the_same_idempotency_key(
        tower, tower_url, receiver):
    owe(tower, note())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    crashed = subprocess.run([sys.executable, "-c", CRASH_AFTER_POST, tower_url, receiver.url, T0.isoformat()],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 9, crashed.stderr
    (row,) = rows(tower)
    assert len(receiver.received) == 1 and row.delivered_at is None and row.claimed_at == T0
    deliver_due(tower, [dest(receiver)], T0 + outbox.CLAIM_TIMEOUT / 2)  # the claim still holds
    assert len(receiver.received) == 1
    deliver_due(tower, [dest(receiver)], T0 + outbox.CLAIM_TIMEOUT * 2)  # a crashed claim expires
    assert len(receiver.received) == 2 and rows(tower)[0].delivered_at is not None
    assert [h["Idempotency-Key"] for h in receiver.headers] == ["alert:test-1", "alert:test-1"]
    assert json.dumps(receiver.received[0], sort_keys=True) == json.dumps(receiver.received[1], sort_keys=True)


def test_a_sender_whose_claim_expired_cannot_record_over_the_sender_that_took_it_over(tower, receiver):
    owe(tower, note())
    (row_id,) = outbox.due_ids(tower, ALERTS, T0)
    stale = outbox.claim(tower, row_id, T0)
    assert stale is not None and outbox.claim(tower, row_id, T0) is None  # held
    fresh = outbox.claim(tower, row_id, T0 + outbox.CLAIM_TIMEOUT * 2)
    assert fresh is not None
    with tower.begin() as conn:
        assert outbox.mark_failed(conn, stale, T0, "late", RetryPolicy()) is None
        assert outbox.mark_delivered(conn, fresh, T0 + outbox.CLAIM_TIMEOUT * 2)
    (row,) = rows(tower)
    assert row.delivered_at is not None and row.last_error is None and row.attempts == 1
