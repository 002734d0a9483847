"""Override semantics: an authorized override of a request's failed gates is recorded once; the
approvals after it are ordinary. And what a reviewer may do is known before they type anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.errors import Conflict, Forbidden
from services.governance import ledger, ledger_tx, promotion, review_state
from services.governance.decision_options import decision_options
from services.governance.validation import InvalidInput
from tests.support.governance import ADA, ALICE, CARL, POLICY_YAML, RITA, ROB, World, open_world, person

TWO_APPROVALS = POLICY_YAML.replace("  credit-risk:\n", "  credit-risk:\n    approvals_required: 2\n")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path, policies=TWO_APPROVALS) as w:
        yield w


def failing_request(world: World) -> str:
    """credit-risk v4 fails the roc_auc gate (0.70 against production v1's 0.80)."""
    return promotion.request_promotion(world.ctx, ALICE, "credit-risk", "4", "Production", "simpler").request.id


def rows_of(world: World, rid: str) -> list:
    return ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions_of_request(c, rid))


def test_an_override_is_recorded_once_and_the_next_approval_is_an_ordinary_one(world: World) -> None:
    rid = failing_request(world)
    first = promotion.approve(world.ctx, ADA, rid, "risk accepts it", override_reason="AUC drop signed off by risk")
    assert not first.promoted and first.decision.overridden_gates == ("metric:roc_auc",)
    second = promotion.approve(world.ctx, RITA, rid, "fine by me")  # no override reason, no admin role
    assert second.promoted
    assert second.decision.overridden_gates == () and second.decision.override_reason is None
    overrides = [d for d in rows_of(world, rid) if d.is_override]
    assert [d.actor_subject for d in overrides] == ["ada"]
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "4"


def test_a_reviewer_cannot_approve_past_failed_gates_before_anyone_overrode_them(world: World) -> None:
    rid = failing_request(world)
    with pytest.raises(InvalidInput, match="These gates did not pass: metric:roc_auc"):
        promotion.approve(world.ctx, RITA, rid, "ok")
    with pytest.raises(Forbidden, match="may not override a failed gate"):
        promotion.approve(world.ctx, RITA, rid, "ok", override_reason="I think it is fine")
    assert rows_of(world, rid)[-1].action == "request"


def test_an_override_by_someone_since_seen_without_the_override_role_no_longer_carries_approvals(
        world: World) -> None:
    rid = failing_request(world)
    promotion.approve(world.ctx, ADA, rid, "", override_reason="signed off")
    # Ada decides on another request as a plain reviewer: the ledger now knows her without admin.
    other = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Staging", "next").request.id
    promotion.approve(world.ctx, person("ada", "reviewer"), other, "ok")
    with pytest.raises(InvalidInput, match="These gates did not pass"):
        promotion.approve(world.ctx, RITA, rid, "ok")
    assert review_state.get_request(world.ctx, rid).is_open


def test_an_override_covers_only_the_gates_it_named(world: World) -> None:
    rid = failing_request(world)
    override = promotion.approve(world.ctx, ADA, rid, "", override_reason="signed off").decision
    assert review_state.standing_override([override], ("metric:roc_auc",)) == override
    assert review_state.standing_override([override], ("metric:roc_auc", "drift_share")) is None


# ----------------------------------------------------------------------------------------------
# Decision options: what this reviewer may do, before typing
# ----------------------------------------------------------------------------------------------
def test_a_reviewer_without_the_override_role_is_told_an_override_must_come_first(world: World) -> None:
    rid = failing_request(world)
    options = decision_options(world.ctx, RITA, review_state.get_request(world.ctx, rid))
    assert not options.may_approve and options.may_reject
    assert options.needs_override == ("metric:roc_auc",) and not options.may_override
    assert "admin" in options.approve_refusal and "override" in options.approve_refusal


def test_an_admin_is_offered_the_override_and_after_it_a_reviewer_plain_approval(world: World) -> None:
    rid = failing_request(world)
    admin = decision_options(world.ctx, ADA, review_state.get_request(world.ctx, rid))
    assert admin.may_approve and admin.may_override and admin.needs_override == ("metric:roc_auc",)
    promotion.approve(world.ctx, ADA, rid, "", override_reason="signed off")
    after = decision_options(world.ctx, RITA, review_state.get_request(world.ctx, rid))
    assert after.may_approve and after.needs_override == ()
    assert after.standing_override is not None and after.standing_override.actor_subject == "ada"


def test_the_creator_of_the_version_is_offered_nothing_and_told_why(world: World) -> None:
    rid = failing_request(world)  # carl created credit-risk v4
    options = decision_options(world.ctx, CARL, review_state.get_request(world.ctx, rid))
    assert not options.may_approve and options.may_reject
    assert "created" in options.approve_refusal


def test_a_decided_request_offers_nothing(world: World) -> None:
    rid = failing_request(world)
    promotion.reject(world.ctx, RITA, rid, "no")
    options = decision_options(world.ctx, ROB, review_state.get_request(world.ctx, rid))
    assert not options.may_approve and not options.may_reject
    with pytest.raises(Conflict):
        promotion.approve(world.ctx, ROB, rid, "")
