"""Requests and decisions end to end on a real MLflow registry and real tower state: request,
cancel, approve (N of M), reject, four-eyes through the services, idempotent retries, conflicts,
rollback, "who held the stage at T", history, exports, hostile input, external changes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.auth.identity import Actor
from services.errors import Conflict, Forbidden, NotFound
from services.governance import audit, ledger, ledger_tx, projection, promotion, review_state

# by name: the helper ledger_rows(world) below would shadow the module
from services.governance.ledger_rows import Decision, approval_decision_id, resolution_decision_id
from services.governance.promotion import DecisionConflict
from services.governance.validation import InvalidInput
from tests.support.governance import (
    ADA,
    ALICE,
    BOB,
    CARL,
    HOSTILE_MODEL,
    ISSUER,
    RITA,
    ROB,
    World,
    open_world,
    person,
)

TWO_APPROVALS = """
policies:
  default:
    approvals_required: 2
    approvers: {roles: [reviewer]}
"""
SUBJECT_APPROVERS = f"""
policies:
  default:
    approvals_required: 1
    approvers: {{subjects: ["{ISSUER}|rob"]}}
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as w:
        yield w


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """The same world with the tower state on SQLite and on PostgreSQL."""
    with open_world(tmp_path, request.param) as w:
        yield w


def ledger_rows(world: World) -> list[Decision]:
    return ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions(c))


def audit_tags(world: World, model: str, version: str) -> dict[str, dict]:
    tags = world.ctx.registry.version_tags(model, version)
    return {k: json.loads(v) for k, v in tags.items() if k.startswith("tower_audit_")}


def production(world: World, model: str = "credit-risk") -> str | None:
    return world.ctx.registry.model_aliases(model).get("production")


# ----------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------
def test_an_owner_requests_a_promotion_which_waits_open_with_a_ledger_row_and_an_audit_tag(world: World) -> None:
    outcome = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "production", "better AUC")
    request = outcome.request
    assert (request.model, request.version, request.stage, request.status) == ("credit-risk", "3", "Production", "open")
    assert (request.requester_issuer, request.requester_subject, request.previous_version) == (ISSUER, "alice", "1")
    assert outcome.created and outcome.projection_error is None
    assert [d.action for d in ledger_rows(world)] == ["request"]
    tags = audit_tags(world, "credit-risk", "3")
    assert list(tags) == [f"tower_audit_{outcome.decision.decision_id}"]
    assert production(world) == "1"  # nothing moves before approval
    assert [r.id for r in review_state.list_requests(world.ctx, status="open")] == [request.id]
    assert review_state.list_requests(world.ctx, status="approved") == []
    assert review_state.get_request(world.ctx, request.id) == request


def test_a_second_open_request_for_the_same_version_and_stage_is_a_conflict_naming_the_first(world: World) -> None:
    first = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better").request
    with pytest.raises(Conflict, match=rf"Request {first.id} to promote version 3 of 'credit-risk' to Production "
                                       r"is already open \(made by Alice"):
        promotion.request_promotion(world.ctx, ADA, "credit-risk", "3", "Production", "me too")
    again = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "double click")
    assert (again.request.id, again.created) == (first.id, False)
    assert len(ledger_rows(world)) == 1
    # another stage, or another version, is another request
    promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Staging", "stage it")
    promotion.request_promotion(world.ctx, ALICE, "credit-risk", "4", "Production", "alternative")
    assert len(review_state.list_requests(world.ctx, status="open", model="credit-risk")) == 3


def test_requests_for_unknown_models_versions_or_stages_and_current_holders_are_refused(world: World) -> None:
    with pytest.raises(NotFound, match="Model 'nope' is not in the registry"):
        promotion.request_promotion(world.ctx, ADA, "nope", "1", "Production", "x")
    with pytest.raises(NotFound, match="Version '9' of model 'credit-risk' is not in the registry"):
        promotion.request_promotion(world.ctx, ALICE, "credit-risk", "9", "Production", "x")
    with pytest.raises(InvalidInput, match="Unknown stage 'Canary'"):
        promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Canary", "x")
    with pytest.raises(Conflict, match="Version 1 of 'credit-risk' already holds Production"):
        promotion.request_promotion(world.ctx, ALICE, "credit-risk", "1", "Production", "x")
    with pytest.raises(InvalidInput, match="A reason is required"):
        promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "  ")
    assert ledger_rows(world) == []


