"""The projection over MLflow's REST API (a real `mlflow server`), and the registry's write methods
mapping MLflow failures to the typed errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.errors import NotFound, RegistryUnavailable
from services.governance import audit, ledger_rows, promotion, review_state
from services.stores.registry import Registry
from tests.support.governance import ALICE, HOSTILE_MODEL, RITA, ROB, World, open_world
from tests.support.mlflow_server import run_mlflow_server

HTTP_ENV = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER")


@pytest.fixture(autouse=True)
def _restore_mlflow_http_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A REST Registry writes MLflow's HTTP settings into os.environ; undo that after each test."""
    for name in HTTP_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as w:
        yield w


def test_registry_writes_map_missing_objects_and_outages_to_typed_errors(world: World, tmp_path: Path) -> None:
    registry = world.ctx.registry
    with pytest.raises(NotFound, match="Version '99' of model 'credit-risk' is not in the registry"):
        registry.set_alias("credit-risk", "production", "99")
    with pytest.raises(NotFound, match="Version '99' of model 'credit-risk'"):
        registry.set_version_tag("credit-risk", "99", "tower_stage", "None")
    with pytest.raises(NotFound, match="Model 'nope' is not in the registry"):
        registry.set_model_tag("nope", "tower_production_holder", "1")
    with pytest.raises(NotFound, match="Model 'nope' is not in the registry"):
        registry.transition_stage("nope", "1", "Production")
    gone = Registry(f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}")
    with pytest.raises(RegistryUnavailable, match="does not exist"):
        gone.set_alias("credit-risk", "production", "1")
    registry.set_alias("credit-risk", "staging", "3")
    registry.delete_alias("credit-risk", "staging")
    assert "staging" not in registry.model_aliases("credit-risk")
    assert registry.version_creator("credit-risk", "3") == "carl"


@pytest.mark.slow
def test_decisions_are_projected_exactly_through_a_real_mlflow_server(world: World, tmp_path: Path) -> None:
    hostile = "**md** <b>html</b> \u202eRTL\u200b 🚀"
    huge = hostile + "y" * 20_000
    with run_mlflow_server(world.registry_uri, tmp_path / "served-artifacts") as url:
        ctx = dataclasses.replace(world.ctx, registry=Registry(url, timeout_s=10, max_retries=0))
        rid = promotion.request_promotion(ctx, ALICE, HOSTILE_MODEL, "2", "Production", hostile).request.id
        outcome = promotion.approve(ctx, RITA, rid, huge)
        assert outcome.promoted and outcome.projection_error is None
        assert ctx.registry.model_aliases(HOSTILE_MODEL)["production"] == "2"
        tags = ctx.registry.version_tags(HOSTILE_MODEL, "2")
        promote = json.loads(tags[f"tower_audit_{outcome.decision.decision_id}"])
        assert promote["comment_sha256"] == hashlib.sha256(huge.encode()).hexdigest()
        assert huge.startswith(promote["comment"]) and promote["model"] == HOSTILE_MODEL
        assert json.loads(tags[f"tower_audit_{ledger_rows.request_decision_id(rid)}"])["comment"] == hostile
        second = promotion.request_promotion(ctx, ALICE, "credit-risk", "3", "Staging", "next").request.id
    # the server is gone: nothing can be decided without the facts authorization needs
    with pytest.raises(RegistryUnavailable, match="cannot be used"):
        promotion.approve(ctx, ROB, second, "registry down")
    assert review_state.get_request(world.ctx, second).is_open
    assert audit.verify_chain(world.ctx).ok and audit.verify_chain(world.ctx).rows == 3
