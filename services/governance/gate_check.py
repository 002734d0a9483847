"""The policy's gates for a candidate, evaluated exactly as a promotion request records them.

A request, an approval and a preview (the Promotions page before submitting, and CI asking
whether a version would pass) all take their evidence from :func:`candidate_evidence`, so what
an owner is shown before submitting is what the reviewer will see. A preview records nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.governance.context import GovernanceContext
from services.governance.evidence import Evidence, collect_evidence
from services.governance.review_state import governed_holders
from services.governance.validation import canonical_version


def candidate_evidence(ctx: GovernanceContext, model: str, version: str, stage: str,
                       holders: Mapping[str, str | None]) -> Evidence:
    """The evidence for ``version`` taking ``stage``, compared with the stage's current holder."""
    return collect_evidence(ctx, model, version, stage, holder_version=holders.get(stage), holders_known=True)


def gate_preview(ctx: GovernanceContext, model: str, version: str, stage: str) -> Evidence:
    """What a request for ``version`` of ``model`` to take ``stage`` would record now; records nothing.

    Unknown models and versions raise NotFound; a non-canonical version ("03") InvalidInput."""
    stage = ctx.stage_name(stage)
    version = canonical_version(version)
    ctx.registry.model_tags(model)  # NotFound for an unknown model, before any evidence is read
    return candidate_evidence(ctx, model, version, stage, governed_holders(ctx, model))
