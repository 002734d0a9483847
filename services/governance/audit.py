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

from services.auth.identity import Actor
from services.errors import NotFound, TowerError
from services.governance import ledger, ledger_rows, ledger_tx, projection
from services.governance.canonical import sha256_hex
from services.governance.context import GovernanceContext
from services.governance.ledger_keys import KEY_ENV, PREVIOUS_ENV, MissingLedgerKey, load_keys
from services.governance.ledger_rows import Decision
from services.governance.ledger_schema import EVIDENCE, LEDGER, REQUESTS
from services.governance.validation import InvalidInput, canonical_version


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
    """Re-hash every ledger row in order; name the first row that does not verify (the chain alone:
    ``verify_all`` also checks it against the registry)."""
    keys = load_keys()

    def check(conn: Connection) -> ChainReport:
        expected_seq, prev_hash, count = 1, ledger_rows.GENESIS_HASH, 0
        rows = conn.execution_options(yield_per=1000).execute(sa.select(LEDGER).order_by(LEDGER.c.seq)).mappings()
        for row in rows:
            count += 1
            problem = None
            if int(row["seq"]) != expected_seq:
                problem = f"sequence number {row['seq']} where {expected_seq} was expected (a row is missing)"
            elif row["prev_hash"] != prev_hash:
                problem = "its prev_hash is not the hash of the row before it"
            else:
                try:
                    if ledger_rows.row_hash(row, keys) != row["hash"]:
                        problem = "its content does not match its hash (the row was altered)"
                except MissingLedgerKey as exc:
                    problem = exc.message
            if problem is not None:
                return ChainReport(False, count, int(row["seq"]), row["decision_id"], problem, None)
            expected_seq, prev_hash = expected_seq + 1, row["hash"]
        return ChainReport(True, count, None, None, None, None if count == 0 else prev_hash)
    return ledger_tx.read(ctx.engine, check)


@dataclass(frozen=True)
class Finding:
    """One thing ``verify_all`` found wrong, with the first row or tag at fault."""

    kind: str  # chain / request / evidence / missing_tag / extra_tag / forged_tag / short_ledger / head
    message: str
    seq: int | None = None
    decision_id: str | None = None
    model: str | None = None
    version: str | None = None

    @property
    def where(self) -> str:
        parts = [f"row {self.seq}" if self.seq is not None else "",
                 f"decision {self.decision_id[:12]}" if self.decision_id else "",
                 f"'{self.model}' v{self.version}" if self.model and self.version else
                 (f"'{self.model}'" if self.model else "")]
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class AuditReport:
    rows: int
    findings: tuple[Finding, ...]
    registry_checked: bool  # False: the registry could not be read, only the tower database was checked
    registry_problem: str | None = None

    @property
    def ok(self) -> bool:
        return not self.findings and self.registry_checked

    @property
    def summary(self) -> str:
        if self.ok:
            return f"All {self.rows} ledger rows verify, and the registry's audit tags and anchors agree with them."
        if not self.findings:
            return (f"The {self.rows} ledger rows verify, but the registry could not be compared: "
                    f"{self.registry_problem}")
        first = self.findings[0]
        more = f" ({len(self.findings) - 1} more finding(s))" if len(self.findings) > 1 else ""
        return f"{first.where}: {first.message}{more}" if first.where else first.message + more


