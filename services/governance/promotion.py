"""Promotion requests and decisions: the service functions the review pages and the CLI call.

Every function that writes is a ``@write_action``: it resolves the facts (owner tag, version
creator, requester, policy), calls ``authorize`` with the actor's current roles, then records
the decision in the ledger (one serialized transaction) and, after the commit, projects it onto
the registry. A projection that fails does not undo the decision: the outcome says so
(``projection_error``) and ``repair_projections`` re-applies it.

Retries and races: one open request per (model, version, stage); an approver counts once; a
request is resolved (final approval, rejection or cancellation) exactly once. The same actor
repeating the same decision gets the recorded one back (``created=False``); anyone else gets a
``DecisionConflict`` naming who decided first and when.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from services.auth.identity import Actor, auth_config
from services.errors import Conflict, NotFound, TowerError
from services.governance import ledger, projection
from services.governance.authz import Action, Resource, allowed, authorize, write_action, write_step
from services.governance.context import GovernanceContext
from services.governance.evidence import Evidence, collect_evidence
from services.governance.ledger import Decision, RequestRow
from services.governance.policy import Policy
from services.governance.validation import InvalidInput, canonical_version, check_text

_log = logging.getLogger(__name__)
PROMOTION, ROLLBACK = "promotion", "rollback"
_VERBS = {ledger.PROMOTE: "approved", ledger.REJECT: "rejected", ledger.CANCEL: "cancelled",
          ledger.APPROVE: "approved", ledger.REQUEST: "requested"}


class DecisionConflict(Conflict):
    """Someone else decided first; ``decision`` is the decision that counts."""

    def __init__(self, message: str, decision: Decision | None = None, hint: str = "") -> None:
        super().__init__(message, hint)
        self.decision = decision


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

    @property
    def requester_key(self) -> str:
        return f"{self.requester_issuer}|{self.requester_subject}"

    @property
    def is_open(self) -> bool:
        return self.status == ledger.OPEN


@dataclass(frozen=True)
class Outcome:
    request: PromotionRequest
    decision: Decision
    created: bool  # False: an identical retry; nothing new was recorded
    projection_error: str | None = None  # the decision counts; the registry is behind until repaired

    @property
    def promoted(self) -> bool:
        return self.decision.action == ledger.PROMOTE


# ----------------------------------------------------------------------------------------------
# Reads
# ----------------------------------------------------------------------------------------------
def _assemble(ctx: GovernanceContext, rows: Sequence[RequestRow],
              decisions: Sequence[Decision]) -> list[PromotionRequest]:
    by_request: dict[str, list[Decision]] = {}
    for d in decisions:
        by_request.setdefault(d.request_id, []).append(d)
    result = []
    for row in rows:
        mine = by_request.get(row.id, [])
        resolution = next((d for d in mine if d.decision_id == row.resolution_id), None)
        policy = ctx.policy(row.model)
        rnd = current_round(mine)
        counted, void = _count_approvals(ctx, policy, mine, rnd, decisions)
        if resolution is not None and resolution.action == ledger.PROMOTE and resolution not in counted:
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
        ))
    return result


@dataclass(frozen=True)
class _Round:
    number: int  # refreshes so far
    basis: Decision | None  # the request row, or the latest refresh row
    approvals: tuple[Decision, ...]  # approve rows recorded after the basis


def current_round(decisions: Sequence[Decision]) -> _Round:
    """The evidence round of a request from its ledger rows (in sequence order)."""
    approvals: list[Decision]
    basis, number, approvals = None, 0, []
    for d in sorted(decisions, key=lambda d: d.seq):
        if d.action in (ledger.REQUEST, ledger.REFRESH):
            basis, approvals = d, []
            number += d.action == ledger.REFRESH
        elif d.action == ledger.APPROVE:
            approvals.append(d)
    return _Round(number, basis, tuple(approvals))


def person_of(ctx: GovernanceContext, issuer: str, subject: str, email: str | None) -> str:
    """Who a ledger row's actor is, as N-of-M counts people: the person claim joins accounts."""
    claim = auth_config(ctx.settings).person_claim
    if claim == "email" and email:
        from services.auth.identity import normalize_name

        return f"person:{normalize_name(email)}"
    return f"{issuer}|{subject}"


