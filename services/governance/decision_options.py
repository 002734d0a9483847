"""What a reviewer may do on a request, known before they type anything.

The review page offers exactly these controls and says why the others are absent. It asks the
same rules the writes apply (``authz.refusal``, the request's standing override, fresh evidence),
so an action offered here is one the service would accept now; the write checks again anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.auth.identity import Actor
from services.governance.authz import Action, refusal
from services.governance.context import GovernanceContext
from services.governance.gate_check import candidate_evidence
from services.governance.ledger_rows import Decision
from services.governance.review_state import (
    PromotionRequest,
    governed_holders,
    review_resource,
    standing_override,
)
from services.governance.staleness import staleness


@dataclass(frozen=True)
class DecisionOptions:
    may_approve: bool
    may_reject: bool
    needs_override: tuple[str, ...]  # gates this approval would override (empty: an ordinary approval)
    may_override: bool
    approve_refusal: str | None = None  # why approving is not offered, in words
    reject_refusal: str | None = None
    standing_override: Decision | None = None  # the override given earlier in this round
    stale: str | None = None  # why the evidence must be refreshed before anyone decides
    failing: tuple[str, ...] = ()  # gates that did not pass on fresh evidence


def _override_refusal(needs: tuple[str, ...], why: str) -> str:
    return (f"These gates did not pass: {', '.join(needs)}. Approving past them is an override, and {why} "
            "Once someone who may override has approved with a written reason, your approval counts as an "
            "ordinary one.")


def decision_options(ctx: GovernanceContext, actor: Actor, request: PromotionRequest) -> DecisionOptions:
    """What ``actor`` may do on ``request`` now, with the reasons for what they may not."""
    if not request.is_open:
        closed = f"This request is {request.status}."
        return DecisionOptions(False, False, (), False, closed, closed)
    resource = review_resource(ctx, request)
    approve_no = refusal(actor, Action.APPROVE, resource)
    reject_no = refusal(actor, Action.REJECT, resource)
    stale = staleness(ctx, request)
    if stale is not None:
        return DecisionOptions(False, False, (), False, stale, stale, stale=stale)
    holders = governed_holders(ctx, request.model)
    evidence = candidate_evidence(ctx, request.model, request.version, request.stage, holders)
    failing = tuple(g.name for g in evidence.failing)
    standing = standing_override(request.overrides, failing) if failing else None
    needs = failing if standing is None else ()
    override_no = refusal(actor, Action.OVERRIDE_GATE, resource) if needs else None
    if approve_no is None and override_no is not None:
        approve_no = _override_refusal(needs, override_no.rstrip(".") + ".")
    return DecisionOptions(
        may_approve=approve_no is None, may_reject=reject_no is None, needs_override=needs,
        may_override=bool(needs) and override_no is None, approve_refusal=approve_no, reject_refusal=reject_no,
        standing_override=standing, failing=failing)