def _tower_findings(conn: Connection) -> tuple[int, list[Finding], dict[int, Any], set[str]]:
    """Chain, request rows and evidence bodies; also the rows by seq and the projected ids."""
    findings: list[Finding] = []
    rows = {int(r["seq"]): dict(r) for r in conn.execute(sa.select(LEDGER).order_by(LEDGER.c.seq)).mappings()}
    expected, prev, keyed = 1, ledger_rows.GENESIS_HASH, False
    keys = load_keys()
    for seq in sorted(rows):
        row = rows[seq]
        try:
            rehashed = ledger_rows.row_hash(row, keys)
        except MissingLedgerKey:
            findings.append(Finding("chain", f"it was hashed with ledger key {row['key_id']}, which is not configured "
                                    f"here (set {KEY_ENV} or {PREVIOUS_ENV})", seq, row["decision_id"]))
            break
        if keyed and not row["key_id"]:
            findings.append(Finding("chain", "it is hashed without the ledger key although earlier rows are keyed "
                                    "(it was rewritten by someone without the key)", seq, row["decision_id"]))
            break
        keyed = keyed or bool(row["key_id"])
        if seq != expected:
            findings.append(Finding("chain", f"sequence number {seq} where {expected} was expected (a row is missing)",
                                    seq, row["decision_id"]))
        elif row["prev_hash"] != prev:
            findings.append(Finding("chain", "its prev_hash is not the hash of the row before it", seq,
                                    row["decision_id"]))
        elif rehashed != row["hash"]:
            findings.append(Finding("chain", "its content does not match its hash (the row was altered)", seq,
                                    row["decision_id"]))
        if findings:
            break
        expected, prev = seq + 1, row["hash"]
    for seq in sorted(rows):  # rows written before versions were canonical (they cannot be rewritten)
        try:
            canonical_version(rows[seq]["version"])
        except InvalidInput:
            findings.append(Finding("version", f"it names version {rows[seq]['version']!r}, which is not canonical; "
                                    "cancel or reject its request and file a new one", seq, rows[seq]["decision_id"],
                                    rows[seq]["model"]))
    by_decision = {r["decision_id"]: r for r in rows.values()}
    for request in conn.execute(sa.select(REQUESTS).order_by(REQUESTS.c.created_at)).mappings():
        first = by_decision.get(ledger_rows.request_decision_id(request["id"]))
        if first is None:
            findings.append(Finding("request", "a request row has no request decision in the ledger (it was inserted "
                                    "or its ledger row deleted)", None, None, request["model"], request["version"]))
            continue
        for name, ledger_name in ledger_rows.REQUEST_IMMUTABLE.items():
            if name != "id" and request[name] != first[ledger_name]:
                findings.append(Finding("request", f"request {request['id'][:12]}: its {name} differs from the "
                                        "ledger's record of the request (the request row was edited)",
                                        int(first["seq"]), first["decision_id"], request["model"], request["version"]))
                break
        resolution = by_decision.get(ledger_rows.resolution_decision_id(request["id"]))
        if (resolution is None) != (request["status"] == ledger_rows.OPEN):
            findings.append(Finding("request", f"request {request['id'][:12]} is '{request['status']}' but the ledger "
                                    f"{'has no' if resolution is None else 'has a'} resolution for it",
                                    None if resolution is None else int(resolution["seq"]), None,
                                    request["model"], request["version"]))
    digests = {r["evidence_digest"] for r in rows.values() if r["evidence_digest"]}
    for digest in sorted(digests):
        body = conn.execute(sa.select(EVIDENCE.c.body).where(EVIDENCE.c.digest == digest)).scalar()
        user = next(r for r in sorted(rows.values(), key=lambda r: r["seq"]) if r["evidence_digest"] == digest)
        if body is None:
            findings.append(Finding("evidence", f"the evidence snapshot {digest[:12]} it refers to is missing",
                                    int(user["seq"]), user["decision_id"]))
        elif sha256_hex(body) != digest:
            findings.append(Finding("evidence", f"the evidence snapshot {digest[:12]} it refers to was altered (its "
                                    "body no longer matches its digest)", int(user["seq"]), user["decision_id"]))
    return len(rows), findings, rows, ledger.projected_ids(conn)