def _actor_person(ctx: GovernanceContext, actor: Actor) -> str:
    key = getattr(actor, "person_key", None)
    return key if isinstance(key, str) and key.startswith("person:") else person_of(
        ctx, actor.issuer, actor.subject, actor.email)


def _still_counts(ctx: GovernanceContext, policy: Policy, approval: Decision,
                  latest_roles: frozenset[str], requester: Decision | None) -> str | None:
    """Why an earlier approval no longer counts under the current policy and rights (None: it counts)."""
    from services.governance.authz import IMPLIED

    roles = set(latest_roles)
    for role in latest_roles:
        roles |= IMPLIED.get(role, frozenset())
    if not roles & {"reviewer", "admin"}:
        return f"{approval.actor_name} no longer holds the reviewer role."
    if not (roles & policy.approvers.roles or (approval.actor_issuer, approval.actor_subject)
            in policy.approvers.subjects):
        return f"{approval.actor_name} is no longer among the approvers of the current policy."
    if requester is not None:
        if person_of(ctx, approval.actor_issuer, approval.actor_subject, approval.actor_email) == person_of(
                ctx, requester.actor_issuer, requester.actor_subject, requester.actor_email):
            return f"{approval.actor_name} is the requester (four-eyes rule)."
        if requester.on_behalf_of and _names_match(requester.on_behalf_of, approval):
            return f"{approval.actor_name} triggered this request (four-eyes rule)."
    return None


def _names_match(name: str, approval: Decision) -> bool:
    from services.auth.identity import normalize_name

    wanted = normalize_name(name)
    return wanted in {normalize_name(x) for x in (approval.actor_subject, approval.actor_email or "") if x}


def _count_approvals(ctx: GovernanceContext, policy: Policy, mine: Sequence[Decision], rnd: _Round,
                     everything: Sequence[Decision]) -> tuple[list[Decision], list[tuple[Decision, str]]]:
    """This round's approvals that still count (one per person), and those that no longer do."""
    latest_roles: dict[str, frozenset[str]] = {}
    for d in sorted(everything, key=lambda d: d.seq):  # the newest roles the ledger has seen per actor
        latest_roles[d.actor_key] = frozenset(d.actor_roles)
    requester = next((d for d in mine if d.action == ledger.REQUEST), None)
    counted: list[Decision] = []
    void: list[tuple[Decision, str]] = []
    people: set[str] = set()
    for approval in rnd.approvals:
        roles = latest_roles.get(approval.actor_key, frozenset(approval.actor_roles))
        why = _still_counts(ctx, policy, approval, roles, requester)
        person = person_of(ctx, approval.actor_issuer, approval.actor_subject, approval.actor_email)
        if why is None and person in people:
            why = f"{approval.actor_name} already approved under another account."
        if why is None:
            people.add(person)
            counted.append(approval)
        else:
            void.append((approval, why))
    stale = [d for d in mine if d.action == ledger.APPROVE and d not in rnd.approvals]
    void += [(d, "It was given before the evidence was refreshed.") for d in stale]
    return counted, void


def _later_rows_of_actors(conn: Connection, rows: Sequence[Decision]) -> list[Decision]:
    """Rows of other requests by the approvers of ``rows``, newer than their approvals: the roles
    the ledger saw them with last (an approval by someone seen since without the right stops counting)."""
    approvers = {(d.actor_issuer, d.actor_subject) for d in rows if d.action == ledger.APPROVE}
    if not approvers:
        return []
    first = min(d.seq for d in rows)
    ids = {d.request_id for d in rows}
    actor_pair = sa.tuple_(ledger.LEDGER.c.actor_issuer, ledger.LEDGER.c.actor_subject)
    later = ledger.decisions(conn, ledger.LEDGER.c.seq > first, actor_pair.in_(list(approvers)))
    return [d for d in later if d.request_id not in ids]


