"""Promotions decided through the real governance code are announced from the ledger: who, what,
evidence digest and the link to the audit row; nothing is lost between a decision and its notification."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services import cli
from services.governance import audit, ledger, ledger_tx, promotion
from services.governance.ledger_schema import LEDGER
from services.notify.config import DECISIONS, Destination, RetryPolicy
from services.notify.outbox import OUTBOX
from services.notify.sender import deliver_due
from services.stores.tower_db import create_schema
from tests.support.governance import ALICE, RITA, World, open_world
from tests.support.webhook import Receiver

PUBLIC = "https://tower.example.com"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as w:
        create_schema(w.ctx.engine)  # the notification tables beside the governance ones
        yield w


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def promote(world: World, version: str = "3", comment: str = "ship it") -> promotion.Outcome:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", version, "Production", "better AUC").request.id
    outcome = promotion.approve(world.ctx, RITA, rid, comment)
    assert outcome.promoted
    return outcome


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def send(world: World, receiver: Receiver, fmt: str = "generic", at: datetime | None = None):
    return deliver_due(world.ctx.engine, [Destination(DECISIONS, receiver.url, fmt, 2.0)], at or now(),
                       retry=RetryPolicy(), public_url=PUBLIC)


def test_a_promotion_is_announced_with_who_what_the_evidence_digest_and_the_audit_link(world, receiver):
    outcome = promote(world)
    decision = outcome.decision
    report = send(world, receiver)
    assert report.total_sent == 1
    (body,) = receiver.received
    stored = ledger_tx.read(world.ctx.engine, lambda c: ledger.decision_by_id(c, decision.decision_id))
    assert stored is not None and stored.evidence_digest  # the oracle: the ledger row itself
    assert (body["decided_by"], body["model"], body["version"], body["from_stage"], body["to_stage"],
            body["previous_version"]) == ("Rita", "credit-risk", "3", None, "Production", "1")
    assert body["evidence_digest"] == stored.evidence_digest and body["decision_id"] == stored.decision_id
    assert body["link"] == f"{PUBLIC}/audit?decision={stored.decision_id}"
    assert body["text"] == ("[ML Control Tower] Rita promoted credit-risk v3 to Production "
                            "(from no stage, replacing v1).")
    assert body["idempotency_key"] == f"decision:{stored.decision_id}"
    assert audit.linked_decision(world.ctx, body["link"].split("=", 1)[1]) == stored  # the link opens that row
    send(world, receiver)
    assert len(receiver.received) == 1  # announced once


def test_the_slack_message_of_a_promotion_carries_the_link_button_and_the_digest(world, receiver):
    decision = promote(world).decision
    send(world, receiver, "slack")
    (body,) = receiver.received
    fields = " ".join(f["text"] for f in body["blocks"][2]["fields"])
    assert "*Decided by*\nRita" in fields and decision.evidence_digest in fields
    assert body["blocks"][-1]["elements"][0]["url"] == f"{PUBLIC}/audit?decision={decision.decision_id}"


def test_requests_approvals_short_of_the_quorum_and_rejections_are_not_announced(world, receiver):
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "x").request.id
    promotion.reject(world.ctx, RITA, rid, "not now")
    assert send(world, receiver).total_sent == 0 and receiver.received == []


def test_a_decision_whose_notification_failed_is_delivered_by_the_next_pass(world, receiver):
    decision = promote(world).decision
    receiver.statuses = [502]
    first = send(world, receiver)
    with world.ctx.engine.connect() as conn:
        (row,) = conn.execute(sa.select(OUTBOX)).all()
    assert first.total_failed == 1 and row.last_error == "127.0.0.1 answered HTTP 502" and row.attempts == 1
    assert row.source_id == decision.decision_id
    second = send(world, receiver)
    assert second.total_sent == 1 and [b["decision_id"] for b in receiver.received] == [decision.decision_id]


def test_a_crash_between_the_decision_and_its_notification_loses_nothing(world, receiver):
    # The decision's process died before any sender ran: no outbox row exists. The next pass
    # (here: monitor run, through the CLI) derives it from the ledger.
    decision = promote(world).decision
    with world.ctx.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar() == 0
    env = {**world.env(), "TOWER_ALERT_WEBHOOK_URL": receiver.url, "TOWER_PUBLIC_URL": PUBLIC}
    mp = pytest.MonkeyPatch()
    try:
        for key, value in env.items():
            mp.setenv(key, value)
        assert cli.main(["monitor", "run", "--quiet"]) in (0, 2)  # 2 if the registry projection retry complains
    finally:
        mp.undo()
    decisions = [b for b in receiver.received if b.get("kind") == "decision"]
    assert [b["decision_id"] for b in decisions] == [decision.decision_id]
    assert decisions[0]["link"] == f"{PUBLIC}/audit?decision={decision.decision_id}"


def test_a_ledger_row_forged_outside_the_tower_is_never_announced(world, receiver):
    real = promote(world).decision
    with world.ctx.engine.begin() as conn:  # a database admin appends a promotion of v4 by hand
        row = dict(conn.execute(sa.select(LEDGER).where(LEDGER.c.decision_id == real.decision_id)).mappings().one())
        row.update(seq=row["seq"] + 1, decision_id="f" * 64, version="4", prev_hash=row["hash"], hash="0" * 64)
        conn.execute(LEDGER.insert().values(**row))
    send(world, receiver)
    assert [b["decision_id"] for b in receiver.received] == [real.decision_id]


def test_promotions_older_than_a_day_before_notifications_were_turned_on_are_history(world, receiver):
    promote(world)
    assert send(world, receiver, at=now() + timedelta(days=2)).total_sent == 0
    assert receiver.received == []


@pytest.mark.parametrize(("spelling", "found"), [
    ("{id}", True), ("  {ID}  ", True), ("{id12}", False), ("zz{id62}", False), ("", False),
    ("' OR 1=1 --", False), ("x" * 10_000, False),
])
def test_the_audit_link_names_a_decision_by_its_full_id_only(world, spelling, found):
    decision = promote(world).decision
    text = spelling.format(id=decision.decision_id, ID=decision.decision_id.upper(), id12=decision.decision_id[:12],
                           id62=decision.decision_id[:62])
    assert (audit.linked_decision(world.ctx, text) == decision) is found
