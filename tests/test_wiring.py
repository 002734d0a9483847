"""services/wiring.py builds the backends once for everybody: a promotion requested by CI through
the CLI records the same drift and fairness evidence as the browser sees for that version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services import wiring
from services.auth.identity import DEMO_SERVICE_TOKEN
from services.governance import commands, review_state
from services.governance.evidence import FAILED, NO_DATA, collect_evidence
from services.monitoring.evidence import TowerMonitoringEvidence
from services.settings import PROJECT_ROOT, load_settings

MODEL, STAGE = "credit-risk", "Production"
MONITORED_GATES = ("drift_share", "fairness_dpd")


def _gates(evidence) -> dict[str, tuple]:
    return {g.name: (g.status, g.candidate, g.holder, g.limit) for g in evidence.gates if g.name in MONITORED_GATES}


def _drifted_candidate(ctx) -> str:
    """A credit-risk version that does not hold Production and whose drift gate fails on the demo."""
    holder = ctx.current_holders(MODEL)[STAGE]
    for info in ctx.registry.list_versions(MODEL):
        if info.version == holder:
            continue
        if _gates(collect_evidence(ctx, MODEL, info.version, STAGE))["drift_share"][0] == FAILED:
            return info.version
    raise AssertionError(f"the seeded demo has no drifted {MODEL} version besides the {STAGE} holder {holder}")


def test_a_ci_request_through_the_cli_records_the_drift_and_fairness_the_browser_sees(
        demo_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
    monkeypatch.setenv("TOWER_DEMO", "true")
    monkeypatch.setenv("TOWER_SECRETS_FILE", str(tmp_path / "no-secrets.toml"))  # never the developer's own
    browser = wiring.governance_context(load_settings())  # what ui.backends.governance serves
    version = _drifted_candidate(browser)
    seen = collect_evidence(browser, MODEL, version, STAGE)

    env = {**os.environ, "TOWER_SERVICE_ACCOUNT": "ci-bot", "TOWER_SERVICE_TOKEN": DEMO_SERVICE_TOKEN}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "promote", "request", "--model", MODEL, "--version", version,
         "--to", STAGE, "--reason", "CI: nightly retrain"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    request = review_state.get_request(browser, done.stdout.strip())
    recorded = review_state.evidence_snapshot(browser, request.evidence_digest)
    assert recorded is not None
    assert (request.requester_name, request.version) == ("service:ci-bot", version)
    recorded_gates, seen_gates = _gates(recorded), _gates(seen)
    assert set(recorded_gates) == set(MONITORED_GATES)
    assert all(status != NO_DATA for status, *_ in recorded_gates.values()), recorded_gates
    assert recorded_gates["drift_share"][0] == FAILED
    assert recorded_gates == seen_gates
    assert (recorded.candidate.drift_share, recorded.fairness_dpd) == (seen.candidate.drift_share, seen.fairness_dpd)


def test_the_governance_context_reads_monitoring_evidence_from_its_own_tower_state(tmp_path: Path) -> None:
    ctx = wiring.governance_context(load_settings({"TOWER_DATA_DIR": str(tmp_path)}))
    try:
        assert isinstance(ctx.monitoring, TowerMonitoringEvidence)
        assert ctx.monitoring.tower is ctx.engine
    finally:
        ctx.engine.dispose()
        if ctx.warehouse is not None:
            ctx.warehouse.dispose()


def test_the_cli_and_the_app_build_their_governance_context_with_the_same_function(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ui import backends

    built: list[object] = []
    real = wiring.Backends.governance

    def spy(self: wiring.Backends, settings=None):
        built.append(settings or self.settings)
        return real(self, settings)

    monkeypatch.setattr(wiring.Backends, "governance", spy)
    settings = load_settings({"TOWER_DATA_DIR": str(tmp_path)})
    backends.stores.clear()
    try:
        cli = commands.context(settings)
        app = backends.governance(settings)
        assert type(cli) is type(app) and isinstance(app.monitoring, TowerMonitoringEvidence)
    finally:
        backends.stores.clear()
    assert built == [settings, settings]


def test_the_app_holds_one_registry_client_and_one_engine_per_store(tmp_path: Path) -> None:
    from ui import backends

    settings = load_settings({"TOWER_DATA_DIR": str(tmp_path)})
    backends.stores.clear()
    try:
        ctx = backends.governance(settings)
        assert backends.registry(settings) is ctx.registry is backends.governance(settings).registry
        assert backends.tower(settings) is ctx.engine
        assert ctx.warehouse is None  # no warehouse file in an empty data folder: latency says "no data"
    finally:
        backends.stores.clear()


def test_settings_that_name_the_same_stores_share_one_set_of_engines(tmp_path: Path) -> None:
    """Every run reads the settings afresh (and tests change the environment): a new settings object
    for the same stores must not open new connection pools, or a long-lived server runs out of them."""
    from ui import backends

    first = load_settings({"TOWER_DATA_DIR": str(tmp_path), "SOMETHING_ELSE": "1"})
    second = load_settings({"TOWER_DATA_DIR": str(tmp_path), "SOMETHING_ELSE": "2"})
    elsewhere = load_settings({"TOWER_DATA_DIR": str(tmp_path / "other")})
    backends.stores.clear()
    try:
        assert backends.tower(first) is backends.tower(second)
        assert backends.registry(first) is backends.registry(second)
        assert backends.tower(elsewhere) is not backends.tower(first)
    finally:
        backends.stores.clear()


def test_the_governance_context_follows_the_policies_of_the_settings_it_is_asked_with(tmp_path: Path) -> None:
    """Sharing the engines must not freeze the policies: an edited tower.yaml reaches the next decision."""
    import dataclasses

    from services.governance.policy import policies
    from ui import backends

    settings = load_settings({"TOWER_DATA_DIR": str(tmp_path)})
    stricter = dataclasses.replace(settings, sections={**settings.sections,
                                                       "policies": {"default": {"approvals_required": 3}}})
    backends.stores.clear()
    try:
        backends.governance(settings)
        ctx = backends.governance(stricter)
        assert ctx.engine is backends.tower(settings)
        assert policies(ctx.settings).for_model("any-model").approvals_required == 3
    finally:
        backends.stores.clear()