def list_requests(ctx: GovernanceContext, status: str | None = None,
                  model: str | None = None) -> list[PromotionRequest]:
    """Requests, newest first, optionally of one status (open/approved/rejected/cancelled) and model."""
    def query(conn: Connection) -> tuple[list[RequestRow], list[Decision]]:
        conditions = []
        if status is not None:
            conditions.append(ledger.REQUESTS.c.status == status)
        if model is not None:
            conditions.append(ledger.REQUESTS.c.model == model)
        rows = [ledger.request_from_row(r) for r in conn.execute(
            sa.select(ledger.REQUESTS).where(*conditions)
            .order_by(ledger.REQUESTS.c.created_at.desc(), ledger.REQUESTS.c.id)).mappings()]
        ids = [r.id for r in rows]
        found: list[Decision] = []
        for start in range(0, len(ids), 500):
            found += ledger.decisions(conn, ledger.LEDGER.c.request_id.in_(ids[start:start + 500]))
        return rows, found + _later_rows_of_actors(conn, found)
    rows, decisions = ledger.read(ctx.engine, query)
    return _assemble(ctx, rows, decisions)


def get_request(ctx: GovernanceContext, request_id: str) -> PromotionRequest:
    def query(conn: Connection) -> tuple[RequestRow | None, list[Decision]]:
        mine = ledger.decisions_of_request(conn, request_id)
        return ledger.get_request_row(conn, request_id), mine + _later_rows_of_actors(conn, mine)
    row, decisions = ledger.read(ctx.engine, query)
    if row is None:
        raise NotFound(f"Promotion request {request_id!r} does not exist.", "It may have been mistyped.")
    return _assemble(ctx, [row], decisions)[0]


def evidence_snapshot(ctx: GovernanceContext, digest: str) -> Evidence | None:
    """The evidence recorded under ``digest`` (with a request or a decision), verified against the
    digest (``ledger.TamperedRecord`` if its body was edited)."""
    body = ledger.read(ctx.engine, lambda c: ledger.load_evidence(c, digest))
    return None if body is None else Evidence.from_dict(json.loads(body))


def review_resource(ctx: GovernanceContext, request: PromotionRequest | RequestRow) -> Resource:
    """The facts authorization needs about a request: owner tag, version creator, requester, policy.

    The requester and the person a bot acted for come from the request's own ledger row, its hash
    checked, never from the request table a database user could edit.
    """
    first = ledger.read(ctx.engine, lambda c: ledger.verified_request_decision(c, request.id))
    canonical_version(first.version)  # a row an older tower wrote as "03" is never decided on
    owner = ctx.registry.model_tags(first.model).get("owner")
    extra: dict[str, Any] = {}
    if "on_behalf_of" in Resource.__dataclass_fields__:
        extra["on_behalf_of"] = first.on_behalf_of
    if "requester_person" in Resource.__dataclass_fields__:
        extra["requester_person"] = person_of(ctx, first.actor_issuer, first.actor_subject, first.actor_email)
    return Resource(model=first.model, version=first.version, stage=first.to_stage, owner=owner,
                    creator=ctx.registry.version_creator(first.model, first.version),
                    requester=(first.actor_issuer, first.actor_subject),
                    policy=ctx.policy(first.model), **extra)


def allowed_actions(ctx: GovernanceContext, actor: Actor, request: PromotionRequest) -> frozenset[Action]:
    """What ``actor`` may do on ``request`` now (to show controls; the writes check again)."""
    if not request.is_open:
        return frozenset()
    resource = review_resource(ctx, request)
    return frozenset(a for a in (Action.APPROVE, Action.REJECT, Action.CANCEL_REQUEST, Action.OVERRIDE_GATE)
                     if allowed(actor, a, resource))


# ----------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------
def governed_holders(ctx: GovernanceContext, model: str) -> dict[str, str | None]:
    """Stage -> holder as the tower governs it: the ledger's latest promotion of each stage it has
    promoted (the registry may lag behind a pending projection, or have been changed outside the
    tower; repair makes it follow), the registry's holder for the others."""
    holders = ctx.current_holders(model)

    def latest(conn: Connection) -> dict[str, str]:
        found = {stage: ledger.latest_promotion(conn, model, stage) for stage in holders}
        return {stage: d.version for stage, d in found.items() if d is not None}
    return {**holders, **ledger.read(ctx.engine, latest)}