def test_only_the_owner_of_the_model_may_request_its_promotion(world: World) -> None:
    with pytest.raises(Forbidden, match="its owner is alice"):
        promotion.request_promotion(world.ctx, BOB, "credit-risk", "3", "Production", "not mine")
    with pytest.raises(Forbidden, match="only its owner or an admin"):
        promotion.request_promotion(world.ctx, RITA, "credit-risk", "3", "Production", "reviewer")


# ----------------------------------------------------------------------------------------------
# Cancel
# ----------------------------------------------------------------------------------------------
def test_the_models_owner_may_cancel_a_bots_request_on_it_and_nobody_else_may(world: World) -> None:
    ci = Actor(issuer="tower-service", subject="ci-bot", name="service:ci-bot", roles=frozenset({"model_owner"}),
               kind="service")
    rid = promotion.request_promotion(world.ctx, ci, "credit-risk", "3", "Production", "nightly").request.id
    for other in (BOB, RITA, person("alice", "viewer")):  # another owner, a reviewer, alice without the role
        with pytest.raises(Forbidden):
            promotion.cancel_request(world.ctx, other, rid, "not yours")
    assert review_state.get_request(world.ctx, rid).is_open
    outcome = promotion.cancel_request(world.ctx, ALICE, rid, "not ready for production")
    assert outcome.request.status == "cancelled"
    assert (outcome.decision.actor_subject, outcome.decision.comment) == ("alice", "not ready for production")


def test_cancel_by_anyone_but_the_requester_is_forbidden(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better").request.id
    for other in (BOB, RITA, ADA, person("alice", "model_owner", issuer="https://other-idp.test")):
        with pytest.raises(Forbidden, match="did not make this request"):
            promotion.cancel_request(world.ctx, other, rid, "mine now")
    outcome = promotion.cancel_request(world.ctx, ALICE, rid, "changed my mind")
    assert outcome.request.status == "cancelled" and outcome.decision.action == "cancel"
    assert outcome.decision.decision_id == resolution_decision_id(rid)
    with pytest.raises(DecisionConflict, match="already cancelled by Alice"):
        promotion.approve(world.ctx, RITA, rid, "too late")
    # the request slot is free again
    promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "after all")


# ----------------------------------------------------------------------------------------------
# Approve and reject
# ----------------------------------------------------------------------------------------------
def test_approval_moves_the_alias_and_writes_audit_and_state_tags(any_world: World) -> None:
    world = any_world
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better").request.id
    outcome = promotion.approve(world.ctx, RITA, rid, "looks good")
    assert outcome.promoted and outcome.created and outcome.projection_error is None
    assert outcome.request.status == "approved"
    assert outcome.decision.decision_id == resolution_decision_id(rid)
    assert production(world) == "3"
    tags = audit_tags(world, "credit-risk", "3")
    tag = tags[f"tower_audit_{outcome.decision.decision_id}"]
    assert {k: tag[k] for k in ("action", "model", "version", "to_stage", "actor_name", "issuer", "subject",
                                "roles", "comment", "previous_version")} == {
        "action": "promote", "model": "credit-risk", "version": "3", "to_stage": "Production", "actor_name": "Rita",
        "issuer": ISSUER, "subject": "rita", "roles": ["reviewer"], "comment": "looks good", "previous_version": "1"}
    assert tag["hash"] == outcome.decision.hash and tag["prev_hash"] == outcome.decision.prev_hash
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", tag["time"])
    assert all(re.fullmatch(r"tower_audit_[0-9a-f]{64}", key) for key in tags)
    assert world.ctx.registry.model_tags("credit-risk")["tower_production_holder"] == "3"
    assert world.ctx.registry.version_tags("credit-risk", "3")["tower_stage"] == "Production"
    assert world.ctx.registry.version_tags("credit-risk", "1")["tower_stage"] == "None"
    assert projection.pending_projections(world.ctx) == []
    assert audit.verify_chain(world.ctx).ok


