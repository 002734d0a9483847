"""Processed webhook deliveries in the tower state: ``webhook_deliveries``, one row per delivery id.

MLflow retries a delivery with the same ``X-MLflow-Delivery-Id``. The id is the primary key, so
of two racing deliveries of one id exactly one inserts its row and handles the event; the other
sees the row. A row is ``processing`` while its handler runs and ``done`` with the outcome after.
A handler that fails on an outage releases its row (the retry starts afresh); a process that dies
mid-way leaves a ``processing`` row that anyone may take over once its lease has run out (a retry
of the delivery, or the receiver's start-up pass). Taking over is a compare-and-set on the claim
token, so two takers never both win; if the dead holder had already filed the request, the
service account's second request finds it open and records nothing (one open request per model,
version and stage).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.errors import TowerStateUnavailable
from services.stores.tower_db import METADATA

PROCESSING, DONE = "processing", "done"
DEFAULT_LEASE = timedelta(seconds=120)  # far above a handler's few seconds of registry and warehouse reads

DELIVERIES = sa.Table(
    "webhook_deliveries", METADATA,
    sa.Column("delivery_id", sa.String(64), primary_key=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # processing / done
    sa.Column("claim_token", sa.String(32), nullable=False),  # who holds a processing row
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("outcome", sa.Text, nullable=True),  # what the handler did, in words
    sa.Column("request_id", sa.String(64), nullable=True),  # the promotion request filed (or found open)
)


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    event: str
    model: str
    version: str
    status: str
    attempts: int
    claimed_at: datetime
    outcome: str | None
    request_id: str | None


@dataclass(frozen=True)
class Claim:
    """The answer to "may I handle this delivery?": ``token`` when yes, else the row that holds it."""

    token: str | None
    existing: Delivery | None = None


def _unavailable(exc: sa.exc.DBAPIError) -> TowerStateUnavailable:
    line = (str(getattr(exc, "orig", exc)).strip().splitlines() or ["?"])[0][:300]
    return TowerStateUnavailable(f"The tower state database cannot record the delivery: {line}", "Check TOWER_DB_URL.")


def _row(mapping: sa.RowMapping) -> Delivery:
    return Delivery(delivery_id=mapping["delivery_id"], event=mapping["event"], model=mapping["model"],
                    version=mapping["version"], status=mapping["status"], attempts=mapping["attempts"],
                    claimed_at=_aware(mapping["claimed_at"]), outcome=mapping["outcome"],
                    request_id=mapping["request_id"])


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def get(engine: Engine, delivery_id: str) -> Delivery | None:
    try:
        with engine.connect() as conn:
            query = sa.select(DELIVERIES).where(DELIVERIES.c.delivery_id == delivery_id)
            found = conn.execute(query).mappings().first()
    except sa.exc.DBAPIError as exc:
        raise _unavailable(exc) from exc
    return None if found is None else _row(found)


def claim(engine: Engine, delivery_id: str, event: str, model: str, version: str, *, now: datetime,
          lease: timedelta = DEFAULT_LEASE) -> Claim:
    """Take the delivery: a new id is inserted as processing; a processing row whose lease ran out is
    taken over; a done row, or one another handler holds, is returned instead of a token."""
    token = secrets.token_hex(16)
    try:
        with engine.begin() as conn:
            conn.execute(DELIVERIES.insert().values(
                delivery_id=delivery_id, event=event, model=model, version=version, status=PROCESSING,
                claim_token=token, attempts=1, claimed_at=now))
        return Claim(token)
    except sa.exc.IntegrityError:
        pass  # the id is known: a retry, a duplicate or a racer
    except sa.exc.DBAPIError as exc:
        raise _unavailable(exc) from exc
    existing = get(engine, delivery_id)
    if existing is None:  # released between our insert and our read: it is free again
        return claim(engine, delivery_id, event, model, version, now=now, lease=lease)
    if existing.status != PROCESSING or now - existing.claimed_at < lease:
        return Claim(None, existing)
    try:
        with engine.begin() as conn:
            taken = conn.execute(
                DELIVERIES.update()
                .where(DELIVERIES.c.delivery_id == delivery_id, DELIVERIES.c.status == PROCESSING,
                       DELIVERIES.c.claimed_at == existing.claimed_at)
                .values(claim_token=token, claimed_at=now, attempts=DELIVERIES.c.attempts + 1)).rowcount
    except sa.exc.DBAPIError as exc:
        raise _unavailable(exc) from exc
    return Claim(token) if taken == 1 else Claim(None, get(engine, delivery_id))


def finish(engine: Engine, delivery_id: str, token: str, *, now: datetime, outcome: str,
           request_id: str | None = None) -> bool:
    """Mark the delivery done with its outcome; False when someone took the claim over meanwhile."""
    try:
        with engine.begin() as conn:
            return bool(conn.execute(
                DELIVERIES.update()
                .where(DELIVERIES.c.delivery_id == delivery_id, DELIVERIES.c.claim_token == token,
                       DELIVERIES.c.status == PROCESSING)
                .values(status=DONE, finished_at=now, outcome=outcome[:2000], request_id=request_id)).rowcount)
    except sa.exc.DBAPIError as exc:
        raise _unavailable(exc) from exc


def release(engine: Engine, delivery_id: str, token: str) -> None:
    """Forget a claim whose handler failed on an outage, so the next retry handles the delivery afresh."""
    try:
        with engine.begin() as conn:
            conn.execute(DELIVERIES.delete().where(DELIVERIES.c.delivery_id == delivery_id,
                                                   DELIVERIES.c.claim_token == token,
                                                   DELIVERIES.c.status == PROCESSING))
    except sa.exc.DBAPIError:
        pass  # the lease lets a later retry or the start-up pass take it over


def stuck(engine: Engine, *, now: datetime, lease: timedelta = DEFAULT_LEASE) -> list[Delivery]:
    """Processing rows whose lease ran out: a handler died between claiming and finishing."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(DELIVERIES).where(DELIVERIES.c.status == PROCESSING,
                                                            DELIVERIES.c.claimed_at < now - lease)
                                .order_by(DELIVERIES.c.claimed_at)).mappings().all()
    except sa.exc.DBAPIError as exc:
        raise _unavailable(exc) from exc
    return [_row(r) for r in rows]