def _stages_of(holders: dict[str, str | None], version: str) -> str | None:
    held = [stage for stage, holder in holders.items() if holder == version]
    return ", ".join(held) if held else None


def _actor_fields(actor: Actor) -> dict[str, Any]:
    return {"actor_name": actor.name, "actor_issuer": actor.issuer, "actor_subject": actor.subject,
            "actor_email": actor.email, "actor_roles": sorted(actor.roles)}


def _decided_message(decision: Decision) -> str:
    verb = _VERBS.get(decision.action, decision.action)
    return (f"This request was already {verb} by {decision.actor_name} at "
            f"{ledger.iso(decision.recorded_at)} (decision {decision.decision_id[:12]}).")


def _settled(conn: Connection, actor: Actor, request_id: str,
             actions: tuple[str, ...]) -> tuple[RequestRow, Decision | None]:
    """The request under the lock, and the decision an identical retry should get back.

    Raises NotFound for an unknown request and DecisionConflict when it was resolved by someone
    else, or by this actor in another way.
    """
    row = ledger.get_request_row(conn, request_id)
    if row is None:
        raise NotFound(f"Promotion request {request_id!r} does not exist.")
    if row.status != ledger.OPEN:
        resolution = ledger.decision_by_id(conn, row.resolution_id or "")
        if resolution is None:  # pragma: no cover - resolve_request always names its decision
            raise Conflict(f"Promotion request {request_id} is {row.status}.")
        if resolution.action in actions and actor.is_same_person(resolution.actor_issuer, resolution.actor_subject):
            return row, resolution
        raise DecisionConflict(_decided_message(resolution), resolution, "Reload the request to see the decision.")
    if ledger.APPROVE in actions:
        rnd = current_round(ledger.decisions_of_request(conn, request_id))
        mine = ledger.decision_by_id(conn, ledger.approval_decision_id(request_id, actor.issuer, actor.subject,
                                                                       rnd.number))
        if mine is not None:
            return row, mine
    return row, None


def _request_row(ctx: GovernanceContext, request_id: str) -> RequestRow:
    row = ledger.read(ctx.engine, lambda c: ledger.get_request_row(c, request_id))
    if row is None:
        raise NotFound(f"Promotion request {request_id!r} does not exist.")
    return row


def _retry_answer(ctx: GovernanceContext, actor: Actor, request_id: str, actions: tuple[str, ...]) -> Outcome | None:
    """Before collecting evidence: an identical retry answers at once, a lost race fails at once."""
    _, settled = ledger.read(ctx.engine, lambda c: _settled(c, actor, request_id, actions))
    return None if settled is None else Outcome(get_request(ctx, request_id), settled, created=False)


@write_step()
def _project(ctx: GovernanceContext, decision: Decision) -> str | None:
    """Project a committed decision; the error text if the registry could not take it."""
    try:
        projection.apply_projection(ctx, decision)
    except TowerError as exc:
        _log.warning("Projection of decision %s failed: %s", decision.decision_id, exc)
        return f"{exc.message} The decision is recorded; the registry will be updated by the repair pass."
    return None


@write_step()
def _finish(ctx: GovernanceContext, request_id: str, decision: Decision, created: bool) -> Outcome:
    error = _project(ctx, decision) if created else None
    return Outcome(get_request(ctx, request_id), decision, created, error)


# ----------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _RequestPlan:
    kind: str
    model: str
    version: str
    stage: str
    holders: dict[str, str | None]
    reason: str
    evidence: Evidence
    on_behalf_of: str | None = None


