"""The ledger's rows as values: actions and statuses, decision ids, the row types, the row hash.

Decision ids: ``request`` rows hash the request id; an approval that does not complete the quorum
hashes (request, approver issuer + subject), so one approver counts once; the *resolution* of a
request (the approval completing the quorum, a rejection or a cancellation) hashes the request id
alone, so a request can be resolved once and only once, whoever races for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from services.governance.canonical import canonical_json, sha256_hex
from services.governance.ledger_keys import LedgerKeys, load_keys
from services.governance.ledger_schema import LEDGER

GENESIS_HASH = "0" * 64

# Ledger actions (what a row records).
REQUEST, APPROVE, PROMOTE, REJECT, CANCEL = "request", "approve", "promote", "reject", "cancel"
REFRESH = "refresh"  # a reviewer re-snapshotted the evidence: earlier approvals no longer count
LEDGER_ACTIONS = (REQUEST, APPROVE, PROMOTE, REJECT, CANCEL, REFRESH)
# Request status.
OPEN, APPROVED, REJECTED, CANCELLED = "open", "approved", "rejected", "cancelled"

OPTIONAL_COLUMNS = ("on_behalf_of", "key_id", "actor_person", "counted")  # hashed only when not NULL (see row_hash)
HASHED_COLUMNS = tuple(c.name for c in LEDGER.columns if c.name != "hash" and c.name not in OPTIONAL_COLUMNS)
# The request row's fields that never change; each must equal its ``request`` ledger row's (audit).
REQUEST_IMMUTABLE = {"id": "request_id", "model": "model", "version": "version", "stage": "to_stage",
                     "previous_version": "previous_version", "requester_issuer": "actor_issuer",
                     "requester_subject": "actor_subject", "requester_name": "actor_name", "reason": "comment",
                     "evidence_digest": "evidence_digest", "created_at": "recorded_at",
                     "on_behalf_of": "on_behalf_of"}


def iso(moment: datetime) -> str:
    """The ledger's time format: UTC, microseconds, 'Z' (fixed width, so it sorts as text)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _id(*parts: str) -> str:
    return sha256_hex("\x1f".join(("tower-decision", *parts)))


def request_decision_id(request_id: str) -> str:
    return _id("request", request_id)


def approval_decision_id(request_id: str, issuer: str, subject: str, round_: int = 0) -> str:
    """One approval per approver and evidence round (round 0 keeps the ids written before refreshes)."""
    return _id("approve", request_id, issuer, subject) if round_ == 0 else \
        _id("approve", request_id, issuer, subject, f"round-{round_}")


def refresh_decision_id(request_id: str, round_: int) -> str:
    return _id("refresh", request_id, str(round_))


def resolution_decision_id(request_id: str) -> str:
    """The one id every terminal decision of a request (promote, reject, cancel) shares."""
    return _id("resolve", request_id)


def open_key(model: str, version: str, stage: str) -> str:
    return sha256_hex("\x1f".join(("open", model, version, stage)))


@dataclass(frozen=True)
class Decision:
    """One ledger row."""

    seq: int
    decision_id: str
    request_id: str
    action: str
    model: str
    version: str
    from_stage: str | None
    to_stage: str
    previous_version: str | None
    actor_name: str
    actor_issuer: str
    actor_subject: str
    actor_email: str | None
    actor_roles: tuple[str, ...]
    comment: str
    override_reason: str | None
    overridden_gates: tuple[str, ...]
    evidence_digest: str | None
    recorded_at: datetime
    prev_hash: str
    hash: str
    on_behalf_of: str | None = None
    actor_person: str | None = None  # the person N-of-M counts, as verified when the row was written
    counted: tuple[str, ...] | None = None  # promote rows: the earlier approvals the quorum completed with

    @property
    def actor_key(self) -> str:
        return f"{self.actor_issuer}|{self.actor_subject}"

    @property
    def is_override(self) -> bool:
        return bool(self.overridden_gates)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (exports, tags)."""
        return {
            "seq": self.seq, "decision_id": self.decision_id, "request_id": self.request_id,
            "action": self.action, "model": self.model, "version": self.version,
            "from_stage": self.from_stage, "to_stage": self.to_stage, "previous_version": self.previous_version,
            "actor_name": self.actor_name, "actor_issuer": self.actor_issuer, "actor_subject": self.actor_subject,
            "actor_email": self.actor_email, "actor_roles": list(self.actor_roles), "comment": self.comment,
            "override_reason": self.override_reason, "overridden_gates": list(self.overridden_gates),
            "evidence_digest": self.evidence_digest, "recorded_at": iso(self.recorded_at),
            "prev_hash": self.prev_hash, "hash": self.hash, "on_behalf_of": self.on_behalf_of,
            "actor_person": self.actor_person, "counted": None if self.counted is None else list(self.counted),
        }


@dataclass(frozen=True)
class RequestRow:
    id: str
    kind: str
    model: str
    version: str
    stage: str
    previous_version: str | None
    requester_issuer: str
    requester_subject: str
    requester_name: str
    reason: str
    evidence_digest: str | None
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolution_id: str | None
    on_behalf_of: str | None = None


def row_hash(values: Mapping[str, Any] | RowMapping, keys: LedgerKeys | None = None) -> str:
    """SHA-256 over the canonical JSON of the row's fields (prev_hash included, hash excluded).

    A column added later is hashed only when set: rows written before it verify unchanged, and
    setting or clearing it on a row written after it breaks that row's hash.
    """
    fields = {name: values[name] for name in HASHED_COLUMNS}
    fields.update({name: values[name] for name in OPTIONAL_COLUMNS if values.get(name) is not None})
    text = canonical_json(fields)
    key_id = values.get("key_id")
    if key_id:  # keyed: only a holder of the key can compute it (MissingLedgerKey otherwise)
        return (keys or load_keys()).sign(str(key_id), text)
    return sha256_hex(text)


def decision_from_row(row: Mapping[str, Any] | RowMapping) -> Decision:
    return Decision(
        seq=int(row["seq"]), decision_id=row["decision_id"], request_id=row["request_id"], action=row["action"],
        model=row["model"], version=row["version"], from_stage=row["from_stage"], to_stage=row["to_stage"],
        previous_version=row["previous_version"], actor_name=row["actor_name"], actor_issuer=row["actor_issuer"],
        actor_subject=row["actor_subject"], actor_email=row["actor_email"],
        actor_roles=tuple(json.loads(row["actor_roles"])), comment=row["comment"],
        override_reason=row["override_reason"], overridden_gates=tuple(json.loads(row["overridden_gates"])),
        evidence_digest=row["evidence_digest"], recorded_at=parse_iso(row["recorded_at"]),  # type: ignore[arg-type]
        prev_hash=row["prev_hash"], hash=row["hash"], on_behalf_of=row.get("on_behalf_of"),
        actor_person=row.get("actor_person"),
        counted=None if row.get("counted") is None else tuple(json.loads(row["counted"])),
    )


def request_from_row(row: Mapping[str, Any] | RowMapping) -> RequestRow:
    return RequestRow(
        id=row["id"], kind=row["kind"], model=row["model"], version=row["version"], stage=row["stage"],
        previous_version=row["previous_version"], requester_issuer=row["requester_issuer"],
        requester_subject=row["requester_subject"], requester_name=row["requester_name"], reason=row["reason"],
        evidence_digest=row["evidence_digest"], status=row["status"],
        created_at=parse_iso(row["created_at"]),  # type: ignore[arg-type]
        resolved_at=parse_iso(row["resolved_at"]), resolution_id=row["resolution_id"],
        on_behalf_of=row.get("on_behalf_of"),
    )