def test_n_of_m_the_alias_moves_only_when_enough_distinct_approvers_approved(tmp_path: Path) -> None:
    with open_world(tmp_path, policies=TWO_APPROVALS) as world:
        rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better").request.id
        first = promotion.approve(world.ctx, RITA, rid, "one")
        assert (first.decision.action, first.promoted, first.request.status) == ("approve", False, "open")
        assert production(world) == "1"
        assert first.decision.decision_id == approval_decision_id(rid, ISSUER, "rita")
        again = promotion.approve(world.ctx, RITA, rid, "one again")  # the same approver counts once
        assert (again.created, again.decision) == (False, first.decision)
        renamed = promotion.approve(world.ctx, person("rita", "reviewer", email="other@x.test"), rid, "still me")
        assert not renamed.created
        assert production(world) == "1" and len(ledger_rows(world)) == 2
        second = promotion.approve(world.ctx, ROB, rid, "two")
        assert second.promoted and second.request.status == "approved"
        assert [a.actor_subject for a in second.request.approvals] == ["rita", "rob"]
        assert production(world) == "3"
        assert [d.action for d in ledger_rows(world)] == ["request", "approve", "promote"]


def test_only_the_approvers_the_policy_names_may_decide(tmp_path: Path) -> None:
    with open_world(tmp_path, policies=SUBJECT_APPROVERS) as world:
        rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better").request.id
        with pytest.raises(Forbidden, match="not among the approvers"):
            promotion.approve(world.ctx, RITA, rid, "I am a reviewer")
        with pytest.raises(Forbidden, match="not among the approvers"):
            promotion.reject(world.ctx, RITA, rid, "I am a reviewer")
        assert promotion.approve(world.ctx, ROB, rid, "listed").promoted


