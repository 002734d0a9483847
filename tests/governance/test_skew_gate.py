"""The training-skew gate: parsed strictly, judged on intervals (never on a bare number), digest-stable."""

from __future__ import annotations

import pytest

from services.errors import ConfigError
from services.governance.evidence import PASSED, Evidence, VersionEvidence, evaluate_gates, no_data_passes
from services.governance.policy import parse_policies
from services.governance.skew_gate import FeatureSkew, SkewGate, SkewReading, describe, judge


def _feature(column: str, lower: float | None, noise: float | None, skewed: bool | None) -> FeatureSkew:
    return FeatureSkew(column=column, statistic="wasserstein", value=None if lower is None else lower + 0.02,
                       lower=lower, upper=None if lower is None else lower + 0.04, noise=noise, skewed=skewed,
                       training_rows=5000, serving_rows=20000)


def _reading(*features: FeatureSkew) -> SkewReading:
    return SkewReading(dataset="credit_risk_training (digest 1a2b3c4d)", window="2026-11-30 .. 2026-12-07",
                       features=features)


def test_a_policy_reads_training_skew_with_beyond_noise_as_the_default_verdict() -> None:
    policy = parse_policies({"credit-risk": {"training_skew": {"max_share": 0.2}}}).for_model("credit-risk")
    assert policy.training_skew == SkewGate(max_share=0.2, verdict="beyond_noise", material=None, days=7)
    assert policy.as_dict()["training_skew"] == {"max_share": 0.2, "verdict": "beyond_noise", "material": None,
                                                 "days": 7}


def test_a_policy_without_the_gate_records_what_it_recorded_before() -> None:
    """Evidence digests of policies without the gate must not change."""
    assert "training_skew" not in parse_policies({"m": {"max_drift_share": 0.3}}).for_model("m").as_dict()


@pytest.mark.parametrize(("raw", "match"), [
    ({"max_share": 1.5}, "between 0 and 1"),
    ({"max_share": -0.1}, "non-negative"),
    ({}, "between 0 and 1"),
    ({"max_share": 0.2, "verdict": "fixed"}, "verdict must be one of beyond_noise, material"),
    ({"max_share": 0.2, "verdict": "material"}, "material must be a positive threshold"),
    ({"max_share": 0.2, "material": 0.1}, "only read with verdict: material"),
    ({"max_share": 0.2, "days": 0}, "days must be a whole number"),
    ({"max_share": 0.2, "days": 2.5}, "days must be a whole number"),
    ({"max_share": 0.2, "day": 7}, "unknown key"),
    ("0.2", "must be a mapping"),
])
def test_a_bad_skew_gate_is_refused_naming_the_field(raw: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_policies({"credit-risk": {"training_skew": raw}})
    assert "policies.credit-risk.training_skew" in info.value.message


def test_the_gate_fails_when_more_features_are_skewed_than_allowed_and_lists_their_intervals() -> None:
    gate = SkewGate(max_share=0.25)
    status, share, detail = judge(gate, _reading(_feature("income", 0.31, 0.02, True),
                                                 _feature("age", 0.01, 0.02, False),
                                                 _feature("region", 0.12, 0.03, True),
                                                 _feature("tenure", 0.0, 0.02, False)))
    assert (status, share) == ("failed", 0.5)
    assert "2 of 4 features" in detail and "beyond noise" in detail
    assert "income: wasserstein 0.33 [0.31, 0.35], noise 0.02" in detail  # the interval, not a bare number
    assert detail.index("income") < detail.index("region")  # the strongest first


def test_the_gate_passes_at_exactly_the_allowed_share() -> None:
    status, share, _ = judge(SkewGate(max_share=0.5), _reading(_feature("a", 0.3, 0.02, True),
                                                               _feature("b", 0.0, 0.02, False)))
    assert (status, share) == ("passed", 0.5)


def test_features_that_could_not_be_judged_do_not_count_either_way() -> None:
    status, share, _ = judge(SkewGate(max_share=0.0), _reading(_feature("a", None, None, None),
                                                               _feature("b", 0.0, 0.02, False)))
    assert (status, share) == ("passed", 0.0)


def test_nothing_to_compare_is_no_data_with_the_reason() -> None:
    missing = SkewReading(dataset="", window="", missing="Version 3's run logged no training dataset.")
    assert judge(SkewGate(max_share=0.2), missing) == ("no_data", None, "Version 3's run logged no training dataset.")
    status, _, detail = judge(SkewGate(max_share=0.2), _reading(_feature("a", None, None, None)))
    assert status == "no_data" and "No feature could be compared" in detail


def test_describe_shows_a_dash_for_what_is_unknown() -> None:
    assert describe(_feature("a", None, None, None)) == "a: wasserstein – [–, –], noise –"


def test_evaluate_gates_adds_the_skew_gate_and_no_data_fails_by_default() -> None:
    policies = parse_policies({"m": {"training_skew": {"max_share": 0.2}}})
    policy = policies.for_model("m")
    candidate = VersionEvidence(version="2", metrics={}, p95_ms=None, requests=0, drift_share=None)
    gates = {g.name: g for g in evaluate_gates(policy, candidate, None, None)}
    assert gates["training_skew"].status == "no_data"
    assert not no_data_passes(policy.as_dict(), "training_skew")
    passing = evaluate_gates(policy, candidate, None, None, skew=_reading(_feature("a", 0.0, 0.02, False)))
    assert {g.name: g.status for g in passing}["training_skew"] == PASSED


def test_no_data_may_let_the_skew_gate_pass() -> None:
    policy = parse_policies({"m": {"training_skew": {"max_share": 0.2}, "no_data": {"training_skew": "pass"}}})
    assert no_data_passes(policy.for_model("m").as_dict(), "training_skew")


def test_the_reading_travels_in_the_evidence_json_and_back() -> None:
    policy = parse_policies({"m": {"training_skew": {"max_share": 0.2}}}).for_model("m")
    candidate = VersionEvidence(version="2", metrics={}, p95_ms=None, requests=0, drift_share=None)
    reading = _reading(_feature("income", 0.31, 0.02, True))
    evidence = Evidence(model="m", version="2", stage="Production", candidate=candidate, holder=None,
                        fairness_dpd=None, window_start="a", window_end="b", collected_at="c",
                        policy=policy.as_dict(), gates=evaluate_gates(policy, candidate, None, None, skew=reading),
                        training_skew=reading)
    again = Evidence.from_dict(evidence.as_dict())
    assert again.training_skew == reading and again.digest == evidence.digest
    without = Evidence.from_dict({k: v for k, v in evidence.as_dict().items() if k != "training_skew"})
    assert "training_skew" not in without.as_dict()
