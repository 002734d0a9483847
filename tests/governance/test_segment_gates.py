"""Promotion gates that name a segment: parsed per model and refused for a segment the model lacks,
judged on the segment's own stored monitoring results (the real TowerMonitoringEvidence over a real
tower state), and invisible in the evidence of policies that do not use them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.errors import ConfigError
from services.governance.evidence import FAILED, NO_DATA, PASSED, collect_evidence, no_data_passes
from services.governance.policy import parse_policies, policies
from services.mapping import parse_model_mapping
from services.monitoring.evidence import TowerMonitoringEvidence
from services.monitoring.job import write_windows
from services.settings import load_settings
from services.stores.tower_db import create_schema
from tests.support.governance import FixedMonitoring, World, open_world

CREDIT = parse_model_mapping("credit-risk", {
    "table": "predictions_credit_risk",
    "columns": {"timestamp": "ts", "version": "v", "prediction": "p", "latency_ms": "l", "status": "s"},
    "features": {"numerical": ["income"], "categorical": ["region"]}, "sensitive": ["gender"],
    "segments": [{"name": "north", "column": "region", "values": ["north"]}],
})
MODELS = {"credit-risk": CREDIT}
# The policy keys every recorded evidence holds today: a policy without segment gates must keep exactly these.
POLICY_KEYS = {"model", "approvals_required", "approvers", "override_roles", "requesters", "metrics", "max_drift_share",
               "max_fairness_dpd", "max_latency_p95_ms", "require_known_creator", "evidence_max_age"}


def gates(evidence) -> dict[str, tuple]:
    return {g.name: (g.status, g.candidate, g.holder, g.limit) for g in evidence.gates}


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------
def test_a_model_policy_names_limits_for_one_of_its_segments():
    policy = parse_policies({"credit-risk": {"segments": {"north": {"max_drift_share": 0.2}}}}, MODELS
                            ).for_model("credit-risk")
    (gate,) = policy.segment_gates
    assert (gate.segment, gate.max_drift_share, gate.max_fairness_dpd) == ("north", 0.2, None)
    assert policy.as_dict()["segments"] == {"north": {"max_drift_share": 0.2, "max_fairness_dpd": None}}


def test_policies_without_segment_gates_record_exactly_the_keys_they_recorded_before():
    settings = load_settings({})
    for model in ("credit-risk", "fraud-detection", "demand-forecast", "unknown-model"):
        keys = set(policies(settings).for_model(model).as_dict())
        assert keys - {"no_data"} == POLICY_KEYS, model
    assert set(policies(settings).for_model("loan-approval").as_dict()) == POLICY_KEYS | {"segments", "training_skew"}


@pytest.mark.parametrize(("raw", "message", "hint"), [
    ({"credit-risk": {"segments": {"south": {"max_drift_share": 0.2}}}}, "names 'south'", "Its segments: north"),
    ({"credit-risk": {"segments": {"North": {"max_drift_share": 0.2}}}}, "names 'North'", "Did you mean 'north'?"),
    ({"fraud": {"segments": {"north": {"max_drift_share": 0.2}}}}, "'fraud' has no prediction-log mapping", None),
    ({"default": {"segments": {"north": {"max_drift_share": 0.2}}}}, "segments belong to one model", None),
])
def test_a_segment_the_model_does_not_declare_is_refused_at_load_time(raw, message, hint):
    with pytest.raises(ConfigError, match=message) as err:
        parse_policies(raw, MODELS)
    if hint:
        assert hint in err.value.hint


@pytest.mark.parametrize("limits", [{"max_drift_share": 1.5}, {"max_drift_share": -0.1}, {"max_drift_share": "x"},
                                    {"max_fairness_dpd": float("nan")}, {"max_fairness_dpd": float("inf")}, {},
                                    {"max_drift_share": 0.2, "min_rows": 3}, None, "north"])
def test_bad_segment_limits_are_refused_naming_the_field(limits):
    with pytest.raises(ConfigError, match=r"policies\.credit-risk\.segments"):
        parse_policies({"credit-risk": {"segments": {"north": limits}}}, MODELS)


def test_no_data_may_name_a_segment_gate_and_a_segment_gate_falls_back_to_its_kind():
    policy = parse_policies({"credit-risk": {"segments": {"north": {"max_drift_share": 0.2}},
                                             "no_data": {"drift_share": "pass",
                                                         "segment:north/fairness_dpd": "pass"}}},
                            MODELS).for_model("credit-risk").as_dict()
    assert no_data_passes(policy, "segment:north/drift_share"), "follows drift_share"
    assert no_data_passes(policy, "segment:north/fairness_dpd")
    assert not no_data_passes(policy, "fairness_dpd")
    with pytest.raises(ConfigError, match="unknown gate"):
        parse_policies({"credit-risk": {"no_data": {"segment:north/latency": "pass"}}}, MODELS)


# ----------------------------------------------------------------------------------------------
# Evidence from the stored results of the segment
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as w:
        create_schema(w.ctx.engine)
        yield w


def row(version: str, metric: str, value: float, slice_key: str = "") -> dict:
    return {"version": version, "slice_key": slice_key, "slice_value": "", "column_name": "", "metric": metric,
            "method": "", "value": value, "threshold": None, "alert": None, "reference_id": "r"}


def store(world: World, segment: str, day: int, rows: list[dict]) -> None:
    when = datetime(2026, 5, 1) + timedelta(days=day)
    write_windows(world.ctx.engine, "credit-risk", {when.date(): rows}, when + timedelta(hours=26), segment=segment)


def watched(world: World, policy: dict):
    settings = dataclasses.replace(world.settings, models={**world.settings.models, **MODELS},
                                   sections={**world.settings.sections, "policies": {"credit-risk": policy}})
    return dataclasses.replace(world.ctx, settings=settings, monitoring=TowerMonitoringEvidence(world.ctx.engine))


def test_segment_gates_read_the_segments_own_latest_results(world: World) -> None:
    store(world, "", 0, [row("3", "drift_share", 0.0), row("*", "demographic_parity_difference", 0.02, "gender")])
    store(world, "north", 0, [row("3", "drift_share", 0.1), row("1", "drift_share", 0.0),
                              row("*", "demographic_parity_difference", 0.03, "gender")])
    store(world, "north", 1, [row("3", "drift_share", 0.5), row("*", "demographic_parity_difference", 0.25, "gender")])
    ctx = watched(world, {"max_drift_share": 0.3, "max_fairness_dpd": 0.1,
                          "segments": {"north": {"max_drift_share": 0.3, "max_fairness_dpd": 0.1}}})
    found = gates(collect_evidence(ctx, "credit-risk", "3", "Production"))
    assert found["drift_share"] == (PASSED, 0.0, None, 0.3) and found["fairness_dpd"] == (PASSED, 0.02, None, 0.1)
    # the latest window the candidate served in the segment (day 1), the holder's own (v1, day 0)
    assert found["segment:north/drift_share"] == (FAILED, 0.5, 0.0, 0.3)
    assert found["segment:north/fairness_dpd"] == (FAILED, 0.25, None, 0.1)


def test_a_version_never_seen_in_the_segment_has_no_data_there(world: World) -> None:
    store(world, "", 0, [row("2", "drift_share", 0.0)])
    ctx = watched(world, {"segments": {"north": {"max_drift_share": 0.3}}})
    evidence = collect_evidence(ctx, "credit-risk", "2", "Production")
    status, candidate, _, _ = gates(evidence)["segment:north/drift_share"]
    assert (status, candidate) == (NO_DATA, None)
    assert any(g.name == "segment:north/drift_share" for g in evidence.failing), "no data fails by default"
    assert "in segment north" in next(g.detail for g in evidence.gates if g.name.startswith("segment:"))


def test_a_monitoring_source_that_cannot_read_segments_gives_no_data_with_a_note(world: World) -> None:
    ctx = dataclasses.replace(watched(world, {"segments": {"north": {"max_drift_share": 0.3}}}),
                              monitoring=FixedMonitoring(drift={"3": 0.0}))
    evidence = collect_evidence(ctx, "credit-risk", "3", "Production")
    assert gates(evidence)["segment:north/drift_share"][0] == NO_DATA
    assert any("cannot read segments" in note for note in evidence.notes)


def test_the_evidence_of_a_policy_without_segment_gates_holds_none(world: World) -> None:
    store(world, "north", 0, [row("3", "drift_share", 0.9)])
    ctx = watched(world, {"max_drift_share": 0.3})
    evidence = collect_evidence(ctx, "credit-risk", "3", "Production")
    assert not any(g.name.startswith("segment:") for g in evidence.gates)
    assert "segments" not in evidence.as_dict()["policy"]
