"""`python -m services.cli promote ...`: CI requests a promotion under a service account from the
environment, proven by its token, through the same authorization as the browser; anything wrong
exits with 2. `python -m services.cli token new|hash` makes the tokens."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import cli
from services.auth.identity import DEMO_SERVICE_TOKEN
from services.auth.service_tokens import hash_token, is_token_hash, verify_token
from services.errors import Forbidden
from services.governance import promotion, review_state
from services.settings import PROJECT_ROOT
from tests.support.governance import CI_BOT_TOKEN, OPS_BOT_TOKEN, READER_BOT_TOKEN, RITA, World, open_world, person

REQUEST = ["promote", "request", "--model", "credit-risk", "--version", "3", "--to", "Production",
           "--reason", "CI: nightly retrain beats production"]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with open_world(tmp_path) as w:
        for key, value in w.env().items():
            if key.startswith(("TOWER_", "MLFLOW_", "WAREHOUSE_")):
                monkeypatch.setenv(key, value)
        monkeypatch.delenv("TOWER_SERVICE_ACCOUNT", raising=False)
        monkeypatch.delenv("TOWER_SERVICE_TOKEN", raising=False)
        # never the developer's own .streamlit/secrets.toml
        monkeypatch.setenv("TOWER_SECRETS_FILE", str(tmp_path / "no-secrets.toml"))
        yield w


def _as(monkeypatch: pytest.MonkeyPatch, account: str, token: str | None) -> None:
    monkeypatch.setenv("TOWER_SERVICE_ACCOUNT", account)
    if token is None:
        monkeypatch.delenv("TOWER_SERVICE_TOKEN", raising=False)
    else:
        monkeypatch.setenv("TOWER_SERVICE_TOKEN", token)


def test_promote_request_as_ci_bot_records_a_request_and_prints_its_id(
        world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _as(monkeypatch, "ci-bot", CI_BOT_TOKEN)
    assert cli.main(REQUEST) == 0
    out, err = capsys.readouterr()
    request = review_state.get_request(world.ctx, out.strip())
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
    assert review_state.list_requests(world.ctx) == []


@pytest.mark.parametrize(("account", "token", "message"), [
    ("nobody", CI_BOT_TOKEN, "Service account 'nobody' is not declared under auth.service_accounts"),
    ("reader-bot", READER_BOT_TOKEN, "may not request promotion of 'credit-risk'"),
])
def test_promote_request_as_an_unknown_or_unauthorized_account_exits_2(
        world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        account: str, token: str, message: str) -> None:
    _as(monkeypatch, account, token)
    assert cli.main(REQUEST) == 2
    assert message in capsys.readouterr().err
    assert review_state.list_requests(world.ctx) == []


def test_naming_the_account_without_its_token_is_refused(
        world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # the attack: anyone who can set an environment variable could act as ci-bot
    _as(monkeypatch, "ci-bot", None)
    assert cli.main(REQUEST) == 2
    assert "TOWER_SERVICE_TOKEN is not set: naming the account is not enough" in capsys.readouterr().err
    monkeypatch.setenv("TOWER_SERVICE_TOKEN", "   ")
    assert cli.main(REQUEST) == 2
    assert "TOWER_SERVICE_TOKEN is not set" in capsys.readouterr().err
    assert review_state.list_requests(world.ctx) == []


@pytest.mark.parametrize("token", ["guess", OPS_BOT_TOKEN, CI_BOT_TOKEN[:-1], DEMO_SERVICE_TOKEN])
def test_a_wrong_token_is_refused_without_saying_which_part_was_wrong(
        world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], token: str) -> None:
    _as(monkeypatch, "ci-bot", token)
    assert cli.main(REQUEST) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and token not in err
    assert "do not match" in err or "published demo token" in err
    assert review_state.list_requests(world.ctx) == []


def test_a_hash_in_the_secrets_file_replaces_the_one_in_tower_yaml(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[service_accounts]\nci-bot = "{hash_token("rotated-ci-token")}"\n', encoding="utf-8")
    monkeypatch.setenv("TOWER_SECRETS_FILE", str(secrets))
    _as(monkeypatch, "ci-bot", CI_BOT_TOKEN)  # the old token no longer works
    assert cli.main(REQUEST) == 2 and "do not match" in capsys.readouterr().err
    _as(monkeypatch, "ci-bot", "rotated-ci-token")
    assert cli.main(REQUEST) == 0
    assert review_state.get_request(world.ctx, capsys.readouterr().out.strip()).requester_subject == "ci-bot"


def test_the_published_demo_token_works_only_in_demo_mode(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[service_accounts]\nci-bot = "{hash_token(DEMO_SERVICE_TOKEN)}"\n', encoding="utf-8")
    monkeypatch.setenv("TOWER_SECRETS_FILE", str(secrets))
    _as(monkeypatch, "ci-bot", DEMO_SERVICE_TOKEN)
    monkeypatch.setenv("TOWER_DEMO", "false")
    assert cli.main(REQUEST) == 2
    assert "published demo token is refused outside demo mode" in capsys.readouterr().err
    assert review_state.list_requests(world.ctx) == []
    monkeypatch.setenv("TOWER_DEMO", "true")
    assert cli.main(REQUEST) == 0


def test_an_account_without_a_token_hash_is_refused_with_a_hint(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = world.config.read_text(encoding="utf-8").replace(
        "    reader-bot:\n", "    hashless-bot: {roles: [model_owner]}\n    reader-bot:\n")
    (tmp_path / "hashless.yaml").write_text(config, encoding="utf-8")
    monkeypatch.setenv("TOWER_CONFIG", str(tmp_path / "hashless.yaml"))
    _as(monkeypatch, "hashless-bot", "anything")
    assert cli.main(REQUEST) == 2
    err = capsys.readouterr().err
    assert "has no token hash configured" in err and "token new" in err


def test_promote_repair_needs_an_admin_or_a_repair_account(
        world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _as(monkeypatch, "ci-bot", CI_BOT_TOKEN)
    assert cli.main(["promote", "repair"]) == 2
    assert "admins only" in capsys.readouterr().err
    _as(monkeypatch, "ops-bot", CI_BOT_TOKEN)  # ci-bot's token does not open ops-bot
    assert cli.main(["promote", "repair"]) == 2
    _as(monkeypatch, "ops-bot", OPS_BOT_TOKEN)  # a viewer declared `repair: true`
    assert cli.main(["promote", "repair"]) == 0
    assert "Re-applied 0 projection(s)" in capsys.readouterr().out


def test_a_service_account_may_request_on_behalf_of_a_person_who_then_may_not_approve(
        world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _as(monkeypatch, "ci-bot", CI_BOT_TOKEN)
    assert cli.main([*REQUEST, "--on-behalf-of", "RITA@example.test"]) == 0
    request_id = capsys.readouterr().out.strip()
    request = review_state.get_request(world.ctx, request_id)
    assert request.basis is not None and request.basis.on_behalf_of == "RITA@example.test"  # the ledger row
    with pytest.raises(Forbidden, match="triggered this request"):
        promotion.approve(world.ctx, RITA, request_id, "my own commit, approved by me")
    assert promotion.approve(world.ctx, person("rob", "reviewer"), request_id, "reviewed").promoted


def test_token_new_prints_a_token_and_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["token", "new"]) == 0
    token_line, hash_line = capsys.readouterr().out.splitlines()
    token, stored = token_line.removeprefix("token: "), hash_line.removeprefix("token_hash: ")
    assert len(token) >= 32 and is_token_hash(stored) and verify_token(token, stored)
    assert cli.main(["token", "new"]) == 0
    assert capsys.readouterr().out.splitlines()[0] != token_line


def test_token_hash_reads_the_token_from_stdin(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("my-ci-token\n"))
    assert cli.main(["token", "hash"]) == 0
    out = capsys.readouterr().out.strip()
    assert verify_token("my-ci-token", out) and "my-ci-token" not in out
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli.main(["token", "hash"]) == 2
    assert "No token on stdin" in capsys.readouterr().err


def test_the_demo_seed_command_is_still_there() -> None:
    args = cli.build_parser().parse_args(["demo", "seed", "--force"])
    assert args.force and args.handler.__name__ == "_demo_seed"


def test_python_dash_m_services_cli_promote_request_runs_as_a_separate_process(world: World) -> None:
    env = world.env() | {"TOWER_SERVICE_ACCOUNT": "ci-bot", "TOWER_SERVICE_TOKEN": CI_BOT_TOKEN,
                         "TOWER_SECRETS_FILE": str(world.root / "no-secrets.toml")}
    done = subprocess.run([sys.executable, "-m", "services.cli", *REQUEST], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    request_id = done.stdout.strip()
    assert review_state.get_request(world.ctx, request_id).requester_subject == "ci-bot"
    assert promotion.approve(world.ctx, RITA, request_id, "CI's request, reviewed").promoted
    env.pop("TOWER_SERVICE_TOKEN")
    refused = subprocess.run([sys.executable, "-m", "services.cli", *REQUEST], env=env, cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2 and "TOWER_SERVICE_TOKEN is not set" in refused.stderr
    env.pop("TOWER_SERVICE_ACCOUNT")
    refused = subprocess.run([sys.executable, "-m", "services.cli", *REQUEST], env=env, cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2 and "TOWER_SERVICE_ACCOUNT is not set" in refused.stderr
