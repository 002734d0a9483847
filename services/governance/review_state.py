"""Promotion requests as the review pages and the write paths see them: read, never written.

A request is assembled from its request row and its ledger rows: the current evidence round (a
refresh starts a new one), the approvals of that round that still count under the current policy
and their approvers' current rights (one per person; ``approver_rights``: the directory's, else the
newest the ledger has seen), and those that no longer do and why.
Also here: the facts authorization needs about a request, and the stage holders the tower governs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from services.auth.directory import Directory
from services.auth.identity import Actor, auth_config
from services.errors import NotFound
from services.governance import ledger, ledger_rows, ledger_tx
from services.governance.approver_rights import DIRECTORY, ApproverRights, Rights, directory_for
from services.governance.authz import Action, Resource, allowed
from services.governance.context import GovernanceContext
from services.governance.evidence import Evidence
from services.governance.ledger_rows import Decision, RequestRow
from services.governance.ledger_schema import LEDGER, REQUESTS
from services.governance.policy import Policy
from services.governance.validation import canonical_version


@dataclass(frozen=True)
class PromotionRequest:
    id: str
    kind: str  # promotion / rollback
    model: str
    version: str
    stage: str
    previous_version: str | None  # holder of the stage when requested
    requester_issuer: str
    requester_subject: str
    requester_name: str
    reason: str
    evidence_digest: str | None
    status: str  # open / approved / rejected / cancelled
    created_at: datetime  # UTC
    resolved_at: datetime | None
    approvals: tuple[Decision, ...]  # approvals that count now: this evidence round's, still valid
    resolution: Decision | None
    approvals_required: int
    on_behalf_of: str | None = None  # the person a service account requested for (may not approve)
    round: int = 0  # evidence refreshes so far (each resets the approvals)
    basis: Decision | None = None  # the request row or the latest refresh: evidence and holder decided on
    void_approvals: tuple[tuple[Decision, str], ...] = ()  # approvals that no longer count, and why
    overrides: tuple[Decision, ...] = ()  # counted approvals that overrode gates, by a holder of an override role
    lapsed_overrides: tuple[tuple[Decision, str], ...] = ()  # counted overrides whose author lost the right
    rights_source: str = ""  # where the approvers' current rights came from, in words

    @property
    def requester_key(self) -> str:
        return f"{self.requester_issuer}|{self.requester_subject}"

    @property
    def is_open(self) -> bool:
        return self.status == ledger_rows.OPEN


_SETTLED_SOURCE = "the newest roles the ledger has seen (the request is closed; the directory is asked for open ones)"


def _assemble(ctx: GovernanceContext, rows: Sequence[RequestRow], decisions: Sequence[Decision],
              directory: Directory | None = None) -> list[PromotionRequest]:
    # The directory is asked about the approvers of open requests only: a closed request's outcome is
    # settled, and a history page must not cost one directory call per approver who ever approved.
    anyone_open = any(row.status == ledger_rows.OPEN for row in rows)
    live = ApproverRights(
        (directory if directory is not None else directory_for(ctx)) if anyone_open else None, decisions)
    settled = ApproverRights(None, decisions)
    by_request: dict[str, list[Decision]] = {}
    for d in decisions:
        by_request.setdefault(d.request_id, []).append(d)
    result = []
    for row in rows:
        mine = by_request.get(row.id, [])
        resolution = next((d for d in mine if d.decision_id == row.resolution_id), None)
        policy = ctx.policy(row.model)
        rnd = current_round(mine)
        rights = live if row.status == ledger_rows.OPEN else settled
        counted, void = count_approvals(ctx, policy, mine, rnd, rights)
        promoted = resolution is not None and resolution.action == ledger_rows.PROMOTE
        if promoted and resolution is not None and resolution.counted is not None:
            # What the decision counted, as its (hashed) promote row recorded it: not a recount on today's rights.
            recorded = set(resolution.counted)
            counted = [d for d in mine if d.decision_id in recorded]
            void = [(d, reason) for d, reason in void if d.decision_id not in recorded] + [
                (d, "It did not count when the request was decided.") for d in rnd.approvals
                if d.decision_id not in recorded and all(d is not v for v, _ in void)]
        if promoted and resolution is not None and resolution not in counted:
            counted.append(resolution)
        basis = rnd.basis
        result.append(PromotionRequest(
            id=row.id, kind=row.kind, model=row.model, version=row.version, stage=row.stage,
            previous_version=row.previous_version if basis is None else basis.previous_version,
            requester_issuer=row.requester_issuer,
            requester_subject=row.requester_subject, requester_name=row.requester_name, reason=row.reason,
            evidence_digest=row.evidence_digest if basis is None else basis.evidence_digest, status=row.status,
            created_at=row.created_at, resolved_at=row.resolved_at, approvals=tuple(counted),
            resolution=resolution, approvals_required=policy.approvals_required, on_behalf_of=row.on_behalf_of,
            round=rnd.number, basis=basis, void_approvals=tuple(void),
            overrides=live_overrides(policy, counted, rights),
            lapsed_overrides=lapsed_overrides(policy, counted, rights),
            rights_source=rights.source if rights is live else _SETTLED_SOURCE,
        ))
    return result


@dataclass(frozen=True)
class EvidenceRound:
    number: int  # refreshes so far
    basis: Decision | None  # the request row, or the latest refresh row
    approvals: tuple[Decision, ...]  # approve rows recorded after the basis


def current_round(decisions: Sequence[Decision]) -> EvidenceRound:
    """The evidence round of a request from its ledger rows (in sequence order)."""
    approvals: list[Decision]
    basis, number, approvals = None, 0, []
    for d in sorted(decisions, key=lambda d: d.seq):
        if d.action in (ledger_rows.REQUEST, ledger_rows.REFRESH):
            basis, approvals = d, []
            number += d.action == ledger_rows.REFRESH
        elif d.action == ledger_rows.APPROVE:
            approvals.append(d)
    return EvidenceRound(number, basis, tuple(approvals))


def person_of(ctx: GovernanceContext, issuer: str, subject: str, email: str | None,
              recorded: str | None = None) -> str:
    """Who a ledger row's actor is, as N-of-M counts people: the person claim joins accounts.

    ``recorded`` is the row's actor_person, written with what the IdP verified at the time. A row
    written before that column joins on its e-mail (errs towards one person, that is, refusing)."""
    if recorded:
        return recorded
    claim = auth_config(ctx.settings).person_claim
    if claim == "email" and email:
        from services.auth.identity import normalize_name

        return f"person:{normalize_name(email)}"
    return f"{issuer}|{subject}"


def row_person(ctx: GovernanceContext, decision: Decision) -> str:
    """The person behind a ledger row's actor (see person_of)."""
    return person_of(ctx, decision.actor_issuer, decision.actor_subject, decision.actor_email,
                     decision.actor_person)


