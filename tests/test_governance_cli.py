"""`python -m services.cli promote ...`: CI requests a promotion under a service account from the
environment, through the same authorization as the browser; anything wrong exits with 2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import cli
from services.governance import promotion
from services.settings import PROJECT_ROOT
from tests.support.governance import RITA, World, open_world

REQUEST = ["promote", "request", "--model", "credit-risk", "--version", "3", "--to", "Production",
           "--reason", "CI: nightly retrain beats production"]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with open_world(tmp_path) as w:
        for key, value in w.env().items():
            if key.startswith(("TOWER_", "MLFLOW_", "WAREHOUSE_")):
                monkeypatch.setenv(key, value)
        monkeypatch.delenv("TOWER_SERVICE_ACCOUNT", raising=False)
        yield w


def test_promote_request_as_ci_bot_records_a_request_and_prints_its_id(
        world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TOWER_SERVICE_ACCOUNT", "ci-bot")
    assert cli.main(REQUEST) == 0
    out, err = capsys.readouterr()
    request = promotion.get_request(world.ctx, out.strip())
    assert (request.requester_issuer, request.requester_subject, request.requester_name) == (
        "tower-service", "ci-bot", "service:ci-bot")
    assert (request.model, request.version, request.stage, request.status) == ("credit-risk", "3", "Production", "open")
    assert "passed   metric:roc_auc" in err
    # the same request again: the open one, nothing new
    assert cli.main(REQUEST) == 0
    again, err = capsys.readouterr()
    assert again == out and "already open" in err
    assert cli.main(["promote", "list", "--status", "open"]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith(f"{request.id}\topen\tcredit-risk\t3\tProduction\t0/1\tservice:ci-bot\t")


def test_promote_request_without_a_service_account_exits_2_and_records_nothing(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(REQUEST) == 2
    assert "TOWER_SERVICE_ACCOUNT is not set" in capsys.readouterr().err
    assert promotion.list_requests(world.ctx) == []


@pytest.mark.parametrize(("account", "message"), [
    ("nobody", "Service account 'nobody' is not declared under auth.service_accounts"),
    ("reader-bot", "may not request promotion of 'credit-risk'"),
])
def test_promote_request_as_an_unknown_or_unauthorized_account_exits_2(
        world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        account: str, message: str) -> None:
    monkeypatch.setenv("TOWER_SERVICE_ACCOUNT", account)
    assert cli.main(REQUEST) == 2
    assert message in capsys.readouterr().err
    assert promotion.list_requests(world.ctx) == []


def test_promote_repair_needs_an_admin_account(
        world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TOWER_SERVICE_ACCOUNT", "ci-bot")
    assert cli.main(["promote", "repair"]) == 2
    assert "admins only" in capsys.readouterr().err
    monkeypatch.setenv("TOWER_SERVICE_ACCOUNT", "ops-bot")
    assert cli.main(["promote", "repair"]) == 0
    assert "Re-applied 0 projection(s)" in capsys.readouterr().out


def test_the_demo_seed_command_is_still_there() -> None:
    args = cli.build_parser().parse_args(["demo", "seed", "--force"])
    assert args.force and args.handler.__name__ == "_demo_seed"


def test_python_dash_m_services_cli_promote_request_runs_as_a_separate_process(world: World) -> None:
    env = world.env() | {"TOWER_SERVICE_ACCOUNT": "ci-bot"}
    done = subprocess.run([sys.executable, "-m", "services.cli", *REQUEST], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    request_id = done.stdout.strip()
    assert promotion.get_request(world.ctx, request_id).requester_subject == "ci-bot"
    assert promotion.approve(world.ctx, RITA, request_id, "CI's request, reviewed").promoted
    env.pop("TOWER_SERVICE_ACCOUNT")
    refused = subprocess.run([sys.executable, "-m", "services.cli", *REQUEST], env=env, cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2 and "TOWER_SERVICE_ACCOUNT is not set" in refused.stderr
