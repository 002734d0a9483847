"""Promotion requests and decisions: the write paths the review pages and the CLI call.

Every function that writes is a ``@write_action``: it resolves the facts (owner tag, version
creator, requester, policy), calls ``authorize`` with the actor's current roles, then records
the decision in the ledger (one serialized transaction) and, after the commit, projects it onto
the registry. A projection that fails does not undo the decision: the outcome says so
(``projection_error``) and ``repair_projections`` re-applies it.

Retries and races: one open request per (model, version, stage); an approver counts once; a
request is resolved (final approval, rejection or cancellation) exactly once. The same actor
repeating the same decision gets the recorded one back (``created=False``); anyone else gets a
``DecisionConflict`` naming who decided first and when.

Reading a request (its round, the approvals that count) is ``review_state``; whether its evidence
is out of date is ``staleness``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from services.auth.identity import Actor
from services.errors import Conflict, NotFound, TowerError
from services.governance import approver_rights, ledger, ledger_rows, ledger_tx, projection
from services.governance.authz import Action, Resource, authorize, write_action, write_step
from services.governance.context import GovernanceContext
from services.governance.evidence import Evidence, collect_evidence
from services.governance.gate_check import candidate_evidence
from services.governance.ledger_rows import Decision, RequestRow
from services.governance.policy import Policy
from services.governance.review_state import (
    PromotionRequest,
    count_approvals,
    current_round,
    get_request,
    governed_holders,
    later_rows_of_actors,
    live_overrides,
    previous_holder,
    review_resource,
    row_person,
    standing_override,
)
from services.governance.staleness import REFRESH_HINT, StaleRequest, stale_reason
from services.governance.validation import InvalidInput, canonical_version, check_text

_log = logging.getLogger(__name__)
PROMOTION, ROLLBACK = "promotion", "rollback"
_VERBS = {ledger_rows.PROMOTE: "approved", ledger_rows.REJECT: "rejected", ledger_rows.CANCEL: "cancelled",
          ledger_rows.APPROVE: "approved", ledger_rows.REQUEST: "requested"}


class DecisionConflict(Conflict):
    """Someone else decided first; ``decision`` is the decision that counts."""

    def __init__(self, message: str, decision: Decision | None = None, hint: str = "") -> None:
        super().__init__(message, hint)
        self.decision = decision


@dataclass(frozen=True)
class Outcome:
    request: PromotionRequest
    decision: Decision
    created: bool  # False: an identical retry; nothing new was recorded
    projection_error: str | None = None  # the decision counts; the registry is behind until repaired

    @property
    def promoted(self) -> bool:
        return self.decision.action == ledger_rows.PROMOTE


# ----------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------
def _stages_of(holders: dict[str, str | None], version: str) -> str | None:
    held = [stage for stage, holder in holders.items() if holder == version]
    return ", ".join(held) if held else None


def _actor_fields(actor: Actor) -> dict[str, Any]:
    # person_key is the verified person claim or the account itself: an e-mail the IdP did not verify
    # never makes two accounts one person (nor one account another person).
    return {"actor_name": actor.name, "actor_issuer": actor.issuer, "actor_subject": actor.subject,
            "actor_email": actor.email, "actor_roles": sorted(actor.roles), "actor_person": actor.person_key}


def _decided_message(decision: Decision) -> str:
    verb = _VERBS.get(decision.action, decision.action)
    return (f"This request was already {verb} by {decision.actor_name} at "
            f"{ledger_rows.iso(decision.recorded_at)} (decision {decision.decision_id[:12]}).")


def _settled(conn: Connection, actor: Actor, request_id: str,
             actions: tuple[str, ...]) -> tuple[RequestRow, Decision | None]:
    """The request under the lock, and the decision an identical retry should get back.

    Raises NotFound for an unknown request and DecisionConflict when it was resolved by someone
    else, or by this actor in another way.
    """
    row = ledger.get_request_row(conn, request_id)
    if row is None:
        raise NotFound(f"Promotion request {request_id!r} does not exist.")
    if row.status != ledger_rows.OPEN:
        resolution = ledger.decision_by_id(conn, row.resolution_id or "")
        if resolution is None:  # pragma: no cover - resolve_request always names its decision
            raise Conflict(f"Promotion request {request_id} is {row.status}.")
        if resolution.action in actions and actor.is_same_person(resolution.actor_issuer, resolution.actor_subject):
            return row, resolution
        raise DecisionConflict(_decided_message(resolution), resolution, "Reload the request to see the decision.")
    if ledger_rows.APPROVE in actions:
        rnd = current_round(ledger.decisions_of_request(conn, request_id))
        mine = ledger.decision_by_id(conn, ledger_rows.approval_decision_id(request_id, actor.issuer, actor.subject,
                                                                       rnd.number))
        if mine is not None:
            return row, mine
    return row, None


def _request_row(ctx: GovernanceContext, request_id: str) -> RequestRow:
    row = ledger_tx.read(ctx.engine, lambda c: ledger.get_request_row(c, request_id))
    if row is None:
        raise NotFound(f"Promotion request {request_id!r} does not exist.")
    return row


def _retry_answer(ctx: GovernanceContext, actor: Actor, request_id: str, actions: tuple[str, ...]) -> Outcome | None:
    """Before collecting evidence: an identical retry answers at once, a lost race fails at once."""
    _, settled = ledger_tx.read(ctx.engine, lambda c: _settled(c, actor, request_id, actions))
    return None if settled is None else Outcome(get_request(ctx, request_id), settled, created=False)


@write_step()
def _project(ctx: GovernanceContext, decision: Decision) -> str | None:
    """Project a committed decision; the error text if the registry could not take it."""
    try:
        projection.apply_projection(ctx, decision)
    except TowerError as exc:
        _log.warning("Projection of decision %s failed: %s", decision.decision_id, exc)
        return (f"{exc.message} The decision is recorded; the next decision or the scheduled `monitor run` "
                "retries it (or `promote repair` now).")
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
    evidence = candidate_evidence(ctx, model, version, stage, holders)
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
                first = ledger.decision_by_id(conn, ledger_rows.request_decision_id(existing.id))
                assert first is not None
                return existing.id, first, False
            raise Conflict(
                f"Request {existing.id} to promote version {plan.version} of '{plan.model}' to {plan.stage} is "
                f"already open (made by {existing.requester_name} at {ledger_rows.iso(existing.created_at)}).",
                "Review or cancel that request instead.")
        now = ctx.now()
        ledger.store_evidence(conn, body, digest, now)
        ledger.insert_request(
            conn, request_id=request_id, kind=plan.kind, model=plan.model, version=plan.version, stage=plan.stage,
            previous_version=plan.holders.get(plan.stage), requester_issuer=actor.issuer,
            requester_subject=actor.subject, requester_name=actor.name, reason=plan.reason,
            evidence_digest=digest, created_at=now, on_behalf_of=plan.on_behalf_of)
        decision = ledger.append_decision(
            conn, decision_id=ledger_rows.request_decision_id(request_id), request_id=request_id,
            action=ledger_rows.REQUEST, model=plan.model, version=plan.version,
            from_stage=_stages_of(plan.holders, plan.version), to_stage=plan.stage,
            previous_version=plan.holders.get(plan.stage), **_actor_fields(actor), comment=plan.reason,
            override_reason=None, overridden_gates=(), evidence_digest=digest, recorded_at=now,
            on_behalf_of=plan.on_behalf_of)
        return request_id, decision, True

    rid, decision, created = ledger_tx.run_locked(ctx.engine, write)
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
    """The requester withdraws an open request (a service account's request: also the model's owner).

    Who requested comes from the request's hash-checked ledger row, never the editable request table."""
    row = _request_row(ctx, request_id)
    authorize(actor, Action.CANCEL_REQUEST, review_resource(ctx, row, deciding=False))
    comment = check_text(comment, "comment", required=False)
    return _record_resolution(ctx, actor, row, ledger_rows.CANCEL, comment, row.evidence_digest, None)


