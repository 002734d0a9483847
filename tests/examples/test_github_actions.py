"""examples/github-actions.yml, its gate and request steps run as written (bash, the job's own
environment) against a private copy of the demo: a passing candidate is requested on behalf of the
person who pushed, a failing one stops the pipeline before anything is recorded. The training step is
the user's own; here the demo's registered versions stand in for what it registers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from services.auth.identity import DEMO_SERVICE_TOKEN
from services.governance import review_state
from services.settings import PROJECT_ROOT, load_settings
from services.wiring import governance_context

WORKFLOW = PROJECT_ROOT / "examples" / "github-actions.yml"


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _step(name: str) -> dict:
    return next(s for s in _workflow()["jobs"]["promote"]["steps"] if s.get("name") == name)


def _run(step: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The step's script as the runner would run it: bash -e, in the checkout (here a copy of its tower.yaml)."""
    return subprocess.run(["bash", "-e", "-c", _step(step)["run"]], cwd=env["WORKSPACE"], env=env,
                          capture_output=True, text=True, timeout=300)


def _context(env: dict[str, str]):
    return governance_context(load_settings({"TOWER_DATA_DIR": env["TOWER_DATA_DIR"],
                                             "TOWER_CONFIG": str(Path(env["WORKSPACE"]) / "tower.yaml")}))


@pytest.fixture
def ci_env(demo_dir: Path, tmp_path: Path) -> dict[str, str]:
    shim, workspace = tmp_path / "bin", tmp_path / "workspace"
    shim.mkdir()
    workspace.mkdir()
    shutil.copy(PROJECT_ROOT / "tower.yaml", workspace / "tower.yaml")
    # `tower` as the installed console script would run it (tests/architecture checks the install).
    (shim / "tower").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m services.cli "$@"\n', encoding="utf-8")
    (shim / "tower").chmod(0o755)
    job = {k: str(v) for k, v in _workflow()["env"].items() if "${{" not in str(v)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOWER_", "MLFLOW_", "WAREHOUSE_"))}
    env.update(job)
    env.update({"PATH": f"{shim}:{env.get('PATH', '')}", "PYTHONPATH": str(PROJECT_ROOT), "WORKSPACE": str(workspace),
                "TOWER_DATA_DIR": str(demo_dir), "TOWER_DEMO": "1",
                "TOWER_SERVICE_TOKEN": DEMO_SERVICE_TOKEN, "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
                "GITHUB_SHA": "0123abc", "TRIGGERED_BY": "Dave Kim"})
    for name in ("MLFLOW_TRACKING_URI", "WAREHOUSE_URL", "TOWER_DB_URL"):  # the demo's, from TOWER_DATA_DIR
        env.pop(name, None)
    return env


def test_a_passing_candidate_is_gated_and_requested_on_behalf_of_the_pusher(ci_env: dict[str, str]) -> None:
    env = {**ci_env, "VERSION": "3"}  # demand-forecast v3 → Staging passes every gate of its policy
    gate = _run("tower gate", env)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    suite = ET.parse(Path(env["WORKSPACE"]) / "gate.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8").startswith("### ✅ tower gate")
    request = _run("tower promote request", env)
    assert request.returncode == 0, request.stderr
    recorded = review_state.get_request(_context(env), request.stdout.strip())
    assert (recorded.model, recorded.version, recorded.stage) == ("demand-forecast", "3", "Staging")
    assert recorded.requester_subject == "ci-bot" and recorded.on_behalf_of == "Dave Kim"


def test_a_failing_gate_stops_the_pipeline_before_anything_is_recorded(ci_env: dict[str, str]) -> None:
    env = {**ci_env, "MODEL": "credit-risk", "TARGET_STAGE": "Production", "VERSION": "4"}
    gate = _run("tower gate", env)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    failed = ET.parse(Path(env["WORKSPACE"]) / "gate.xml").getroot().findall("testsuite/testcase[failure]")
    assert [c.get("name") for c in failed] == ["metric:roc_auc", "drift_share"]
    assert not Path(env["GITHUB_STEP_SUMMARY"]).exists(), "bash -e: the step stopped at the failing gate"
    assert review_state.list_requests(_context(env), status="open") == []