def _prepare_request(ctx: GovernanceContext, actor: Actor, action: Action, kind: str, model: str,
                     version: str, stage: str, reason: str, on_behalf_of: str | None = None) -> _RequestPlan:
    stage = ctx.stage_name(stage)
    version = canonical_version(version)
    on_behalf_of = check_text(on_behalf_of, "on-behalf-of name", required=False).strip() or None
    if on_behalf_of is not None and len(on_behalf_of) > 320:
        raise InvalidInput("The on-behalf-of name is longer than 320 characters; give the person's user name "
                           "or e-mail.")
    if on_behalf_of is not None and getattr(actor, "kind", "person") != "service":
        raise InvalidInput("Only a service account requests on behalf of someone; a person requests as themselves.")
    owner = ctx.registry.model_tags(model).get("owner")  # NotFound for an unknown model
    authorize(actor, action, Resource(model=model, version=version, stage=stage, owner=owner,
                                      policy=ctx.policy(model)))
    reason = check_text(reason, "reason", required=True)
    holders = governed_holders(ctx, model)
    if holders.get(stage) == version:
        raise Conflict(f"Version {version} of '{model}' already holds {stage}.")
    evidence = collect_evidence(ctx, model, version, stage, holder_version=holders.get(stage), holders_known=True)
    return _RequestPlan(kind, model, version, stage, holders, reason, evidence, on_behalf_of)


@write_step(Action.REQUEST_PROMOTION, Action.ROLLBACK_REQUEST)
def _record_request(ctx: GovernanceContext, actor: Actor, plan: _RequestPlan) -> Outcome:
    request_id = secrets.token_hex(16)
    body, digest = plan.evidence.to_json(), plan.evidence.digest

    def write(conn: Connection) -> tuple[str, Decision, bool]:
        existing = ledger.open_request_for(conn, plan.model, plan.version, plan.stage)
        if existing is not None:
            if existing.kind == plan.kind and actor.is_same_person(existing.requester_issuer,
                                                                   existing.requester_subject):
                first = ledger.decision_by_id(conn, ledger.request_decision_id(existing.id))
                assert first is not None
                return existing.id, first, False
            raise Conflict(
                f"Request {existing.id} to promote version {plan.version} of '{plan.model}' to {plan.stage} is "
                f"already open (made by {existing.requester_name} at {ledger.iso(existing.created_at)}).",
                "Review or cancel that request instead.")
        now = ctx.now()
        ledger.store_evidence(conn, body, digest, now)
        ledger.insert_request(
            conn, request_id=request_id, kind=plan.kind, model=plan.model, version=plan.version, stage=plan.stage,
            previous_version=plan.holders.get(plan.stage), requester_issuer=actor.issuer,
            requester_subject=actor.subject, requester_name=actor.name, reason=plan.reason,
            evidence_digest=digest, created_at=now, on_behalf_of=plan.on_behalf_of)
        decision = ledger.append_decision(
            conn, decision_id=ledger.request_decision_id(request_id), request_id=request_id, action=ledger.REQUEST,
            model=plan.model, version=plan.version, from_stage=_stages_of(plan.holders, plan.version),
            to_stage=plan.stage, previous_version=plan.holders.get(plan.stage), **_actor_fields(actor),
            comment=plan.reason, override_reason=None, overridden_gates=(), evidence_digest=digest, recorded_at=now,
            on_behalf_of=plan.on_behalf_of)
        return request_id, decision, True

    rid, decision, created = ledger.run_locked(ctx.engine, write)
    return _finish(ctx, rid, decision, created)


@write_action(Action.REQUEST_PROMOTION)
def request_promotion(ctx: GovernanceContext, actor: Actor, model: str, version: str, to_stage: str,
                      reason: str, on_behalf_of: str | None = None) -> Outcome:
    """Ask for ``version`` of ``model`` to hold ``to_stage`` ("Production", "Staging"), with a reason.

    Forbidden unless the actor owns the model (owner tag), is listed in the policy's requesters,
    or is an admin; Conflict if the version already holds the stage or another request for it is
    open (the same requester repeating it gets the open request back, ``created=False``). A service
    account may name the person who triggered it (``on_behalf_of``), who may then not approve it.
    ``version`` must be canonical ("3", never "03").
    """
    plan = _prepare_request(ctx, actor, Action.REQUEST_PROMOTION, PROMOTION, model, version, to_stage, reason,
                            on_behalf_of)
    return _record_request(ctx, actor, plan)


def previous_holder(ctx: GovernanceContext, model: str, stage: str) -> str | None:
    """The version that held ``stage`` before the current holder, per the ledger."""
    stage = ctx.stage_name(stage)
    latest = ledger.read(ctx.engine, lambda c: ledger.latest_promotion(c, model, stage))
    return None if latest is None else latest.previous_version


