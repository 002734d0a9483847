"""examples/github-actions.yml, its install, gate and request steps run as written (bash, the job's
own environment) against a private copy of the demo: the install step puts `tower` in a fresh venv
from a copy of the checkout, a passing candidate is requested on behalf of the person who pushed, a
failing one stops the pipeline before anything is recorded. The training step is the user's own;
here the demo's registered versions stand in for what it registers."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from services.auth.identity import DEMO_SERVICE_TOKEN
from services.governance import review_state
from services.settings import PROJECT_ROOT, load_settings
from services.wiring import governance_context
from tests.support import installed_tower

WORKFLOW = PROJECT_ROOT / "examples" / "github-actions.yml"

pytestmark = pytest.mark.slow  # the install step builds the tower and installs it into a fresh venv


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _step(name: str) -> dict:
    return next(s for s in _workflow()["jobs"]["promote"]["steps"] if s.get("name") == name)


def _run(step: str, env: Mapping[str, str], cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """The step's script as the runner would run it: bash -e, in the checkout (for the gate and request
    steps, a folder holding a copy of its tower.yaml)."""
    return subprocess.run(["bash", "-e", "-c", _step(step)["run"]], cwd=cwd or env["WORKSPACE"], env=env,
                          capture_output=True, text=True, timeout=300)


def _job_env() -> dict[str, str]:
    """The job's literal env entries (the ${{ }} ones are the repository's secrets and variables)."""
    return {k: str(v) for k, v in _workflow()["env"].items() if "${{" not in str(v)}


@pytest.fixture(scope="module")
def runner_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runner after the workflow's install step: a fresh venv first on PATH (setup-python's
    python and pip), the step run as written in a copy of the checkout. Its pinned dependencies
    resolve to this interpreter's (tests/support/installed_tower.py): the tower itself is built and
    installed by the step."""
    root = tmp_path_factory.mktemp("runner")
    venv = installed_tower.fresh_venv(root / "venv", with_pip=True)
    checkout = installed_tower.copy_checkout(root / "checkout")
    done = _run("install", installed_tower.clean_env(venv, **_job_env()), cwd=str(checkout))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (venv.bin / "tower").is_file(), "the install step gave no `tower` console script"
    shutil.rmtree(checkout)  # the steps after it run the installed tower, not the sources
    return venv.bin


def _context(env: dict[str, str]):
    return governance_context(load_settings({"TOWER_DATA_DIR": env["TOWER_DATA_DIR"],
                                             "TOWER_CONFIG": str(Path(env["WORKSPACE"]) / "tower.yaml")}))


@pytest.fixture
def ci_env(runner_bin: Path, demo_dir: Path, tmp_path: Path) -> dict[str, str]:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    shutil.copy(PROJECT_ROOT / "tower.yaml", workspace / "tower.yaml")
    # No PYTHONPATH: `tower` must run the package the install step installed, not this checkout.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TOWER_", "MLFLOW_", "WAREHOUSE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(_job_env())
    env.update({"PATH": f"{runner_bin}{os.pathsep}{env.get('PATH', '')}", "WORKSPACE": str(workspace),
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