# ----------------------------------------------------------------------------------------------
# Decisions
# ----------------------------------------------------------------------------------------------
def _refuse_if_stale(ctx: GovernanceContext, actor: Actor, request: PromotionRequest,
                     holders: dict[str, str | None], actions: tuple[str, ...]) -> Outcome | None:
    """Refuse a decision on out-of-date evidence. The holder may have changed because a rival's
    decision on this very request just landed: then the answer is the settled one (who decided
    first, or this actor's own identical retry), never "refresh" a request that is closed."""
    why = stale_reason(ctx, request, holders)
    if why is None:
        return None
    settled = _retry_answer(ctx, actor, request.id, actions)  # raises DecisionConflict if a rival decided
    if settled is not None:
        return settled
    raise StaleRequest(f"This request cannot be decided as it stands. {why}", REFRESH_HINT)


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
            conn, decision_id=ledger_rows.resolution_decision_id(row.id), request_id=row.id, action=action,
            model=row.model, version=row.version, from_stage=_stages_of(holders, row.version), to_stage=row.stage,
            previous_version=holders.get(row.stage), **_actor_fields(actor), comment=comment,
            override_reason=None, overridden_gates=(), evidence_digest=digest, recorded_at=now)
        ledger.resolve_request(conn, decision)
        return decision, True

    decision, created = ledger_tx.run_locked(ctx.engine, write)
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
    retry = _retry_answer(ctx, actor, request_id, (ledger_rows.REJECT,))
    if retry is not None:
        return retry
    settled = _refuse_if_stale(ctx, actor, get_request(ctx, request_id), governed_holders(ctx, row.model),
                               (ledger_rows.REJECT,))
    if settled is not None:
        return settled
    evidence = collect_evidence(ctx, row.model, row.version, row.stage)
    return _record_resolution(ctx, actor, row, ledger_rows.REJECT, comment, evidence.digest, evidence)


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
    evidence = candidate_evidence(ctx, row.model, row.version, row.stage, holders)
    return _record_refresh(ctx, actor, row, evidence, holders)