@write_action(Action.ROLLBACK_REQUEST)
def rollback_request(ctx: GovernanceContext, actor: Actor, model: str, stage: str, reason: str) -> Outcome:
    """A new request to give ``stage`` back to the version the tower's last promotion replaced."""
    stage = ctx.stage_name(stage)
    target = previous_holder(ctx, model, stage)
    if target is None:
        raise NotFound(f"The ledger records no earlier holder of {stage} for '{model}' to roll back to.")
    plan = _prepare_request(ctx, actor, Action.ROLLBACK_REQUEST, ROLLBACK, model, target, stage, reason)
    return _record_request(ctx, actor, plan)


@write_action(Action.CANCEL_REQUEST)
def cancel_request(ctx: GovernanceContext, actor: Actor, request_id: str, comment: str = "") -> Outcome:
    """The requester withdraws an open request."""
    row = _request_row(ctx, request_id)
    authorize(actor, Action.CANCEL_REQUEST, Resource(
        model=row.model, version=row.version, stage=row.stage,
        requester=(row.requester_issuer, row.requester_subject), policy=ctx.policy(row.model)))
    comment = check_text(comment, "comment", required=False)
    return _record_resolution(ctx, actor, row, ledger.CANCEL, comment, row.evidence_digest, None)


# ----------------------------------------------------------------------------------------------
# Decisions
# ----------------------------------------------------------------------------------------------
class StaleRequest(Conflict):
    """The request's evidence no longer describes the present: a decision on it is refused."""


def _staleness(ctx: GovernanceContext, request: PromotionRequest, holders: dict[str, str | None]) -> str | None:
    """Why deciding on ``request`` now would decide on the past (None: it is current)."""
    held_then = request.previous_version
    held_now = holders.get(request.stage)
    if held_then != held_now:
        then = f"v{held_then}" if held_then else "nobody"
        now = f"v{held_now}" if held_now else "nobody"
        return (f"{request.stage} of '{request.model}' was held by {then} when this evidence was taken and is held "
                f"by {now} now: the comparison is out of date.")
    max_age = getattr(ctx.policy(request.model), "evidence_max_age", None)
    if max_age is not None and request.evidence_digest:
        evidence = evidence_snapshot(ctx, request.evidence_digest)
        collected = None if evidence is None else ledger.parse_iso(evidence.collected_at)
        if collected is not None and ctx.now() - collected > max_age:
            age_days = (ctx.now() - collected).total_seconds() / 86400
            return (f"The evidence was collected {age_days:.1f} days ago, {collected:%Y-%m-%d %H:%M} UTC; the policy "
                    f"of '{request.model}' accepts evidence up to {max_age.total_seconds() / 86400:g} days old.")
    return None


_REFRESH_HINT = "Press “Refresh evidence” to take a new snapshot (the approvals so far are reset), then decide."


def staleness(ctx: GovernanceContext, request: PromotionRequest) -> str | None:
    """Why a decision on ``request`` would be refused as stale now (None: it may be decided)."""
    return _staleness(ctx, request, governed_holders(ctx, request.model))


def _refuse_if_stale(ctx: GovernanceContext, actor: Actor, request: PromotionRequest,
                     holders: dict[str, str | None], actions: tuple[str, ...]) -> Outcome | None:
    """Refuse a decision on out-of-date evidence. The holder may have changed because a rival's
    decision on this very request just landed: then the answer is the settled one (who decided
    first, or this actor's own identical retry), never "refresh" a request that is closed."""
    why = _staleness(ctx, request, holders)
    if why is None:
        return None
    settled = _retry_answer(ctx, actor, request.id, actions)  # raises DecisionConflict if a rival decided
    if settled is not None:
        return settled
    raise StaleRequest(f"This request cannot be decided as it stands. {why}", _REFRESH_HINT)