def _held(rights: Rights) -> set[str]:
    """The roles held, with those they imply."""
    from services.governance.authz import IMPLIED

    roles = set(rights.roles)
    for role in rights.roles:
        roles |= IMPLIED.get(role, frozenset())
    return roles


def _still_counts(ctx: GovernanceContext, policy: Policy, approval: Decision,
                  rights: Rights, requester: Decision | None) -> str | None:
    """Why an earlier approval no longer counts under the current policy and rights (None: it counts)."""
    if rights.absent is not None:
        return f"{approval.actor_name} {rights.absent}."
    roles = _held(rights)
    if not roles & {"reviewer", "admin"}:
        if rights.source == DIRECTORY:
            return f"{approval.actor_name} is no longer in a reviewer group of the directory."
        return f"{approval.actor_name} no longer holds the reviewer role."
    if not (roles & policy.approvers.roles or (approval.actor_issuer, approval.actor_subject)
            in policy.approvers.subjects):
        return f"{approval.actor_name} is no longer among the approvers of the current policy."
    if requester is not None:
        approver = row_person(ctx, approval)
        if approver == row_person(ctx, requester):
            return f"{approval.actor_name} is the requester (four-eyes rule)."
        if requester.on_behalf_of and _names_match(requester.on_behalf_of, approval):
            return f"{approval.actor_name} triggered this request (four-eyes rule)."
    return None