def test_reject_needs_a_comment_and_leaves_the_registry_alone(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better").request.id
    for empty in ("", "   \n\t"):
        with pytest.raises(InvalidInput, match="A comment explaining the rejection is required"):
            promotion.reject(world.ctx, RITA, rid, empty)
    outcome = promotion.reject(world.ctx, RITA, rid, "AUC gain too small to justify the change")
    assert outcome.request.status == "rejected" and not outcome.promoted
    assert production(world) == "1"
    assert f"tower_audit_{outcome.decision.decision_id}" in audit_tags(world, "credit-risk", "3")
    with pytest.raises(DecisionConflict, match=r"already rejected by Rita at \d{4}-") as caught:
        promotion.approve(world.ctx, ROB, rid, "but I like it")
    assert caught.value.decision == outcome.decision
    retry = promotion.reject(world.ctx, RITA, rid, "AUC gain too small to justify the change")
    assert (retry.created, retry.decision) == (False, outcome.decision)


def test_four_eyes_through_the_services_requester_and_creator_are_refused(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ADA, "credit-risk", "3", "Production", "admin asks").request.id
    with pytest.raises(Forbidden, match="requested this promotion"):
        promotion.approve(world.ctx, ADA, rid, "self-approval")
    with pytest.raises(Forbidden, match="created version 3"):  # carl ran the training run of v3
        promotion.approve(world.ctx, CARL, rid, "my own model")
    with pytest.raises(Forbidden, match="requested this promotion"):
        promotion.approve(world.ctx, person("ada", "admin", email="ada@new-domain.test"), rid, "new e-mail")
    assert production(world) == "1"
    lookalike = person("ada-2", "reviewer", email=ADA.email)  # same e-mail, another subject: someone else
    assert promotion.approve(world.ctx, lookalike, rid, "I am not Ada").promoted


def test_a_reviewer_removed_from_the_group_is_refused_at_the_next_decision(world: World) -> None:
    first = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Staging", "stage").request.id
    second = promotion.request_promotion(world.ctx, BOB, "fraud-detection", "2", "Staging", "stage").request.id
    assert promotion.approve(world.ctx, RITA, first, "ok").promoted
    rita_today = person("rita", "viewer")  # the IdP no longer puts her in the reviewers group
    with pytest.raises(Forbidden, match="needs the reviewer role"):
        promotion.reject(world.ctx, rita_today, second, "no")
    with pytest.raises(Forbidden, match="needs the reviewer role"):
        promotion.approve(world.ctx, rita_today, second, "ok", override_reason="because")
    assert review_state.get_request(world.ctx, second).is_open


def test_allowed_actions_tell_pages_which_controls_to_show(world: World) -> None:
    request = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better").request
    assert review_state.allowed_actions(world.ctx, RITA, request) == {"approve", "reject"}
    assert review_state.allowed_actions(world.ctx, ADA, request) == {"approve", "reject", "override_gate"}
    assert review_state.allowed_actions(world.ctx, ALICE, request) == {"cancel_request"}
    assert review_state.allowed_actions(world.ctx, CARL, request) == {"reject"}
    assert review_state.allowed_actions(world.ctx, person("vic", "viewer"), request) == set()


# ----------------------------------------------------------------------------------------------
# Rollback, holder at T, external changes, legacy stages
# ----------------------------------------------------------------------------------------------
def test_rollback_creates_a_request_for_the_previous_holder(world: World) -> None:
    with pytest.raises(NotFound, match="no earlier holder of Production"):
        promotion.rollback_request(world.ctx, ALICE, "credit-risk", "Production", "nothing to roll back")
    before = datetime.now(UTC)
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better").request.id
    promotion.approve(world.ctx, RITA, rid, "ok")
    after_promotion = datetime.now(UTC)
    rollback = promotion.rollback_request(world.ctx, ALICE, "credit-risk", "production", "v3 misbehaves")
    assert (rollback.request.kind, rollback.request.version, rollback.request.stage) == ("rollback", "1", "Production")
    assert rollback.request.previous_version == "3"
    with pytest.raises(Forbidden):
        promotion.rollback_request(world.ctx, BOB, "credit-risk", "Production", "not mine")
    # v1's AUC is below v3's: the gate fails, and rolling back is an override like any other
    assert promotion.approve(world.ctx, ADA, rollback.request.id, "roll back",
                             override_reason="incident: restore the last good version").promoted
    assert production(world) == "1"
    now = datetime.now(UTC)
    assert audit.holder_at(world.ctx, "credit-risk", "Production", before) == "1"  # before the tower's first move
    assert audit.holder_at(world.ctx, "credit-risk", "Production", after_promotion) == "3"
    assert audit.holder_at(world.ctx, "credit-risk", "Production", now) == "1"
    assert audit.holder_at(world.ctx, "credit-risk", "Staging", now) is None  # never moved by the tower


def test_an_alias_moved_outside_the_tower_is_detected(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better").request.id
    promotion.approve(world.ctx, RITA, rid, "ok")
    assert audit.detect_external_changes(world.ctx, "credit-risk") == []
    world.client.set_registered_model_alias("credit-risk", "production", "2")  # someone in the MLflow UI
    (change,) = audit.detect_external_changes(world.ctx, "credit-risk")
    assert (change.stage, change.expected_version, change.actual_version, change.projection_pending) == (
        "Production", "3", "2", False)
    assert "changed outside the tower" in change.description
    world.client.delete_registered_model_alias("credit-risk", "production")
    (gone,) = audit.detect_external_changes(world.ctx, "credit-risk")
    assert gone.actual_version is None


def test_legacy_stages_transition_and_archive_the_previous_holder(tmp_path: Path) -> None:
    with open_world(tmp_path, legacy=True) as world:
        first = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
        promotion.approve(world.ctx, RITA, first, "ok")
        assert world.ctx.registry.version_stage("credit-risk", "3") == "Production"
        second = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "2", "Production", "v2").request.id
        assert promotion.approve(world.ctx, RITA, second, "ok").projection_error is None
        assert world.ctx.registry.version_stage("credit-risk", "2") == "Production"
        assert world.ctx.registry.version_stage("credit-risk", "3") == "Archived"
        assert audit.detect_external_changes(world.ctx, "credit-risk") == []


# ----------------------------------------------------------------------------------------------
# History, exports, hostile input
# ----------------------------------------------------------------------------------------------
def test_history_filters_by_model_actor_action_and_time(world: World) -> None:
    start = datetime.now(UTC)
    a = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "a").request.id
    promotion.request_promotion(world.ctx, BOB, "fraud-detection", "2", "Staging", "b")
    promotion.reject(world.ctx, RITA, a, "no")
    everything = audit.history(world.ctx)
    assert [d.seq for d in everything] == [3, 2, 1]  # newest first
    assert [d.model for d in audit.history(world.ctx, model="fraud-detection")] == ["fraud-detection"]
    assert [d.action for d in audit.history(world.ctx, actor=RITA)] == ["reject"]
    assert [d.action for d in audit.history(world.ctx, actor="alice")] == ["request"]
    assert [d.seq for d in audit.history(world.ctx, action="request")] == [2, 1]
    assert audit.history(world.ctx, until=start - timedelta(seconds=1)) == []
    assert len(audit.history(world.ctx, since=start, until=datetime.now(UTC))) == 3
    assert len(audit.history(world.ctx, limit=1)) == 1