@write_step(Action.REJECT, Action.CANCEL_REQUEST)
def _record_resolution(ctx: GovernanceContext, actor: Actor, row: RequestRow, action: str, comment: str,
                       digest: str | None, evidence: Evidence | None) -> Outcome:
    holders = governed_holders(ctx, row.model)

    def write(conn: Connection) -> tuple[Decision, bool]:
        _, settled = _settled(conn, actor, row.id, (action,))
        if settled is not None:
            return settled, False
        now = ctx.now()
        if evidence is not None and digest is not None:
            ledger.store_evidence(conn, evidence.to_json(), digest, now)
        decision = ledger.append_decision(
            conn, decision_id=ledger.resolution_decision_id(row.id), request_id=row.id, action=action,
            model=row.model, version=row.version, from_stage=_stages_of(holders, row.version), to_stage=row.stage,
            previous_version=holders.get(row.stage), **_actor_fields(actor), comment=comment,
            override_reason=None, overridden_gates=(), evidence_digest=digest, recorded_at=now)
        ledger.resolve_request(conn, decision)
        return decision, True

    decision, created = ledger.run_locked(ctx.engine, write)
    return _finish(ctx, row.id, decision, created)


@write_action(Action.REJECT)
def reject(ctx: GovernanceContext, actor: Actor, request_id: str, comment: str) -> Outcome:
    """A reviewer turns the request down; a comment saying why is required.

    Refused (StaleRequest) when the stage's holder changed since the evidence was taken, or the
    evidence is older than the policy's ``evidence_max_age``: refresh it first.
    """
    row = _request_row(ctx, request_id)
    authorize(actor, Action.REJECT, review_resource(ctx, row))
    comment = check_text(comment, "comment explaining the rejection", required=True)
    retry = _retry_answer(ctx, actor, request_id, (ledger.REJECT,))
    if retry is not None:
        return retry
    settled = _refuse_if_stale(ctx, actor, get_request(ctx, request_id), governed_holders(ctx, row.model),
                               (ledger.REJECT,))
    if settled is not None:
        return settled
    evidence = collect_evidence(ctx, row.model, row.version, row.stage)
    return _record_resolution(ctx, actor, row, ledger.REJECT, comment, evidence.digest, evidence)


@write_action(Action.REJECT)
def refresh_evidence(ctx: GovernanceContext, actor: Actor, request_id: str) -> Outcome:
    """A reviewer re-snapshots the evidence against the current holder: a new ledger row, and the
    approvals given so far no longer count (they were given on the old evidence)."""
    row = _request_row(ctx, request_id)
    authorize(actor, Action.REJECT, review_resource(ctx, row))
    holders = governed_holders(ctx, row.model)
    if holders.get(row.stage) == row.version:
        raise Conflict(f"Version {row.version} of '{row.model}' already holds {row.stage}: there is nothing to decide.",
                       "Cancel or reject the request.")
    evidence = collect_evidence(ctx, row.model, row.version, row.stage, holder_version=holders.get(row.stage),
                                holders_known=True)
    return _record_refresh(ctx, actor, row, evidence, holders)


@write_step(Action.REJECT)
def _record_refresh(ctx: GovernanceContext, actor: Actor, row: RequestRow, evidence: Evidence,
                    holders: dict[str, str | None]) -> Outcome:
    def write(conn: Connection) -> tuple[Decision, bool]:
        current = ledger.get_request_row(conn, row.id)
        if current is None or current.status != ledger.OPEN:
            _settled(conn, actor, row.id, ())  # raises the conflict naming who resolved it
        rnd = current_round(ledger.decisions_of_request(conn, row.id))
        now = ctx.now()
        ledger.store_evidence(conn, evidence.to_json(), evidence.digest, now)
        decision = ledger.append_decision(
            conn, decision_id=ledger.refresh_decision_id(row.id, rnd.number + 1), request_id=row.id,
            action=ledger.REFRESH, model=row.model, version=row.version, from_stage=_stages_of(holders, row.version),
            to_stage=row.stage, previous_version=holders.get(row.stage), **_actor_fields(actor),
            comment="evidence refreshed", override_reason=None, overridden_gates=(),
            evidence_digest=evidence.digest, recorded_at=now)
        return decision, True

    decision, created = ledger.run_locked(ctx.engine, write)
    return _finish(ctx, row.id, decision, created)