def _names_match(name: str, approval: Decision) -> bool:
    from services.auth.identity import normalize_name

    wanted = normalize_name(name)
    return wanted in {normalize_name(x) for x in (approval.actor_subject, approval.actor_email or "") if x}


def count_approvals(ctx: GovernanceContext, policy: Policy, mine: Sequence[Decision], rnd: EvidenceRound,
                    rights: ApproverRights) -> tuple[list[Decision], list[tuple[Decision, str]]]:
    """This round's approvals that still count (one per person), and those that no longer do."""
    requester = next((d for d in mine if d.action == ledger_rows.REQUEST), None)
    counted: list[Decision] = []
    void: list[tuple[Decision, str]] = []
    people: set[str] = set()
    for approval in rnd.approvals:
        why = _still_counts(ctx, policy, approval, rights.of(approval), requester)
        person = row_person(ctx, approval)
        if why is None and person in people:
            why = f"{approval.actor_name} already approved under another account."
        if why is None:
            people.add(person)
            counted.append(approval)
        else:
            void.append((approval, why))
    stale = [d for d in mine if d.action == ledger_rows.APPROVE and d not in rnd.approvals]
    void += [(d, "It was given before the evidence was refreshed.") for d in stale]
    return counted, void


def live_overrides(policy: Policy, counted: Sequence[Decision], rights: ApproverRights) -> tuple[Decision, ...]:
    """The counted approvals that overrode gates, by someone who still holds an override role."""
    return tuple(a for a in counted if a.is_override and _held(rights.of(a)) & policy.override_roles)


def lapsed_overrides(policy: Policy, counted: Sequence[Decision],
                     rights: ApproverRights) -> tuple[tuple[Decision, str], ...]:
    """The counted overrides that no longer stand because their author lost every override role, and why."""
    lapsed = []
    for approval in (a for a in counted if a.is_override):
        current = rights.of(approval)
        if not _held(current) & policy.override_roles:
            where = "in the directory" if current.source == DIRECTORY else "as the ledger last saw them"
            lapsed.append((approval, f"{approval.actor_name} no longer holds an override role "
                                     f"({', '.join(sorted(policy.override_roles))}) {where}."))
    return tuple(lapsed)


def standing_override(overrides: Sequence[Decision], failing: Sequence[str]) -> Decision | None:
    """The override (of ``live_overrides``) that covers every gate in ``failing``: an override is
    recorded once, and the approvals after it are ordinary. None: approving still needs one."""
    need = set(failing)
    return next((d for d in overrides if need <= set(d.overridden_gates)), None)


def later_rows_of_actors(conn: Connection, rows: Sequence[Decision]) -> list[Decision]:
    """Rows of other requests by the approvers of ``rows``, newer than their approvals: the roles
    the ledger saw them with last (an approval by someone seen since without the right stops counting)."""
    approvers = {(d.actor_issuer, d.actor_subject) for d in rows if d.action == ledger_rows.APPROVE}
    if not approvers:
        return []
    first = min(d.seq for d in rows)
    ids = {d.request_id for d in rows}
    actor_pair = sa.tuple_(LEDGER.c.actor_issuer, LEDGER.c.actor_subject)
    later = ledger.decisions(conn, LEDGER.c.seq > first, actor_pair.in_(list(approvers)))
    return [d for d in later if d.request_id not in ids]


def list_requests(ctx: GovernanceContext, status: str | None = None, model: str | None = None,
                  directory: Directory | None = None) -> list[PromotionRequest]:
    """Requests, newest first, optionally of one status (open/approved/rejected/cancelled) and model.

    ``directory`` (for a page: one whose answers are cached a little) replaces the context's for
    counting; a directory that does not answer is noted in ``rights_source``, never an error here."""
    def query(conn: Connection) -> tuple[list[RequestRow], list[Decision]]:
        conditions = []
        if status is not None:
            conditions.append(REQUESTS.c.status == status)
        if model is not None:
            conditions.append(REQUESTS.c.model == model)
        rows = [ledger_rows.request_from_row(r) for r in conn.execute(
            sa.select(REQUESTS).where(*conditions)
            .order_by(REQUESTS.c.created_at.desc(), REQUESTS.c.id)).mappings()]
        ids = [r.id for r in rows]
        found: list[Decision] = []
        for start in range(0, len(ids), 500):
            found += ledger.decisions(conn, LEDGER.c.request_id.in_(ids[start:start + 500]))
        return rows, found + later_rows_of_actors(conn, found)
    rows, decisions = ledger_tx.read(ctx.engine, query)
    return _assemble(ctx, rows, decisions, directory)


