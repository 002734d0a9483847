"""The decision ledger: append-only, hash-chained, in the tower state (SQLite or PostgreSQL).

Its queries and writes; the tables are ``ledger_schema``, the row values, ids and hashes
``ledger_rows``, and the serialized transaction every write runs in ``ledger_tx``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.errors import TowerError
from services.governance.authz import Action, require_authorized, write_step
from services.governance.canonical import canonical_json, sha256_hex
from services.governance.ledger_keys import load_keys
from services.governance.ledger_rows import (
    APPROVE,
    APPROVED,
    CANCEL,
    CANCELLED,
    GENESIS_HASH,
    OPEN,
    PROMOTE,
    REFRESH,
    REJECT,
    REJECTED,
    REQUEST,
    REQUEST_IMMUTABLE,
    Decision,
    RequestRow,
    decision_from_row,
    iso,
    open_key,
    request_decision_id,
    request_from_row,
    row_hash,
)
from services.governance.ledger_schema import EVIDENCE, LEDGER, PROJECTIONS, REQUESTS
from services.governance.ledger_tx import run_locked

_RESOLVED_STATUS = {PROMOTE: APPROVED, REJECT: REJECTED, CANCEL: CANCELLED}
# The authorization a ledger row needs in the current write scope.
_ROW_ACTIONS: dict[str, tuple[Action, ...]] = {
    REQUEST: (Action.REQUEST_PROMOTION, Action.ROLLBACK_REQUEST),
    APPROVE: (Action.APPROVE,),
    PROMOTE: (Action.APPROVE,),
    REJECT: (Action.REJECT,),
    CANCEL: (Action.CANCEL_REQUEST,),
    REFRESH: (Action.REJECT,),  # the reviewer's right: it can only delay a promotion, never grant one
}


# ----------------------------------------------------------------------------------------------
# Writes (only inside an authorized write action)
# ----------------------------------------------------------------------------------------------
@write_step()
def append_decision(conn: Connection, *, decision_id: str, request_id: str, action: str, model: str, version: str,
                    from_stage: str | None, to_stage: str, previous_version: str | None, actor_name: str,
                    actor_issuer: str, actor_subject: str, actor_email: str | None, actor_roles: Iterable[str],
                    comment: str, override_reason: str | None, overridden_gates: Sequence[str],
                    evidence_digest: str | None, recorded_at: datetime,
                    on_behalf_of: str | None = None, actor_person: str | None = None,
                    counted: Sequence[str] | None = None) -> Decision:
    """Append one row at the head of the chain (call inside ``run_locked``)."""
    if action not in _ROW_ACTIONS:
        raise ValueError(f"unknown ledger action {action!r}")
    require_authorized(*_ROW_ACTIONS[action])
    head = conn.execute(sa.select(LEDGER.c.seq, LEDGER.c.hash).order_by(LEDGER.c.seq.desc()).limit(1)).first()
    values: dict[str, Any] = {
        "seq": 1 if head is None else int(head.seq) + 1,
        "decision_id": decision_id, "request_id": request_id, "action": action, "model": model,
        "version": str(version), "from_stage": from_stage, "to_stage": to_stage,
        "previous_version": previous_version, "actor_name": actor_name, "actor_issuer": actor_issuer,
        "actor_subject": actor_subject, "actor_email": actor_email,
        "actor_roles": canonical_json(sorted(set(actor_roles))), "comment": comment,
        "override_reason": override_reason, "overridden_gates": canonical_json(list(overridden_gates)),
        "evidence_digest": evidence_digest, "recorded_at": iso(recorded_at),
        "prev_hash": GENESIS_HASH if head is None else head.hash, "on_behalf_of": on_behalf_of,
        "actor_person": actor_person, "counted": None if counted is None else canonical_json(sorted(counted)),
    }
    keys = load_keys()
    values["key_id"] = keys.current_id
    values["hash"] = row_hash(values, keys)
    conn.execute(LEDGER.insert().values(**values))
    return decision_from_row(values)


@write_step(Action.REQUEST_PROMOTION, Action.ROLLBACK_REQUEST)
def insert_request(conn: Connection, *, request_id: str, kind: str, model: str, version: str, stage: str,
                   previous_version: str | None, requester_issuer: str, requester_subject: str,
                   requester_name: str, reason: str, evidence_digest: str | None, created_at: datetime,
                   on_behalf_of: str | None = None) -> RequestRow:
    values = {
        "id": request_id, "kind": kind, "model": model, "version": version, "stage": stage,
        "previous_version": previous_version, "requester_issuer": requester_issuer,
        "requester_subject": requester_subject, "requester_name": requester_name, "reason": reason,
        "evidence_digest": evidence_digest, "status": OPEN, "created_at": iso(created_at), "resolved_at": None,
        "resolution_id": None, "open_key": open_key(model, version, stage), "on_behalf_of": on_behalf_of,
    }
    conn.execute(REQUESTS.insert().values(**values))
    return request_from_row(values)


@write_step(Action.APPROVE, Action.REJECT, Action.CANCEL_REQUEST)
def resolve_request(conn: Connection, decision: Decision) -> None:
    """Close the request a terminal decision resolves (same transaction as the ledger row)."""
    status = _RESOLVED_STATUS[decision.action]
    done = conn.execute(
        REQUESTS.update()
        .where(REQUESTS.c.id == decision.request_id, REQUESTS.c.status == OPEN)
        .values(status=status, resolved_at=iso(decision.recorded_at), resolution_id=decision.decision_id,
                open_key=None)
    )
    if done.rowcount != 1:
        raise RuntimeError(f"request {decision.request_id} was not open")


@write_step()
def store_evidence(conn: Connection, body: str, digest: str, created_at: datetime) -> None:
    """Keep an evidence snapshot (content-addressed: the same evidence is stored once)."""
    exists = conn.execute(sa.select(EVIDENCE.c.digest).where(EVIDENCE.c.digest == digest)).first()
    if exists is None:
        conn.execute(EVIDENCE.insert().values(digest=digest, body=body, created_at=iso(created_at)))


@write_step()
def record_projection(engine: Engine, decision_id: str, tag_key: str, applied: Mapping[str, Any],
                      applied_at: datetime) -> bool:
    """Note that ``decision_id`` is projected; False if it already was (a concurrent repair)."""
    def insert(conn: Connection) -> bool:
        found = conn.execute(sa.select(PROJECTIONS.c.decision_id)
                             .where(PROJECTIONS.c.decision_id == decision_id)).first()
        if found is not None:
            return False
        conn.execute(PROJECTIONS.insert().values(decision_id=decision_id, tag_key=tag_key,
                                                 applied=canonical_json(applied), applied_at=iso(applied_at)))
        return True
    return run_locked(engine, insert)


# ----------------------------------------------------------------------------------------------
# Reads
# ----------------------------------------------------------------------------------------------
def get_request_row(conn: Connection, request_id: str) -> RequestRow | None:
    row = conn.execute(sa.select(REQUESTS).where(REQUESTS.c.id == request_id)).mappings().first()
    return None if row is None else request_from_row(row)


def open_request_for(conn: Connection, model: str, version: str, stage: str) -> RequestRow | None:
    row = conn.execute(sa.select(REQUESTS).where(REQUESTS.c.open_key == open_key(model, version, stage))
                       ).mappings().first()
    return None if row is None else request_from_row(row)


def decision_by_id(conn: Connection, decision_id: str) -> Decision | None:
    row = conn.execute(sa.select(LEDGER).where(LEDGER.c.decision_id == decision_id)).mappings().first()
    return None if row is None else decision_from_row(row)


def decisions_of_request(conn: Connection, request_id: str) -> list[Decision]:
    rows = conn.execute(sa.select(LEDGER).where(LEDGER.c.request_id == request_id).order_by(LEDGER.c.seq)).mappings()
    return [decision_from_row(r) for r in rows]


def _decisions_query(conditions: Sequence[Any], descending: bool, limit: int | None) -> Any:
    query = sa.select(LEDGER).where(*conditions).order_by(LEDGER.c.seq.desc() if descending else LEDGER.c.seq)
    return query if limit is None else query.limit(limit)


def decisions(conn: Connection, *conditions: Any, descending: bool = False, limit: int | None = None) -> list[Decision]:
    return [decision_from_row(r) for r in conn.execute(_decisions_query(conditions, descending, limit)).mappings()]


def verified_decisions(conn: Connection, *conditions: Any, descending: bool = False,
                       limit: int | None = None) -> list[Decision]:
    """``decisions``, each row's hash checked first (TamperedRecord for the first that fails): what a
    projection writes to the registry must be a row an authorized decision wrote, not one someone
    with write access to the database appended or edited."""
    # Once the ledger is keyed, a later row without the key is a downgrade (what audit verify calls
    # "hashed without the ledger key although earlier rows are keyed"): whoever cannot sign appends
    # plain SHA-256 rows. Rows before the first keyed one are the ones written before the key.
    first_keyed = conn.execute(sa.select(sa.func.min(LEDGER.c.seq)).where(LEDGER.c.key_id.is_not(None))).scalar()
    found = []
    for row in conn.execute(_decisions_query(conditions, descending, limit)).mappings():
        downgraded = first_keyed is not None and not row["key_id"] and row["seq"] > first_keyed
        if downgraded or row_hash(row) != row["hash"]:
            raise TamperedRecord(f"Ledger row {row['seq']} ({row['action']} of '{row['model']}' v{row['version']}) "
                                 "was altered or added outside the tower: its hash does not verify. The registry "
                                 "is not changed from it.", "Run `audit verify` and restore the ledger.")
        found.append(decision_from_row(row))
    return found


def latest_promotion(conn: Connection, model: str, stage: str, *, until: datetime | None = None,
                     verified: bool = False) -> Decision | None:
    """The newest promotion of ``stage``; ``verified`` checks its hash (projections move aliases by it)."""
    conditions = [LEDGER.c.model == model, LEDGER.c.to_stage == stage, LEDGER.c.action == PROMOTE]
    if until is not None:
        conditions.append(LEDGER.c.recorded_at <= iso(until))
    found = (verified_decisions if verified else decisions)(conn, *conditions, descending=True, limit=1)
    return found[0] if found else None


class TamperedRecord(TowerError):
    """A stored record does not match the hash that the ledger holds for it."""


def load_evidence(conn: Connection, digest: str) -> str | None:
    """The evidence body stored under ``digest``, verified against it (TamperedRecord if edited)."""
    body = conn.execute(sa.select(EVIDENCE.c.body).where(EVIDENCE.c.digest == digest)).scalar()
    if body is not None and sha256_hex(body) != digest:
        raise TamperedRecord(f"The evidence snapshot {digest[:12]} was altered after it was recorded: its content "
                             "no longer matches its digest.", "Run `audit verify`; do not decide on it.")
    return body


def verified_request_decision(conn: Connection, request_id: str) -> Decision:
    """The request's own ledger row, its hash checked: the facts authorization trusts (requester,
    holder at request time, on-behalf-of) come from here, never from the editable request table."""
    row = conn.execute(sa.select(LEDGER).where(LEDGER.c.decision_id == request_decision_id(request_id))
                       ).mappings().first()
    if row is None or row_hash(row) != row["hash"]:
        raise TamperedRecord(f"The ledger row of request {request_id[:12]} is missing or altered.",
                             "Run `audit verify`; nobody may decide on this request until it is resolved.")
    decision = decision_from_row(row)
    stored = get_request_row(conn, request_id)
    if stored is not None:
        for field_name, ledger_field in REQUEST_IMMUTABLE.items():
            mine = getattr(stored, field_name)
            theirs = getattr(decision, ledger_field)
            if field_name in ("id",):
                continue
            if field_name == "created_at":
                mine, theirs = iso(mine), iso(theirs)
            if mine != theirs:
                raise TamperedRecord(f"Request {request_id[:12]} was altered: its {field_name} no longer matches "
                                     "the ledger.", "Run `audit verify`; nobody may decide on it.")
    return decision


def head(conn: Connection) -> Decision | None:
    found = decisions(conn, descending=True, limit=1)
    return found[0] if found else None


def promoted_stages(conn: Connection) -> set[tuple[str, str]]:
    """(model, stage) pairs the tower has ever promoted: the ones the registry must follow."""
    rows = conn.execute(sa.select(LEDGER.c.model, LEDGER.c.to_stage).where(LEDGER.c.action == PROMOTE).distinct())
    return {(r.model, r.to_stage) for r in rows}


def unprojected_decisions(conn: Connection) -> list[Decision]:
    """Decisions with no recorded projection, oldest first, each row's hash checked (as
    ``verified_decisions``); the filter runs in SQL, so a long ledger is not read at every decision."""
    return verified_decisions(conn, LEDGER.c.decision_id.not_in(sa.select(PROJECTIONS.c.decision_id)))


def projected_ids(conn: Connection) -> set[str]:
    return set(conn.execute(sa.select(PROJECTIONS.c.decision_id)).scalars())
