"""Audit: verify the chain, filter the history, export it, "who held stage S at T", external changes.

All reads. The ledger is the source of truth; the registry is compared against it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from services.governance import ledger
from services.governance.context import GovernanceContext
from services.governance.ledger import LEDGER, Decision
from services.identity import Actor


# ----------------------------------------------------------------------------------------------
# Chain verification
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows: int  # rows checked (up to and including the first bad one)
    first_bad_seq: int | None
    first_bad_decision_id: str | None
    problem: str | None
    head_hash: str | None  # hash of the last row, when the chain verifies

    @property
    def summary(self) -> str:
        if self.ok:
            return f"All {self.rows} ledger rows verify."
        return f"Row {self.first_bad_seq} (decision {self.first_bad_decision_id}) does not verify: {self.problem}"


def verify_chain(ctx: GovernanceContext) -> ChainReport:
    """Re-hash every ledger row in order; name the first row that does not verify."""
    def check(conn: Connection) -> ChainReport:
        expected_seq, prev_hash, count = 1, ledger.GENESIS_HASH, 0
        rows = conn.execution_options(yield_per=1000).execute(sa.select(LEDGER).order_by(LEDGER.c.seq)).mappings()
        for row in rows:
            count += 1
            problem = None
            if int(row["seq"]) != expected_seq:
                problem = f"sequence number {row['seq']} where {expected_seq} was expected (a row is missing)"
            elif row["prev_hash"] != prev_hash:
                problem = "its prev_hash is not the hash of the row before it"
            elif ledger.row_hash(row) != row["hash"]:
                problem = "its content does not match its hash (the row was altered)"
            if problem is not None:
                return ChainReport(False, count, int(row["seq"]), row["decision_id"], problem, None)
            expected_seq, prev_hash = expected_seq + 1, row["hash"]
        return ChainReport(True, count, None, None, None, None if count == 0 else prev_hash)
    return ledger.read(ctx.engine, check)


# ----------------------------------------------------------------------------------------------
# History and exports
# ----------------------------------------------------------------------------------------------
def history(ctx: GovernanceContext, model: str | None = None, actor: Actor | str | None = None,
            since: datetime | None = None, until: datetime | None = None, action: str | None = None,
            limit: int | None = None) -> list[Decision]:
    """Ledger decisions, newest first. ``actor``: an Actor (matched on issuer + subject) or a
    subject or display name; ``since``/``until`` inclusive (naive datetimes are UTC)."""
    conditions: list[Any] = []
    if model is not None:
        conditions.append(LEDGER.c.model == model)
    if isinstance(actor, Actor):
        conditions += [LEDGER.c.actor_issuer == actor.issuer, LEDGER.c.actor_subject == actor.subject]
    elif actor:
        conditions.append(sa.or_(LEDGER.c.actor_subject == actor, LEDGER.c.actor_name == actor))
    if since is not None:
        conditions.append(LEDGER.c.recorded_at >= ledger.iso(since))
    if until is not None:
        conditions.append(LEDGER.c.recorded_at <= ledger.iso(until))
    if action is not None:
        conditions.append(LEDGER.c.action == action)
    return ledger.read(ctx.engine, lambda c: ledger.decisions(c, *conditions, descending=True, limit=limit))


EXPORT_COLUMNS = ("seq", "recorded_at", "action", "model", "version", "from_stage", "to_stage", "previous_version",
                  "actor_name", "actor_issuer", "actor_subject", "actor_email", "actor_roles", "comment",
                  "override_reason", "overridden_gates", "evidence_digest", "request_id", "decision_id",
                  "prev_hash", "hash")
# A spreadsheet evaluates a cell starting with these as a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def export_csv(rows: Iterable[Decision]) -> str:
    """CSV with a header; text cells that a spreadsheet would run as a formula get a leading '."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for decision in rows:
        data = decision.as_dict()
        writer.writerow([data["seq"], *(_cell(data[c]) for c in EXPORT_COLUMNS[1:])])
    return out.getvalue()


def export_jsonl(rows: Iterable[Decision]) -> str:
    """One JSON object per line, every field exactly as in the ledger."""
    return "".join(json.dumps(d.as_dict(), ensure_ascii=False, sort_keys=True) + "\n" for d in rows)


# ----------------------------------------------------------------------------------------------
# Stage history
# ----------------------------------------------------------------------------------------------
def holder_at(ctx: GovernanceContext, model: str, stage: str, when: datetime) -> str | None:
    """The version that held ``stage`` at ``when``, per the ledger (None: nobody, or unknown).

    The latest promotion of the stage at or before ``when``; before the tower's first promotion,
    the holder that promotion replaced (changes made outside the tower are not in the ledger).
    """
    stage = ctx.stage_name(stage)

    def find(conn: Connection) -> str | None:
        before = ledger.latest_promotion(conn, model, stage, until=when)
        if before is not None:
            return before.version
        first = ledger.decisions(conn, LEDGER.c.model == model, LEDGER.c.to_stage == stage,
                                 LEDGER.c.action == ledger.PROMOTE, limit=1)
        return first[0].previous_version if first else None
    return ledger.read(ctx.engine, find)


@dataclass(frozen=True)
class ExternalChange:
    model: str
    stage: str
    expected_version: str | None  # what the ledger says holds the stage
    actual_version: str | None  # what the registry says
    decision_id: str  # the ledger decision the expectation comes from
    decided_at: datetime
    projection_pending: bool  # True: the tower's own projection has not been applied yet (repair)

    @property
    def description(self) -> str:
        if self.projection_pending:
            return (f"{self.stage}: the ledger moved it to version {self.expected_version}, but the registry "
                    f"projection is still pending (run the repair).")
        actual = "nobody" if self.actual_version is None else f"version {self.actual_version}"
        return (f"{self.stage} is held by {actual} in the registry, but the tower last gave it to version "
                f"{self.expected_version}: it was changed outside the tower.")


def detect_external_changes(ctx: GovernanceContext, model: str) -> list[ExternalChange]:
    """Stages whose registry holder differs from the ledger's (only stages the tower has moved)."""
    holders = ctx.current_holders(model)

    def expectations(conn: Connection) -> tuple[list[Decision], set[str]]:
        latest = [ledger.latest_promotion(conn, model, stage) for stage in holders]
        return [d for d in latest if d is not None], ledger.projected_ids(conn)
    latest, projected = ledger.read(ctx.engine, expectations)
    return [
        ExternalChange(model=model, stage=d.to_stage, expected_version=d.version,
                       actual_version=holders.get(d.to_stage), decision_id=d.decision_id,
                       decided_at=d.recorded_at.astimezone(UTC), projection_pending=d.decision_id not in projected)
        for d in latest if holders.get(d.to_stage) != d.version
    ]
