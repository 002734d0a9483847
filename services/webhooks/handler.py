"""What a verified ``model_version.created`` delivery does.

A model is governed when tower.yaml gives it a mapping (``models:``) or a policy of its own
(``policies:``); the ``default`` policy alone does not make every model in the registry one of
ours. For a governed model the gates of its policy are evaluated by ``gate_check.gate_preview``,
the code ``tower gate`` and a promotion request use. When the policy says ``auto_request: <Stage>``
and every gate passes (a gate without data counting as the policy's ``no_data`` says), the request
is filed with ``promotion.request_promotion`` as the receiver's service account, which records
its own evidence as every request does. Without ``auto_request`` the gates are evaluated for every
configured stage and the verdicts kept with the delivery; nothing is filed.

Each delivery id is handled once (``deliveries``). An outage (registry, warehouse, tower state)
releases the delivery and answers 503, so MLflow's retry handles it again; a refusal on the facts
(unknown version, a request already open by someone else, a forbidden account) is recorded as the
outcome and answered 200, since a retry would be refused the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from services.auth.identity import Actor
from services.errors import RegistryUnavailable, TowerError, TowerStateUnavailable, WarehouseUnavailable
from services.governance.context import GovernanceContext
from services.governance.evidence import Evidence
from services.governance.gate_check import gate_preview
from services.governance.gate_report import as_text, passed
from services.governance.policy import policies
from services.settings import Settings
from services.webhooks import deliveries
from services.webhooks.events import ModelVersionCreated

_log = logging.getLogger(__name__)
OUTAGES = (RegistryUnavailable, WarehouseUnavailable, TowerStateUnavailable)


@dataclass(frozen=True)
class Handled:
    status: int  # the HTTP answer: 200 handled (or nothing to do), 503 try again later
    outcome: str  # what happened, in words (logged, answered, kept with the delivery)
    request_id: str | None = None


def is_governed(settings: Settings, model: str) -> bool:
    """Whether tower.yaml maps the model or gives it a policy of its own."""
    return model in settings.models or model in policies(settings).per_model


def _headline(evidence: Evidence) -> str:
    return as_text(evidence).splitlines()[0]


def _act(ctx: GovernanceContext, actor: Actor, delivery_id: str,
         event: ModelVersionCreated) -> tuple[str, str | None]:
    stage = ctx.policy(event.model).auto_request
    if stage is None:
        verdicts = [_headline(gate_preview(ctx, event.model, event.version, s)) for s in ctx.settings.stage_aliases]
        return "nothing filed (the policy has no auto_request); " + " | ".join(verdicts), None
    evidence = gate_preview(ctx, event.model, event.version, stage)
    if not passed(evidence):
        return f"nothing filed: {_headline(evidence)}", None
    from services.governance.promotion import request_promotion  # the write path, only when there is one

    reason = (f"Requested automatically: MLflow registered version {event.version} (webhook delivery "
              f"{delivery_id}) and every gate of the policy passed.")
    outcome = request_promotion(ctx, actor, event.model, event.version, stage, reason)
    rid = outcome.request.id
    said = f"filed request {rid}" if outcome.created else f"request {rid} was already open; nothing new recorded"
    if outcome.projection_error:
        said += f" (registry projection pending: {outcome.projection_error})"
    return f"{said}: {_headline(evidence)}", rid


def _run(ctx: GovernanceContext, actor: Actor, delivery_id: str, event: ModelVersionCreated,
         token: str) -> Handled:
    try:
        outcome, request_id = _act(ctx, actor, delivery_id, event)
    except OUTAGES as exc:
        deliveries.release(ctx.engine, delivery_id, token)
        return Handled(503, f"not handled, MLflow's retry will try again: {exc.message}")
    except TowerError as exc:  # refused on the facts: a retry would be refused the same way
        outcome, request_id = f"refused: {exc.message}", None
    except BaseException:
        deliveries.release(ctx.engine, delivery_id, token)
        raise
    if not deliveries.finish(ctx.engine, delivery_id, token, now=ctx.now(), outcome=outcome, request_id=request_id):
        _log.warning("delivery %s was taken over while it was handled; the taker records its outcome", delivery_id)
    return Handled(200, outcome, request_id)


def handle_version_created(ctx: GovernanceContext, actor: Actor, delivery_id: str, event: ModelVersionCreated, *,
                           lease: timedelta = deliveries.DEFAULT_LEASE) -> Handled:
    """Handle one verified delivery once (see the module's docstring)."""
    if not is_governed(ctx.settings, event.model):
        return Handled(200, "ignored: the model is not governed (no mapping or policy of its own in tower.yaml)")
    claim = deliveries.claim(ctx.engine, delivery_id, event.event, event.model, event.version, now=ctx.now(),
                             lease=lease)
    if claim.token is None:
        existing = claim.existing
        if existing is not None and existing.status == deliveries.DONE:
            return Handled(200, f"duplicate delivery, already handled: {existing.outcome}", existing.request_id)
        return Handled(503, "this delivery is being handled by another attempt; try again later")
    return _run(ctx, actor, delivery_id, event, claim.token)


def resume_stuck(ctx: GovernanceContext, actor: Actor, *,
                 lease: timedelta = deliveries.DEFAULT_LEASE) -> list[tuple[str, Handled]]:
    """Finish the deliveries a dead process left processing (the receiver runs this at start)."""
    done: list[tuple[str, Handled]] = []
    for row in deliveries.stuck(ctx.engine, now=ctx.now(), lease=lease):
        event = ModelVersionCreated(model=row.model, version=row.version, run_id=None)
        done.append((row.delivery_id, handle_version_created(ctx, actor, row.delivery_id, event, lease=lease)))
    return done
