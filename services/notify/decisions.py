"""Decision notifications, derived from the ledger (the source of truth).

Every ledger row that moved a stage (action ``promote``: the approval that completed the quorum,
promotions and rollbacks alike) recorded since the destination was first seen, that has no outbox
row yet, gets one. So nothing is written inside the governance decision's transaction, and a crash
between the decision and its notification loses nothing: the next pass (the page right after a
decision, or ``monitor run``) finds the row without a notification and adds it.

Each row's hash is checked first (``ledger.verified_decisions``): a row appended or edited outside
the tower is never announced as a decision (``audit verify`` reports it).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.errors import TowerError
from services.governance import ledger
from services.governance.ledger_rows import PROMOTE, Decision, iso
from services.governance.ledger_schema import LEDGER
from services.notify.outbox import OUTBOX, enqueue
from services.notify.payloads import Notification

_log = logging.getLogger(__name__)
KIND = "decision"
# Decisions recorded this long before a destination was first seen are still announced: turning
# notifications on announces the last day's promotions, then every later one.
FIRST_SIGHT_GRACE = timedelta(days=1)
AUDIT_PATH = "audit"  # ui/navigation.py: the Audit trail page's url_path; it reads ?decision=<id>


def audit_link(public_url: str | None, decision_id: str) -> str | None:
    return None if not public_url else f"{public_url}/{AUDIT_PATH}?decision={decision_id}"


def decision_notification(decision: Decision, public_url: str | None) -> Notification:
    """What a promotion says: who decided, what moved where, on which evidence, and where the audit row is."""
    before = decision.from_stage or "no stage"
    replaces = f", replacing v{decision.previous_version}" if decision.previous_version else ""
    link = audit_link(public_url, decision.decision_id)
    where = "" if link else f" See the Audit trail page, decision {decision.decision_id[:16]}."
    override = f" Approved as an override of: {', '.join(decision.overridden_gates)}." if decision.is_override else ""
    text = (f"{decision.actor_name} promoted {decision.model} v{decision.version} to {decision.to_stage} "
            f"(from {before}{replaces}).{override}{where}")
    fields = [("Decided by", decision.actor_name), ("Model", decision.model), ("Version", f"v{decision.version}"),
              ("Stage", f"{before} → {decision.to_stage}"),
              ("Evidence digest", decision.evidence_digest or "none recorded"),
              ("Decision", decision.decision_id)]
    if decision.comment:
        fields.append(("Comment", decision.comment))
    if decision.is_override:
        fields.append(("Override reason", decision.override_reason or ""))
    return Notification(
        key=f"{KIND}:{decision.decision_id}", kind=KIND,
        title=f"{decision.model} v{decision.version} promoted to {decision.to_stage}",
        severity="warning" if decision.is_override else "info", model=decision.model, text=text, link=link,
        fields=tuple(fields),
        extra={"decision_id": decision.decision_id, "request_id": decision.request_id, "seq": decision.seq,
               "action": decision.action, "version": decision.version, "from_stage": decision.from_stage,
               "to_stage": decision.to_stage, "previous_version": decision.previous_version,
               "decided_by": decision.actor_name, "on_behalf_of": decision.on_behalf_of,
               "evidence_digest": decision.evidence_digest, "overridden_gates": list(decision.overridden_gates),
               "recorded_at": iso(decision.recorded_at),
               "audit_path": f"/{AUDIT_PATH}?decision={decision.decision_id}"},
    )


def enqueue_decisions(engine: Engine, destination: str, since: datetime, now: datetime,
                      public_url: str | None) -> int:
    """Add an outbox row for every promotion since ``since`` that ``destination`` is not owed yet."""
    owed = sa.select(OUTBOX.c.source_id).where(OUTBOX.c.kind == KIND, OUTBOX.c.destination == destination)
    with engine.connect() as conn:
        ids: list[str] = list(conn.execute(sa.select(LEDGER.c.decision_id).where(
            LEDGER.c.action == PROMOTE, LEDGER.c.recorded_at >= iso(since), LEDGER.c.decision_id.not_in(owed))
            .order_by(LEDGER.c.seq)).scalars())
    added = 0
    for decision_id in ids:
        try:
            with engine.begin() as conn:
                (decision,) = ledger.verified_decisions(conn, LEDGER.c.decision_id == decision_id)
                added += enqueue(conn, decision_notification(decision, public_url), destination, decision_id, now)
        except TowerError as exc:  # altered, or keyed with a key this process lacks: not announced
            _log.warning("Decision %s is not notified: %s", decision_id[:16], exc.message)
    return added