def get_request(ctx: GovernanceContext, request_id: str, directory: Directory | None = None) -> PromotionRequest:
    def query(conn: Connection) -> tuple[RequestRow | None, list[Decision]]:
        mine = ledger.decisions_of_request(conn, request_id)
        return ledger.get_request_row(conn, request_id), mine + later_rows_of_actors(conn, mine)
    row, decisions = ledger_tx.read(ctx.engine, query)
    if row is None:
        raise NotFound(f"Promotion request {request_id!r} does not exist.", "It may have been mistyped.")
    return _assemble(ctx, [row], decisions, directory)[0]


def evidence_snapshot(ctx: GovernanceContext, digest: str) -> Evidence | None:
    """The evidence recorded under ``digest`` (with a request or a decision), verified against the
    digest (``ledger.TamperedRecord`` if its body was edited)."""
    body = ledger_tx.read(ctx.engine, lambda c: ledger.load_evidence(c, digest))
    return None if body is None else Evidence.from_dict(json.loads(body))


def review_resource(ctx: GovernanceContext, request: PromotionRequest | RequestRow, *,
                    deciding: bool = True) -> Resource:
    """The facts authorization needs about a request: owner tag, version creator, requester, policy.

    The requester and the person a bot acted for come from the request's own ledger row, its hash
    checked, never from the request table a database user could edit.
    """
    first = ledger_tx.read(ctx.engine, lambda c: ledger.verified_request_decision(c, request.id))
    if deciding:  # a row an older tower wrote as "03" is never decided on; its requester may withdraw it
        canonical_version(first.version)
    owner = ctx.registry.model_tags(first.model).get("owner")
    extra: dict[str, Any] = {}
    if "on_behalf_of" in Resource.__dataclass_fields__:
        extra["on_behalf_of"] = first.on_behalf_of
    if "requester_person" in Resource.__dataclass_fields__:
        extra["requester_person"] = row_person(ctx, first)
    return Resource(model=first.model, version=first.version, stage=first.to_stage, owner=owner,
                    creator=ctx.registry.version_creator(first.model, first.version),
                    requester=(first.actor_issuer, first.actor_subject),
                    requester_is_service=first.actor_issuer == auth_config(ctx.settings).service_issuer,
                    policy=ctx.policy(first.model), **extra)


def allowed_actions(ctx: GovernanceContext, actor: Actor, request: PromotionRequest) -> frozenset[Action]:
    """What ``actor`` may do on ``request`` now (to show controls; the writes check again)."""
    if not request.is_open:
        return frozenset()
    resource = review_resource(ctx, request)
    return frozenset(a for a in (Action.APPROVE, Action.REJECT, Action.CANCEL_REQUEST, Action.OVERRIDE_GATE)
                     if allowed(actor, a, resource))


def governed_holders(ctx: GovernanceContext, model: str) -> dict[str, str | None]:
    """Stage -> holder as the tower governs it: the ledger's latest promotion of each stage it has
    promoted (the registry may lag behind a pending projection, or have been changed outside the
    tower; repair makes it follow), the registry's holder for the others."""
    holders = ctx.current_holders(model)

    def latest(conn: Connection) -> dict[str, str]:
        found = {stage: ledger.latest_promotion(conn, model, stage) for stage in holders}
        return {stage: d.version for stage, d in found.items() if d is not None}
    return {**holders, **ledger_tx.read(ctx.engine, latest)}


def previous_holder(ctx: GovernanceContext, model: str, stage: str) -> str | None:
    """The version that held ``stage`` before the current holder, per the ledger."""
    stage = ctx.stage_name(stage)
    latest = ledger_tx.read(ctx.engine, lambda c: ledger.latest_promotion(c, model, stage))
    return None if latest is None else latest.previous_version