def _registry_findings(ctx: GovernanceContext, rows: dict[int, Any], projected: set[str],
                       models: set[str]) -> list[Finding]:
    findings: list[Finding] = []
    seq: int | None
    by_decision = {r["decision_id"]: r for r in rows.values()}
    tagged: set[str] = set()
    newest = max(rows) if rows else 0
    for model in sorted(models):
        try:
            versions = ctx.registry.list_versions(model)
            model_tags = ctx.registry.model_tags(model)
        except NotFound:
            if any(r["model"] == model for r in rows.values()):
                findings.append(Finding("missing_tag", "the ledger has decisions on a model the registry no longer has",
                                        model=model))
            continue
        head = model_tags.get(projection.HEAD_TAG)
        if head is not None:
            try:
                anchor = json.loads(head)
                seq, digest = int(anchor["seq"]), str(anchor["hash"])
            except (ValueError, KeyError, TypeError):
                findings.append(Finding("head", "its chain-head anchor tag is not readable", model=model))
            else:
                if seq > newest:
                    findings.append(Finding("short_ledger", f"the registry anchors chain row {seq}, but the ledger "
                                            f"ends at row {newest} (rows were deleted)", seq, model=model))
                elif rows.get(seq, {}).get("hash") != digest:
                    findings.append(Finding("head", f"the registry's anchor of row {seq} does not match that row's "
                                            "hash (the ledger was rewritten)", seq, model=model))
        for info in versions:
            for key, value in info.tags.items():
                if not key.startswith(projection.AUDIT_TAG_PREFIX):
                    continue
                decision_id = key[len(projection.AUDIT_TAG_PREFIX):]
                tagged.add(decision_id)
                row = by_decision.get(decision_id)
                try:
                    payload = json.loads(value)
                    seq = int(payload.get("seq"))
                except (ValueError, TypeError, AttributeError):
                    payload, seq = {}, None
                if row is None:
                    kind = "short_ledger" if seq is not None and seq > newest else "extra_tag"
                    findings.append(Finding(kind, "the registry carries an audit tag for a decision the ledger does "
                                            "not have" + (f" (row {seq}, beyond the ledger's last row {newest})"
                                                          if kind == "short_ledger" else ""),
                                            seq, decision_id, info.model, info.version))
                elif (seq != int(row["seq"]) or payload.get("hash") != row["hash"]
                      or (info.model, info.version) != (row["model"], row["version"])):
                    findings.append(Finding("forged_tag", "its audit tag in the registry does not match the ledger row "
                                            "(forged or edited)", int(row["seq"]), decision_id, info.model,
                                            info.version))
    for seq in sorted(rows):
        row = rows[seq]
        if row["decision_id"] in projected and row["decision_id"] not in tagged and row["model"] in models:
            findings.append(Finding("missing_tag", "its audit tag is missing from the registry (deleted)", seq,
                                    row["decision_id"], row["model"], row["version"]))
    return findings


def verify_all(ctx: GovernanceContext) -> AuditReport:
    """The chain, the request rows and the evidence bodies against the ledger, then the ledger
    against the registry in both directions (missing, extra or forged audit tags; a ledger shorter
    than the registry's anchors; an empty ledger while tags exist; a head that does not match)."""
    count, findings, rows, projected = ledger_tx.read(ctx.engine, _tower_findings)
    models = {r["model"] for r in rows.values()}
    try:
        models |= {m.name for m in ctx.registry.list_models()}
        findings += _registry_findings(ctx, rows, projected, models)
    except TowerError as exc:
        return AuditReport(count, tuple(findings), False, exc.message)
    findings.sort(key=lambda f: (f.seq is None, f.seq or 0))
    return AuditReport(count, tuple(findings), True)


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
        conditions.append(LEDGER.c.recorded_at >= ledger_rows.iso(since))
    if until is not None:
        conditions.append(LEDGER.c.recorded_at <= ledger_rows.iso(until))
    if action is not None:
        conditions.append(LEDGER.c.action == action)
    return ledger_tx.read(ctx.engine, lambda c: ledger.decisions(c, *conditions, descending=True, limit=limit))


def linked_decision(ctx: GovernanceContext, decision_id: str) -> Decision | None:
    """The decision a link names (``/audit?decision=<id>``, as notifications link it); None for an
    id that is not 64 hex characters or that the ledger does not hold."""
    wanted = decision_id.strip().lower()
    if len(wanted) != 64 or any(c not in "0123456789abcdef" for c in wanted):
        return None
    return ledger_tx.read(ctx.engine, lambda c: ledger.decision_by_id(c, wanted))


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
                                 LEDGER.c.action == ledger_rows.PROMOTE, limit=1)
        return first[0].previous_version if first else None
    return ledger_tx.read(ctx.engine, find)


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
    latest, projected = ledger_tx.read(ctx.engine, expectations)
    return [
        ExternalChange(model=model, stage=d.to_stage, expected_version=d.version,
                       actual_version=holders.get(d.to_stage), decision_id=d.decision_id,
                       decided_at=d.recorded_at.astimezone(UTC), projection_pending=d.decision_id not in projected)
        for d in latest if holders.get(d.to_stage) != d.version
    ]