@write_step(Action.APPROVE)
def _record_approval(ctx: GovernanceContext, actor: Actor, row: RequestRow, policy: Policy, evidence: Evidence,
                     holders: dict[str, str | None], comment: str, override_reason: str | None,
                     overridden: tuple[str, ...], basis_id: str | None) -> Outcome:
    body, digest = evidence.to_json(), evidence.digest

    def write(conn: Connection) -> tuple[Decision, bool]:
        _, settled = _settled(conn, actor, row.id, (ledger.APPROVE, ledger.PROMOTE))
        if settled is not None:
            return settled, False
        mine = ledger.decisions_of_request(conn, row.id)
        rnd = current_round(mine)
        if rnd.basis is None or rnd.basis.decision_id != basis_id:
            raise StaleRequest("The evidence of this request was refreshed while you were deciding.",
                               "Reload the request and look at the new evidence.")
        counted, _ = _count_approvals(ctx, policy, mine, rnd, mine + _later_rows_of_actors(conn, mine))
        people = {person_of(ctx, d.actor_issuer, d.actor_subject, d.actor_email) for d in counted}
        if _actor_person(ctx, actor) in people:
            raise Conflict(f"{actor.name} has already approved this request under another account.",
                           "N-of-M counts people, not accounts.")
        final = len(people) + 1 >= policy.approvals_required
        now = ctx.now()
        ledger.store_evidence(conn, body, digest, now)
        decision = ledger.append_decision(
            conn,
            decision_id=(ledger.resolution_decision_id(row.id) if final
                         else ledger.approval_decision_id(row.id, actor.issuer, actor.subject, rnd.number)),
            request_id=row.id, action=ledger.PROMOTE if final else ledger.APPROVE, model=row.model,
            version=row.version, from_stage=_stages_of(holders, row.version), to_stage=row.stage,
            previous_version=holders.get(row.stage), **_actor_fields(actor), comment=comment,
            override_reason=override_reason, overridden_gates=overridden, evidence_digest=digest, recorded_at=now)
        if final:
            ledger.resolve_request(conn, decision)
        return decision, True

    decision, created = ledger.run_locked(ctx.engine, write)
    return _finish(ctx, row.id, decision, created)


@write_action(Action.APPROVE, Action.OVERRIDE_GATE)
def approve(ctx: GovernanceContext, actor: Actor, request_id: str, comment: str = "",
            override_reason: str | None = None) -> Outcome:
    """Approve; the approval completing the policy's quorum promotes (moves the alias/stage).

    Evidence is collected afresh and its digest recorded with the decision. If a gate failed or
    has no data, approving needs ``override_reason`` and the override_gate permission, and is
    recorded as an override naming the gates. Refused (StaleRequest) when the stage's holder
    changed since the evidence was taken or the evidence is too old. When the quorum completes,
    the earlier approvals are counted again under the current policy and their approvers' latest
    known roles: one that no longer counts does not complete it.
    """
    row = _request_row(ctx, request_id)
    resource = review_resource(ctx, row)
    authorize(actor, Action.APPROVE, resource)
    comment = check_text(comment, "comment", required=False)
    override_reason = check_text(override_reason, "override reason", required=False) or None
    retry = _retry_answer(ctx, actor, request_id, (ledger.APPROVE, ledger.PROMOTE))
    if retry is not None:
        return retry
    holders = governed_holders(ctx, row.model)
    request = get_request(ctx, request_id)
    settled = _refuse_if_stale(ctx, actor, request, holders, (ledger.APPROVE, ledger.PROMOTE))
    if settled is not None:
        return settled
    evidence = collect_evidence(ctx, row.model, row.version, row.stage, holder_version=holders.get(row.stage),
                                holders_known=True)
    overridden = tuple(g.name for g in evidence.failing)
    if overridden:
        if override_reason is None or not override_reason.strip():
            raise InvalidInput(f"These gates did not pass: {', '.join(overridden)}. Approving anyway is an "
                               "override and needs a written reason.")
        authorize(actor, Action.OVERRIDE_GATE, resource)
    policy = resource.policy
    assert policy is not None
    return _record_approval(ctx, actor, row, policy, evidence, holders, comment,
                            override_reason if overridden else None, overridden,
                            None if request.basis is None else request.basis.decision_id)
