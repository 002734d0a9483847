"""The delivery table of the tower state: one row per (notification key, destination).

``notify_outbox``        what is owed to whom: the notification (JSON, rendered for the receiver's
                         format at send time, so a format change reaches pending rows), ``attempts``,
                         ``next_attempt_at``, ``last_error`` (host and status or exception type, never
                         the URL's path or query: they carry the token), ``delivered_at``.
``notify_destinations``  when each destination was first seen: ledger decisions older than that (less
                         a day of grace) are history, not news, and are never announced.

Delivery is **at least once**. A sender claims a row with one conditional UPDATE (due, not delivered,
not claimed, or claimed longer ago than ``CLAIM_TIMEOUT``: a crashed sender), so two senders racing
(two ``monitor run``\\ s, a page and a cron) POST it once; the claim carries a random token and only
its holder may record the outcome. A crash after the POST and before ``delivered_at`` is written
makes the next sender POST it again once the claim expires, so bodies carry an idempotency key.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.notify.config import RetryPolicy
from services.notify.payloads import Notification
from services.stores.tower_db import METADATA

CLAIM_TIMEOUT = timedelta(minutes=10)  # longer than any POST (timeout_s) and its bookkeeping
BATCH = 200  # rows one pass considers per destination (oldest first); the rest wait for the next pass

OUTBOX = sa.Table(
    "notify_outbox", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(200), nullable=False),  # "alert:<digest>", "decision:<decision id>"
    sa.Column("destination", sa.String(64), nullable=False),  # a destination's name, never its URL
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("source_id", sa.String(64), nullable=False),  # the alert episode's id, the decision's id
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("notification", sa.Text, nullable=False),  # JSON of payloads.Notification
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime, nullable=False),
    sa.Column("last_attempt_at", sa.DateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("claimed_at", sa.DateTime, nullable=True),
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("delivered_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("key", "destination", name="uq_notify_outbox_key_destination"),
    sa.Index("ix_notify_outbox_due", "destination", "delivered_at", "next_attempt_at"),
)
DESTINATIONS = sa.Table(
    "notify_destinations", METADATA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("first_seen_at", sa.DateTime, nullable=False),
)


@dataclass(frozen=True)
class Claimed:
    """A row this sender holds: only it may record the outcome (``token``)."""

    id: int
    key: str
    destination: str
    kind: str
    source_id: str
    attempts: int
    notification: Notification
    token: str


def enqueue(conn: Connection, notification: Notification, destination: str, source_id: str, now: datetime) -> bool:
    """Owe ``notification`` to ``destination`` unless it is owed already; True if this call added it.

    Runs in a savepoint: a concurrent sender inserting the same row first is not an error."""
    if conn.execute(sa.select(OUTBOX.c.id).where(OUTBOX.c.key == notification.key,
                                                 OUTBOX.c.destination == destination)).first() is not None:
        return False
    try:
        with conn.begin_nested():
            conn.execute(OUTBOX.insert().values(
                key=notification.key, destination=destination, kind=notification.kind, source_id=source_id,
                model=notification.model, notification=json.dumps(notification.to_json(), allow_nan=False),
                created_at=now, attempts=0, next_attempt_at=now))
    except sa.exc.IntegrityError:
        return False
    return True


def first_seen(engine: Engine, destination: str, now: datetime) -> datetime:
    """When ``destination`` was first seen (recorded now if never)."""
    d = DESTINATIONS.c
    with engine.begin() as conn:
        seen = conn.execute(sa.select(d.first_seen_at).where(d.name == destination)).scalar()
        if seen is not None:
            return seen  # type: ignore[no-any-return]
        try:
            with conn.begin_nested():
                conn.execute(DESTINATIONS.insert().values(name=destination, first_seen_at=now))
        except sa.exc.IntegrityError:  # another sender recorded it first
            return conn.execute(sa.select(d.first_seen_at).where(d.name == destination)).scalar_one()
    return now


def due_ids(engine: Engine, destination: str, now: datetime, *, model: str | None = None,
            limit: int = BATCH) -> list[int]:
    """Rows owed to ``destination`` whose time has come, oldest first (not yet claimed: see ``claim``)."""
    o = OUTBOX.c
    query = sa.select(o.id).where(o.destination == destination, o.delivered_at.is_(None), o.next_attempt_at <= now)
    if model is not None:
        query = query.where(o.model == model)
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(o.next_attempt_at, o.id).limit(limit)).scalars())


def claim(engine: Engine, row_id: int, now: datetime) -> Claimed | None:
    """Take the row for one attempt (one conditional UPDATE), or None when another sender has it,
    it was delivered meanwhile or it is not due."""
    o = OUTBOX.c
    token = secrets.token_hex(16)
    with engine.begin() as conn:
        taken = conn.execute(OUTBOX.update().where(
            o.id == row_id, o.delivered_at.is_(None), o.next_attempt_at <= now,
            sa.or_(o.claimed_at.is_(None), o.claimed_at < now - CLAIM_TIMEOUT),
        ).values(claimed_at=now, claim_token=token)).rowcount
        if taken != 1:
            return None
        row = conn.execute(sa.select(OUTBOX).where(o.id == row_id)).one()
    return Claimed(id=row.id, key=row.key, destination=row.destination, kind=row.kind, source_id=row.source_id,
                   attempts=row.attempts, notification=Notification.from_json(json.loads(row.notification)),
                   token=token)


def mark_delivered(conn: Connection, claimed: Claimed, now: datetime) -> bool:
    """Record the delivery; False when the claim was lost (it expired and another sender took it)."""
    o = OUTBOX.c
    return conn.execute(OUTBOX.update().where(o.id == claimed.id, o.claim_token == claimed.token).values(
        delivered_at=now, last_attempt_at=now, attempts=o.attempts + 1, last_error=None, claimed_at=None,
        claim_token=None)).rowcount == 1


def mark_failed(conn: Connection, claimed: Claimed, now: datetime, reason: str, retry: RetryPolicy,
                not_before_s: float = 0.0) -> datetime | None:
    """Record a failed attempt and when to try again (the backoff, or later if the receiver asked);
    None when the claim was lost."""
    o = OUTBOX.c
    failures = claimed.attempts + 1
    delay = max(retry.delay_s(failures), min(not_before_s, retry.max_s))
    next_at = now + timedelta(seconds=delay)
    done = conn.execute(OUTBOX.update().where(o.id == claimed.id, o.claim_token == claimed.token).values(
        attempts=o.attempts + 1, last_attempt_at=now, last_error=reason[:1000], next_attempt_at=next_at,
        claimed_at=None, claim_token=None)).rowcount
    return next_at if done == 1 else None


def withdraw(conn: Connection, kind: str, source_id: str) -> None:
    """Forget what is still owed about a source that no longer exists (an alert episode the recomputed
    windows no longer show and that was never announced: it did not happen). Delivered rows stay."""
    o = OUTBOX.c
    conn.execute(OUTBOX.delete().where(o.kind == kind, o.source_id == source_id, o.delivered_at.is_(None)))
