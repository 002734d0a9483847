"""The ledger's projection onto the MLflow registry, written after the ledger commit.

For every decision: one model-version tag ``tower_audit_<decision_id>`` holding the decision as
JSON (a tag per decision, never a shared tag rewritten). For a promotion that is the latest of its
stage in the ledger, also the current-state tags (registered-model tag ``tower_<alias>_holder``,
version tag ``tower_stage``) and then the alias move (or the legacy stage transition, archiving
the previous holder). Everything is read back; only then is the projection recorded in
``governance_projections``. Each write is idempotent (same key, same value), so re-applying a
decision whose projection a crash interrupted loses nothing and doubles nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from services.auth.identity import Actor
from services.errors import RegistryUnavailable, TowerError
from services.governance import ledger, ledger_rows, ledger_tx
from services.governance.authz import Action, authorize, write_action, write_step
from services.governance.authz import Resource as _Resource
from services.governance.canonical import canonical_json, sha256_hex
from services.governance.context import GovernanceContext
from services.governance.ledger_rows import Decision

AUDIT_TAG_PREFIX = "tower_audit_"
STAGE_TAG = "tower_stage"
TAG_VALUE_LIMIT = 5000  # older MLflow servers keep 5,000 characters per tag value (recent ones 100k)
_TRUNCATABLE = ("comment", "override_reason", "actor_name")
_KEY_OK = re.compile(r"^[a-z0-9_]{1,250}$")


def _key(text: str) -> str:
    if not _KEY_OK.match(text):
        raise ValueError(f"registry tag key {text!r} is outside [a-z0-9_]{{1,250}}")
    return text


def audit_tag_key(decision_id: str) -> str:
    return _key(AUDIT_TAG_PREFIX + decision_id)


def holder_tag_key(alias: str) -> str:
    """``tower_<alias>_holder``, the alias folded into [a-z0-9_]."""
    return _key(f"tower_{re.sub(r'[^a-z0-9_]', '_', alias.lower())}_holder"[:250])


def audit_tag_value(decision: Decision, limit: int = TAG_VALUE_LIMIT) -> str:
    """The decision as canonical JSON; long texts truncated to fit ``limit`` characters, with
    their full length and SHA-256 (the ledger keeps the full text)."""
    payload: dict[str, Any] = {
        "decision_id": decision.decision_id, "seq": decision.seq, "request_id": decision.request_id,
        "action": decision.action, "model": decision.model, "version": decision.version,
        "from_stage": decision.from_stage, "to_stage": decision.to_stage,
        "previous_version": decision.previous_version, "actor_name": decision.actor_name,
        "issuer": decision.actor_issuer, "subject": decision.actor_subject, "roles": list(decision.actor_roles),
        "time": ledger_rows.iso(decision.recorded_at), "comment": decision.comment,
        "override_reason": decision.override_reason, "overridden_gates": list(decision.overridden_gates),
        "evidence_digest": decision.evidence_digest, "prev_hash": decision.prev_hash, "hash": decision.hash,
    }
    text = canonical_json(payload)
    for field in _TRUNCATABLE:
        if len(text) <= limit:
            break
        full = payload.get(field)
        if not full:
            continue
        payload.update({f"{field}_truncated": True, f"{field}_length": len(full), f"{field}_sha256": sha256_hex(full)})
        low, high = 0, len(full)  # the longest prefix that fits
        while low < high:
            middle = (low + high + 1) // 2
            payload[field] = full[:middle]
            if len(canonical_json(payload)) <= limit:
                low = middle
            else:
                high = middle - 1
        payload[field] = full[:low]
        text = canonical_json(payload)
    return text


def _stages_held(holders: dict[str, str | None], version: str) -> str:
    held = [stage for stage, holder in holders.items() if holder == version]
    return ", ".join(held) if held else "None"


@write_step()
def _move(ctx: GovernanceContext, model: str, stage: str, version: str) -> None:
    if ctx.settings.use_legacy_stages:
        ctx.registry.transition_stage(model, version, stage, archive_existing_versions=True)
    else:
        ctx.registry.set_alias(model, ctx.settings.stage_aliases[stage], version)


@write_step()
def _reconcile_stage(ctx: GovernanceContext, model: str, stage: str) -> dict[str, Any] | None:
    """Make the registry's holder of ``stage`` the ledger's latest promotion of it (under the
    projection lock, so no other projection moves it meanwhile). None: the tower never promoted it."""
    latest = ledger_tx.read(ctx.engine, lambda c: ledger.latest_promotion(c, model, stage, verified=True))
    if latest is None:
        return None
    alias = ctx.settings.stage_aliases[stage]
    target = latest.version
    before = ctx.current_holders(model)
    ctx.registry.set_model_tag(model, holder_tag_key(alias), target)
    if before.get(stage) != target:
        _move(ctx, model, stage, target)
    holders = ctx.current_holders(model)
    if holders.get(stage) != target:
        raise RegistryUnavailable(f"The registry's holder of {stage} for '{model}' did not read back as version "
                                  f"{target}.", "Run `promote repair` again.")
    for version in {target, before.get(stage), latest.previous_version} - {None}:
        ctx.registry.set_version_tag(model, str(version), STAGE_TAG, _stages_held(holders, str(version)))
    return {"stage": stage, "alias": alias, "version": target, "legacy": ctx.settings.use_legacy_stages,
            "model_tags": {holder_tag_key(alias): target}, "stage_tag": STAGE_TAG}


_log = logging.getLogger(__name__)

HEAD_TAG = "tower_ledger_head"  # registered-model tag: the chain head when the model was last projected


def head_tag_value(decision: Decision) -> str:
    return canonical_json({"seq": decision.seq, "hash": decision.hash, "decision_id": decision.decision_id})


@write_step()
def _write_tag(ctx: GovernanceContext, decision: Decision) -> str:
    key = audit_tag_key(decision.decision_id)
    value = audit_tag_value(decision)
    ctx.registry.set_version_tag(decision.model, decision.version, key, value)
    if ctx.registry.version_tags(decision.model, decision.version).get(key) != value:
        raise RegistryUnavailable(f"The audit tag of decision {decision.decision_id[:12]} did not read back as "
                                  "written.", "Run the projection repair.")
    return key


@write_step()
def _anchor_head(ctx: GovernanceContext, model: str) -> None:
    """Anchor the chain head outside the tower database: a DB admin who deletes or rewrites rows
    cannot also make the registry agree (``audit verify`` compares both)."""
    newest = ledger_tx.read(ctx.engine, ledger.head)
    if newest is not None:
        ctx.registry.set_model_tag(model, _key(HEAD_TAG), head_tag_value(newest))


@dataclass(frozen=True)
class Projected:
    decision_id: str
    tag_key: str
    moved_stage: bool
    recorded: bool  # False: another process recorded it first (nothing doubled)


@write_step()
def _project_locked(ctx: GovernanceContext, decision: Decision) -> Projected:
    key = _write_tag(ctx, decision)
    applied: dict[str, Any] = {"audit_tag": key, "model": decision.model, "version": decision.version}
    moved = False
    if decision.action == ledger_rows.PROMOTE:
        state = _reconcile_stage(ctx, decision.model, decision.to_stage)
        if state is not None and state["version"] == decision.version:
            applied["stage"] = state
            moved = True
    _anchor_head(ctx, decision.model)
    recorded = ledger.record_projection(ctx.engine, decision.decision_id, key, applied, ctx.now())
    return Projected(decision.decision_id, key, moved, recorded)


@write_step()
def apply_projection(ctx: GovernanceContext, decision: Decision) -> Projected:
    """Write the decision's audit tag, make the stage's holder the ledger's latest promotion, anchor
    the chain head, record it; all under the projection lock. Raises a TowerError if the registry
    fails (the decision stays recorded; the repair applies it)."""
    with ledger_tx.projection_lock(ctx.engine):
        # The automatic retry: decisions the registry missed before this one go first, oldest first,
        # so a failed projection converges at the next decision without waiting for a repair.
        for earlier in pending_projections(ctx):
            if earlier.decision_id != decision.decision_id and earlier.seq < decision.seq:
                try:
                    _project_locked(ctx, earlier)
                except TowerError as exc:  # one the registry cannot take must not hold up this one
                    _log.warning("Retried projection of decision %s failed: %s", earlier.decision_id, exc)
        return _project_locked(ctx, decision)


@dataclass(frozen=True)
class RepairReport:
    applied: tuple[str, ...]  # decision ids projected now
    failed: tuple[tuple[str, str], ...]  # (decision id, why)
    already: int  # decisions whose projection was already recorded
    stages_fixed: tuple[str, ...] = ()  # "model: stage -> vN" moved back to the ledger's holder


def pending_projections(ctx: GovernanceContext) -> list[Decision]:
    """Ledger decisions with no recorded projection, oldest first; TamperedRecord if any row of the
    ledger fails its hash (nothing is projected from a ledger someone edited)."""
    return ledger_tx.read(ctx.engine, ledger.unprojected_decisions)


@write_step()
def _apply_pending(ctx: GovernanceContext) -> tuple[list[str], list[tuple[str, str]]]:
    """Project every decision with no recorded projection, oldest first; the caller holds the lock."""
    applied: list[str] = []
    failed: list[tuple[str, str]] = []
    for decision in pending_projections(ctx):
        try:
            if _project_locked(ctx, decision).recorded:
                applied.append(decision.decision_id)
        except TowerError as exc:
            failed.append((decision.decision_id, exc.message))
    return applied, failed


# Who the scheduled job acts as when it retries: a service account of the tower itself.
SCHEDULED_JOB = Actor(issuer="tower", subject="scheduled-job", name="the tower's scheduled job", kind="service")


@write_action(Action.RETRY_PROJECTION)
def retry_pending(ctx: GovernanceContext, actor: Actor = SCHEDULED_JOB) -> RepairReport:
    """The automatic retry (``monitor run`` calls it): apply the decisions the registry missed, under
    the projection lock. Any authenticated actor may run it, the job as its own service account,
    because it decides nothing: it writes only what verified ledger rows already say. Unlike a repair
    it leaves alone a stage moved outside the tower with nothing pending for it; that is reported on
    the audit page for a person to judge. Failures are reported, not raised."""
    authorize(actor, Action.RETRY_PROJECTION, _Resource())
    with ledger_tx.projection_lock(ctx.engine):
        total = ledger_tx.read(ctx.engine, lambda c: len(ledger.projected_ids(c)))
        try:
            applied, failed = _apply_pending(ctx)
        except TowerError as exc:  # a tampered ledger: nothing is projected, and the job says why
            applied, failed = [], [("ledger", exc.message)]
    return RepairReport(applied=tuple(applied), failed=tuple(failed), already=total)


@write_action(Action.REPAIR_PROJECTION)
def repair_projections(ctx: GovernanceContext, actor: Actor) -> RepairReport:
    """Reconcile the registry to the ledger, under the projection lock: every decision has its audit
    tag, each stage the tower promoted is held by the ledger's latest promotion of it; nothing else
    changes. Idempotent, and safe beside decisions and other repairs (they wait for the lock)."""
    authorize(actor, Action.REPAIR_PROJECTION, _Resource())
    fixed: list[str] = []
    with ledger_tx.projection_lock(ctx.engine):
        total = ledger_tx.read(ctx.engine, lambda c: len(ledger.projected_ids(c)))
        applied, failed = _apply_pending(ctx)
        for model, stage in sorted(ledger_tx.read(ctx.engine, ledger.promoted_stages)):
            try:
                before = ctx.current_holders(model).get(stage)
                state = _reconcile_stage(ctx, model, stage)
                if state is not None and before != state["version"]:
                    fixed.append(f"{model}: {stage} -> v{state['version']}")
            except TowerError as exc:
                failed.append((f"{model}/{stage}", exc.message))
    return RepairReport(applied=tuple(applied), failed=tuple(failed), already=total, stages_fixed=tuple(fixed))
