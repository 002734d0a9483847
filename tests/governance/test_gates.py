"""Policy as code and evidence: parsing tower.yaml's policies, every gate passed / failed / no data
with its numbers, the canonical evidence snapshot and its digest, and overrides."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.errors import ConfigError, Forbidden
from services.governance import ledger_rows, promotion, review_state
from services.governance.canonical import canonical_json
from services.governance.evidence import FAILED, NO_DATA, PASSED, collect_evidence
from services.governance.policy import parse_policies, policies
from services.governance.validation import InvalidInput
from services.settings import load_settings
from tests.support.governance import ADA, ALICE, BOB, RITA, FixedMonitoring, World, open_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as w:
        yield w


def gates(evidence) -> dict[str, tuple]:
    return {g.name: (g.status, g.candidate, g.holder, g.limit) for g in evidence.gates}


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------
def test_the_committed_tower_yaml_gives_each_demo_model_a_policy_with_its_slo_latency() -> None:
    settings = load_settings({})
    credit = policies(settings).for_model("credit-risk")
    assert credit.approvals_required == 2
    assert [(g.name, g.direction, g.max_regression) for g in credit.metrics] == [("roc_auc", "higher", 0.01)]
    assert credit.max_latency_p95_ms == 250.0  # from models.credit-risk.slo
    assert policies(settings).for_model("demand-forecast").metrics[0].direction == "lower"
    assert policies(settings).for_model("demand-forecast").max_latency_p95_ms == 400.0
    unknown = policies(settings).for_model("not-in-the-config")
    assert unknown.approvals_required == 1 and unknown.max_latency_p95_ms is None
    assert ("tower-service", "ci-bot") in unknown.requesters


def test_a_model_section_overrides_the_default_key_by_key() -> None:
    policies = parse_policies({"default": {"approvals_required": 2, "max_drift_share": 0.2},
                               "m": {"max_drift_share": 0.5, "max_latency_p95_ms": None}})
    policy = policies.for_model("m")
    assert (policy.approvals_required, policy.max_drift_share, policy.max_latency_p95_ms) == (2, 0.5, None)


@pytest.mark.parametrize(("raw", "message"), [
    ({"m": {"metrics": [{"name": "auc", "direction": "up"}]}}, r"policies\.m\.metrics\[0\]\.direction"),
    ({"m": {"metrics": [{"name": "auc", "direction": "higher", "max_regression": -1}]}},
     r"policies\.m\.metrics\[0\]\.max_regression"),
    ({"m": {"approvals_required": 0}}, r"policies\.m\.approvals_required"),
    ({"m": {"approvers": {"roles": ["boss"]}}}, r"policies\.m\.approvers\.roles: 'boss' is not a role"),
    ({"m": {"approvers": {"subjects": ["nobody"]}}}, r"policies\.m\.approvers\.subjects\[0\]"),
    ({"m": {"approvals_required": 3, "approvers": {"roles": [], "subjects": ["i|a", "i|b"]}}},
     r"approvals_required is 3 but only 2 approvers"),
    ({"m": {"max_drift_share": 1.5}}, r"policies\.m\.max_drift_share is a share"),
    ({"m": {"max_fairnes_dpd": 0.1}}, r"policies\.m: unknown key\(s\) max_fairnes_dpd"),
    ({"default": {"max_latency_p95_ms": "fast"}}, r"policies\.default\.max_latency_p95_ms"),
    ({"m": {"no_data": "maybe"}}, r"policies\.m\.no_data must be 'fail', 'pass'"),
    ({"m": {"no_data": {"latency": "pass"}}}, r"policies\.m\.no_data names an unknown gate 'latency'"),
    ({"m": {"no_data": {"drift_share": True}}}, r"policies\.m\.no_data\.drift_share must be fail or pass"),
    ({"m": {"no_data": {"metric:": "pass"}}}, r"unknown gate 'metric:'"),
])
def test_a_bad_policy_is_refused_naming_the_field(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policies(raw)


def test_no_data_fails_by_default_and_passes_only_the_gates_the_policy_names() -> None:
    parsed = parse_policies({"default": {"no_data": {"fairness_dpd": "pass"}}, "m": {"no_data": "pass"},
                             "n": {}})
    assert "no_data" not in parse_policies({"x": {}}).for_model("x").as_dict()  # old digests unchanged
    assert dict(parsed.for_model("n").no_data) == {"default": "fail", "fairness_dpd": "pass"}
    assert dict(parsed.for_model("m").no_data) == {"default": "pass"}


# ----------------------------------------------------------------------------------------------
# Gates
# ----------------------------------------------------------------------------------------------
def test_metric_gate_passes_within_the_allowed_regression(world: World) -> None:
    evidence = collect_evidence(world.ctx, "credit-risk", "3", "Staging")  # 0.845 vs staging v2 0.85
    assert gates(evidence)["metric:roc_auc"] == (PASSED, 0.845, 0.85, 0.01)
    assert evidence.holder is not None and evidence.holder.version == "2"
    assert not evidence.failing


def test_metric_gate_fails_beyond_the_allowed_regression(world: World) -> None:
    evidence = collect_evidence(world.ctx, "credit-risk", "4", "Production")  # 0.70 vs production v1 0.80
    status, candidate, holder, limit = gates(evidence)["metric:roc_auc"]
    assert (status, candidate, holder, limit) == (FAILED, 0.70, 0.80, 0.01)
    assert "a regression of 0.1" in evidence.gates[0].detail


def test_metric_gate_has_no_data_when_the_candidate_lacks_the_metric(world: World) -> None:
    evidence = collect_evidence(world.ctx, "credit-risk", "5", "Production")
    assert gates(evidence)["metric:roc_auc"] == (NO_DATA, None, None, 0.01)


def test_lower_is_better_metrics_fail_when_they_rise(world: World) -> None:
    ctx = dataclasses.replace(world.ctx, settings=dataclasses.replace(world.settings, sections={
        **world.settings.sections,
        "policies": {"credit-risk": {"metrics": [{"name": "roc_auc", "direction": "lower", "max_regression": 0.01}]}}}))
    assert gates(collect_evidence(ctx, "credit-risk", "3", "Production"))["metric:roc_auc"][0] == FAILED
    assert gates(collect_evidence(ctx, "credit-risk", "4", "Production"))["metric:roc_auc"][0] == PASSED


def test_latency_gate_uses_the_slo_and_the_warehouse_p95_of_the_last_7_days(world: World) -> None:
    slow = collect_evidence(world.ctx, "fraud-detection", "2", "Production")
    status, candidate, holder, limit = gates(slow)["latency_p95_ms"]
    assert status == FAILED and limit == 250.0
    assert 390 < candidate < 420 and 90 < holder < 120
    assert slow.candidate.requests == 200
    silent = collect_evidence(world.ctx, "fraud-detection", "3", "Production")
    assert gates(silent)["latency_p95_ms"][0] == NO_DATA
    assert "served no traffic" in silent.gates[-1].detail


def test_drift_and_fairness_gates_come_from_the_monitoring_source_or_have_no_data(world: World) -> None:
    settings = dataclasses.replace(world.settings, sections={
        **world.settings.sections, "policies": {"default": {"max_drift_share": 0.3, "max_fairness_dpd": 0.1}}})
    watched = dataclasses.replace(world.ctx, settings=settings,
                                  monitoring=FixedMonitoring(drift={"2": 0.5, "3": 0.1}, dpd=0.04))
    assert gates(collect_evidence(watched, "credit-risk", "2", "Production"))["drift_share"][0] == FAILED
    evidence = collect_evidence(watched, "credit-risk", "3", "Production")
    assert gates(evidence)["drift_share"] == (PASSED, 0.1, None, 0.3)  # holder v1 has no drift result
    assert gates(evidence)["fairness_dpd"] == (PASSED, 0.04, None, 0.1)
    unfair = dataclasses.replace(watched, monitoring=FixedMonitoring(drift={"3": 0.1}, dpd=0.2))
    assert gates(collect_evidence(unfair, "credit-risk", "3", "Production"))["fairness_dpd"][0] == FAILED
    blind = dataclasses.replace(watched, monitoring=None)
    unknown = collect_evidence(blind, "credit-risk", "3", "Production")
    assert gates(unknown)["drift_share"][0] == NO_DATA and gates(unknown)["fairness_dpd"][0] == NO_DATA
    assert any("No monitoring source" in note for note in unknown.notes)


# ----------------------------------------------------------------------------------------------
# Snapshot and digest
# ----------------------------------------------------------------------------------------------
def test_canonical_json_sorts_keys_and_turns_nan_into_null() -> None:
    text = canonical_json({"b": float("nan"), "a": [1.5, float("inf")], "é": "ü"})
    assert text == '{"a":[1.5,null],"b":null,"é":"ü"}'


def test_the_evidence_is_snapshotted_and_its_digest_recorded_with_the_request_and_the_decision(world: World) -> None:
    outcome = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better AUC")
    digest = outcome.request.evidence_digest
    assert digest == outcome.decision.evidence_digest
    snapshot = review_state.evidence_snapshot(world.ctx, digest)
    assert snapshot is not None and snapshot.digest == digest
    assert hashlib.sha256(snapshot.to_json().encode()).hexdigest() == digest
    assert json.loads(snapshot.to_json())["policy"]["metrics"][0]["name"] == "roc_auc"
    approved = promotion.approve(world.ctx, RITA, outcome.request.id, "ok")
    assert approved.decision.evidence_digest is not None
    assert review_state.evidence_snapshot(world.ctx, approved.decision.evidence_digest) is not None
    tag = json.loads(world.ctx.registry.version_tags("credit-risk", "3")[
        f"tower_audit_{approved.decision.decision_id}"])
    assert tag["evidence_digest"] == approved.decision.evidence_digest


# ----------------------------------------------------------------------------------------------
# Overrides
# ----------------------------------------------------------------------------------------------
def test_approving_past_a_failed_gate_needs_a_written_reason(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "4", "Production", "simpler model").request.id
    for reason in (None, "", "   "):
        with pytest.raises(InvalidInput, match=r"These gates did not pass: metric:roc_auc\..*needs a written reason"):
            promotion.approve(world.ctx, ADA, rid, "ok", override_reason=reason)
    assert review_state.get_request(world.ctx, rid).is_open


def test_overriding_needs_the_override_permission_and_is_recorded_as_an_override(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "4", "Production", "simpler model").request.id
    with pytest.raises(Forbidden, match="may not override a failed gate"):
        promotion.approve(world.ctx, RITA, rid, "ok", override_reason="the AUC drop is accepted by risk")
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "1"
    outcome = promotion.approve(world.ctx, ADA, rid, "ok", override_reason="the AUC drop is accepted by risk")
    assert outcome.promoted and outcome.decision.is_override
    assert outcome.decision.overridden_gates == ("metric:roc_auc",)
    assert outcome.decision.override_reason == "the AUC drop is accepted by risk"
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "4"
    tag = json.loads(world.ctx.registry.version_tags("credit-risk", "4")[f"tower_audit_{outcome.decision.decision_id}"])
    assert tag["overridden_gates"] == ["metric:roc_auc"] and tag["override_reason"].startswith("the AUC drop")


def test_a_no_data_gate_also_needs_an_override(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, BOB, "fraud-detection", "3", "Production", "new").request.id
    with pytest.raises(InvalidInput, match="latency_p95_ms"):
        promotion.approve(world.ctx, RITA, rid, "ok")
    outcome = promotion.approve(world.ctx, ADA, rid, "", override_reason="canary starts after promotion")
    assert outcome.decision.overridden_gates == ("latency_p95_ms",)
    assert outcome.decision.action == ledger_rows.PROMOTE
