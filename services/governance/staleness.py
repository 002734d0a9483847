"""When a request's evidence no longer describes the present, so a decision on it is refused.

Read only: the review page asks ``staleness`` to explain the refusal before anyone presses a
button; the write paths in ``promotion`` ask ``stale_reason`` with the holders they decide on.
"""

from __future__ import annotations

from services.errors import Conflict
from services.governance import ledger_rows
from services.governance.context import GovernanceContext
from services.governance.review_state import PromotionRequest, evidence_snapshot, governed_holders


class StaleRequest(Conflict):
    """The request's evidence no longer describes the present: a decision on it is refused."""


def stale_reason(ctx: GovernanceContext, request: PromotionRequest, holders: dict[str, str | None]) -> str | None:
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
        collected = None if evidence is None else ledger_rows.parse_iso(evidence.collected_at)
        if collected is not None and ctx.now() - collected > max_age:
            age_days = (ctx.now() - collected).total_seconds() / 86400
            return (f"The evidence was collected {age_days:.1f} days ago, {collected:%Y-%m-%d %H:%M} UTC; the policy "
                    f"of '{request.model}' accepts evidence up to {max_age.total_seconds() / 86400:g} days old.")
    return None


REFRESH_HINT = "Press “Refresh evidence” to take a new snapshot (the approvals so far are reset), then decide."


def staleness(ctx: GovernanceContext, request: PromotionRequest) -> str | None:
    """Why a decision on ``request`` would be refused as stale now (None: it may be decided)."""
    return stale_reason(ctx, request, governed_holders(ctx, request.model))