def test_csv_export_quotes_cells_a_spreadsheet_would_run_as_formulas(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production",
                                      '=HYPERLINK("http://evil.test","click")').request.id
    promotion.reject(world.ctx, RITA, rid, "+cmd|' /C calc'!A0")
    rid2 = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "4", "Production", "-2+3").request.id
    promotion.reject(world.ctx, RITA, rid2, "@SUM(A1:A2)")
    rid3 = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "5", "Production", "\t=1+1").request.id
    promotion.reject(world.ctx, RITA, rid3, "\r=1+1, and a comma\nand a newline")
    text = audit.export_csv(audit.history(world.ctx))
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    comments = [r["comment"] for r in rows]
    assert comments == ["'\r=1+1, and a comma\nand a newline", "'\t=1+1", "'@SUM(A1:A2)", "'-2+3",
                        "'+cmd|' /C calc'!A0", "'=HYPERLINK(\"http://evil.test\",\"click\")"]
    assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for c in r.values())
    assert rows[0]["seq"] == "6" and rows[0]["action"] == "reject"


def test_hostile_input_is_stored_exactly_in_the_ledger_and_the_tags(any_world: World) -> None:
    world = any_world
    hostile = ("**bold** <script>alert('x')</script> <img src=x onerror=alert(1)> "
               "\u202eRTL override\u202c \u200bzero\u200dwidth\ufeff 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🚀 ‎é\u0301 ==cmd '\"; DROP TABLE x;--")
    huge = hostile + "x" * 100_000 + "the end"
    requested = promotion.request_promotion(world.ctx, ALICE, HOSTILE_MODEL, "2", "Production", hostile)
    approved = promotion.approve(world.ctx, RITA, requested.request.id, huge)
    assert approved.promoted and approved.projection_error is None
    assert review_state.get_request(world.ctx, requested.request.id).reason == hostile
    stored = {d.action: d for d in ledger_rows(world)}
    assert stored["request"].comment == hostile and stored["request"].model == HOSTILE_MODEL
    assert stored["promote"].comment == huge
    assert audit.history(world.ctx, model=HOSTILE_MODEL)[0].comment == huge
    assert json.loads(audit.export_jsonl(audit.history(world.ctx))[:-1].split("\n")[0])["comment"] == huge
    tags = audit_tags(world, HOSTILE_MODEL, "2")
    request_tag = tags[f"tower_audit_{requested.decision.decision_id}"]
    assert request_tag["comment"] == hostile and request_tag["model"] == HOSTILE_MODEL
    raw = world.ctx.registry.version_tags(HOSTILE_MODEL, "2")[f"tower_audit_{approved.decision.decision_id}"]
    assert len(raw) <= projection.TAG_VALUE_LIMIT
    promote_tag = json.loads(raw)
    assert promote_tag["comment_truncated"] is True and promote_tag["comment_length"] == len(huge)
    assert promote_tag["comment_sha256"] == hashlib.sha256(huge.encode()).hexdigest()
    assert huge.startswith(promote_tag["comment"]) and len(promote_tag["comment"]) > 3000
    assert world.ctx.registry.model_aliases(HOSTILE_MODEL)["production"] == "2"
    assert audit.verify_chain(world.ctx).ok


def test_text_that_no_store_can_keep_exactly_is_refused_not_altered(world: World) -> None:
    with pytest.raises(InvalidInput, match="NUL character"):
        promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "a\x00b")
    with pytest.raises(InvalidInput, match="not valid unicode"):
        promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "lone \ud800 surrogate")
    assert ledger_rows(world) == [] and review_state.list_requests(world.ctx) == []