@write_step(Action.REJECT)
def _record_refresh(ctx: GovernanceContext, actor: Actor, row: RequestRow, evidence: Evidence,
                    holders: dict[str, str | None]) -> Outcome:
    def write(conn: Connection) -> tuple[Decision, bool]:
        current = ledger.get_request_row(conn, row.id)
        if current is None or current.status != ledger_rows.OPEN:
            _settled(conn, actor, row.id, ())  # raises the conflict naming who resolved it
        rnd = current_round(ledger.decisions_of_request(conn, row.id))
        now = ctx.now()
        ledger.store_evidence(conn, evidence.to_json(), evidence.digest, now)
        decision = ledger.append_decision(
            conn, decision_id=ledger_rows.refresh_decision_id(row.id, rnd.number + 1), request_id=row.id,
            action=ledger_rows.REFRESH, model=row.model, version=row.version,
            from_stage=_stages_of(holders, row.version), to_stage=row.stage, previous_version=holders.get(row.stage),
            **_actor_fields(actor),
            comment="evidence refreshed", override_reason=None, overridden_gates=(),
            evidence_digest=evidence.digest, recorded_at=now)
        return decision, True

    decision, created = ledger_tx.run_locked(ctx.engine, write)
    return _finish(ctx, row.id, decision, created)


