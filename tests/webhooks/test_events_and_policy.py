"""The payload and the policy key: only model_version.created is handled, with a canonical version;
``auto_request`` names a configured stage or is refused when tower.yaml is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.errors import ConfigError
from services.governance.policy import parse_policies, policies
from services.webhooks.events import parse_event
from services.webhooks.signature import RejectedDelivery
from services.wiring import load_settings
from tests.webhooks.conftest import signed


def _body(**data) -> bytes:
    return json.dumps({"entity": "model_version", "action": "created", "data": data}).encode()


def test_model_version_created_gives_the_model_and_canonical_version() -> None:
    event = parse_event(signed("credit-risk", "12")[1])
    assert (event.event, event.model, event.version) == ("model_version.created", "credit-risk", "12")


@pytest.mark.parametrize(("body", "said"), [
    (signed("credit-risk", "1", event=("model_version_tag", "set"))[1], "model_version_tag.set' is not handled"),
    (signed("credit-risk", "1", event=("registered_model", "created"))[1], "is not handled"),
    (signed("credit-risk", "1", event=("model_version", "exploded"))[1], "is not handled"),
    (b'{"data": {}}', "names no event"),
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"entity": "model_version", "action": "created"}).encode(), "carries no data"),
    (_body(name="m", version="03"), "canonical"),
    (_body(name="m", version="3.0"), "canonical"),
    (_body(name="m", version=3), "names no model version"),
    (_body(name="m" * 1001, version="3"), "no usable model"),
    (_body(name="  ", version="3"), "no usable model"),
    (_body(name=None, version="3"), "no usable model"),
])
def test_anything_else_is_refused_400(body: bytes, said: str) -> None:
    with pytest.raises(RejectedDelivery, match=said) as caught:
        parse_event(body)
    assert caught.value.status == 400


def test_auto_request_names_a_configured_stage_in_any_case() -> None:
    parsed = parse_policies({"m": {"auto_request": "staging"}, "n": {"auto_request": None}},
                            stages=("Production", "Staging"))
    assert parsed.for_model("m").auto_request == "Staging"
    assert parsed.for_model("n").auto_request is None and parsed.for_model("other").auto_request is None


@pytest.mark.parametrize("value", ["Prod", "", 3, ["Staging"], True, "Staging\u200b"])
def test_an_unknown_auto_request_stage_is_refused_at_load_time(value) -> None:
    with pytest.raises(ConfigError, match=r"policies\.m\.auto_request must name a stage \(Production, Staging\)"):
        parse_policies({"m": {"auto_request": value}}, stages=("Production", "Staging"))


def test_auto_request_checks_the_stages_tower_yaml_configures(tmp_path: Path) -> None:
    config = tmp_path / "tower.yaml"
    config.write_text("stages: {Canary: canary, Production: production}\n"
                      "policies: {m: {auto_request: canary}}\n", encoding="utf-8")
    assert policies(load_settings({"TOWER_CONFIG": str(config)})).for_model("m").auto_request == "Canary"
    config.write_text("policies: {m: {auto_request: Canary}}\n", encoding="utf-8")  # the default stages
    with pytest.raises(ConfigError, match="auto_request"):
        load_settings({"TOWER_CONFIG": str(config)})


def test_auto_request_is_not_part_of_the_evidence_so_recorded_digests_do_not_move() -> None:
    with_key = parse_policies({"m": {"auto_request": "Staging", "max_drift_share": 0.2}}).for_model("m")
    without = parse_policies({"m": {"max_drift_share": 0.2}}).for_model("m")
    assert with_key.as_dict() == without.as_dict()


def test_the_demo_tower_yaml_auto_requests_staging_for_demand_forecast_only() -> None:
    settings = load_settings({})
    rules = policies(settings)
    assert {m: rules.for_model(m).auto_request for m in settings.models} == {
        "credit-risk": None, "loan-approval": None, "fraud-detection": None, "demand-forecast": "Staging"}