@write_step(Action.APPROVE)
def _record_approval(ctx: GovernanceContext, actor: Actor, row: RequestRow, policy: Policy, evidence: Evidence,
                     holders: dict[str, str | None], comment: str, override_reason: str | None,
                     overridden: tuple[str, ...], failing: tuple[str, ...], basis_id: str | None) -> Outcome:
    body, digest = evidence.to_json(), evidence.digest

    def write(conn: Connection) -> tuple[Decision, bool]:
        _, settled = _settled(conn, actor, row.id, (ledger_rows.APPROVE, ledger_rows.PROMOTE))
        if settled is not None:
            return settled, False
        mine = ledger.decisions_of_request(conn, row.id)
        rnd = current_round(mine)
        if rnd.basis is None or rnd.basis.decision_id != basis_id:
            raise StaleRequest("The evidence of this request was refreshed while you were deciding.",
                               "Reload the request and look at the new evidence.")
        # The other approvers' rights now: the directory's (asked once per person for this decision), else
        # the newest the ledger has seen. Counted again here, under the lock, on the rows as they stand.
        rights = approver_rights.ApproverRights(approver_rights.directory_for(ctx),
                                                mine + later_rows_of_actors(conn, mine))
        counted, _ = count_approvals(ctx, policy, mine, rnd, rights)
        relies_on_override = bool(failing and not overridden)
        overrides = live_overrides(policy, counted, rights) if relies_on_override else ()
        people = {row_person(ctx, d) for d in counted}
        final = len(people) + 1 >= policy.approvals_required
        if final or relies_on_override:  # deny by default: never complete on rights nobody could confirm
            rights.require_answer()
        if relies_on_override and standing_override(overrides, failing) is None:
            raise Conflict("The override this approval relied on no longer counts (it was withdrawn by a "
                           "refresh, or its author lost the override role).",
                           "Reload the request: approving now needs an override again.")
        if actor.person_key in people:  # the verified person claim, else the account
            raise Conflict(f"{actor.name} has already approved this request under another account.",
                           "N-of-M counts people, not accounts.")
        now = ctx.now()
        ledger.store_evidence(conn, body, digest, now)
        decision = ledger.append_decision(
            conn,
            decision_id=(ledger_rows.resolution_decision_id(row.id) if final
                         else ledger_rows.approval_decision_id(row.id, actor.issuer, actor.subject, rnd.number)),
            request_id=row.id, action=ledger_rows.PROMOTE if final else ledger_rows.APPROVE, model=row.model,
            version=row.version, from_stage=_stages_of(holders, row.version), to_stage=row.stage,
            previous_version=holders.get(row.stage), **_actor_fields(actor), comment=comment,
            override_reason=override_reason, overridden_gates=overridden, evidence_digest=digest, recorded_at=now,
            counted=[d.decision_id for d in counted] if final else None)
        if final:
            ledger.resolve_request(conn, decision)
        return decision, True

    decision, created = ledger_tx.run_locked(ctx.engine, write)
    return _finish(ctx, row.id, decision, created)


@write_action(Action.APPROVE, Action.OVERRIDE_GATE)
def approve(ctx: GovernanceContext, actor: Actor, request_id: str, comment: str = "",
            override_reason: str | None = None) -> Outcome:
    """Approve; the approval completing the policy's quorum promotes (moves the alias/stage).

    Evidence is collected afresh and its digest recorded with the decision. If a gate failed or
    has no data, approving needs ``override_reason`` and the override_gate permission, and is
    recorded as an override naming the gates, once: while that override still counts (its author
    still holds an override role and it covers every gate failing now), the approvals after it are
    ordinary ones, so "2 approvals, admins override" needs one admin and one reviewer. Refused
    (StaleRequest) when the stage's holder changed since the evidence was taken or the evidence is
    too old. When the quorum completes, the earlier approvals are counted again under the current
    policy and their approvers' current rights (the directory's, ``auth.directory``, else the newest
    the ledger has seen): one that no longer counts does not complete it. A directory that cannot
    answer then refuses the decision (``DirectoryUnavailable``), with nothing recorded.
    """
    ctx = approver_rights.for_decision(ctx)  # one directory answer per approver for this whole decision
    row = _request_row(ctx, request_id)
    resource = review_resource(ctx, row)
    authorize(actor, Action.APPROVE, resource)
    comment = check_text(comment, "comment", required=False)
    override_reason = check_text(override_reason, "override reason", required=False) or None
    retry = _retry_answer(ctx, actor, request_id, (ledger_rows.APPROVE, ledger_rows.PROMOTE))
    if retry is not None:
        return retry
    holders = governed_holders(ctx, row.model)
    request = get_request(ctx, request_id)
    settled = _refuse_if_stale(ctx, actor, request, holders, (ledger_rows.APPROVE, ledger_rows.PROMOTE))
    if settled is not None:
        return settled
    evidence = candidate_evidence(ctx, row.model, row.version, row.stage, holders)
    failing = tuple(g.name for g in evidence.failing)
    # An override already given in this round covers these gates: this approval is an ordinary one.
    overridden = () if standing_override(request.overrides, failing) is not None else failing
    if overridden:
        if override_reason is None or not override_reason.strip():
            raise InvalidInput(f"These gates did not pass: {', '.join(overridden)}. Approving anyway is an "
                               "override and needs a written reason.")
        authorize(actor, Action.OVERRIDE_GATE, resource)
    policy = resource.policy
    assert policy is not None
    return _record_approval(ctx, actor, row, policy, evidence, holders, comment,
                            override_reason if overridden else None, overridden, failing,
                            None if request.basis is None else request.basis.decision_id)
