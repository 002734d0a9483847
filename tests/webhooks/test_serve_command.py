"""`webhooks serve` as a user runs it: it refuses to start without a secret or a proven service
account (exit 2, one line, the port never opens), and once started it answers MLflow's deliveries
and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from services import cli
from services.demo.processes import free_port
from tests.support.governance import CI_BOT_TOKEN, open_world
from tests.webhooks.conftest import SECRET, WEBHOOK_POLICIES, signed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with open_world(tmp_path, policies=WEBHOOK_POLICIES) as w:
        for name, value in w.env().items():
            if name.startswith(("TOWER_", "MLFLOW_", "WAREHOUSE_")):
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("TOWER_SECRETS_FILE", str(tmp_path / "no-secrets.toml"))
        yield w


@pytest.mark.parametrize(("env", "said"), [
    ({"TOWER_SERVICE_ACCOUNT": "ci-bot", "TOWER_SERVICE_TOKEN": CI_BOT_TOKEN}, "No webhook secret"),
    ({"TOWER_WEBHOOK_SECRET": "change-me", "TOWER_SERVICE_ACCOUNT": "ci-bot", "TOWER_SERVICE_TOKEN": CI_BOT_TOKEN},
     "placeholder or shorter than 24"),
    ({"TOWER_WEBHOOK_SECRET": SECRET}, "TOWER_SERVICE_ACCOUNT is not set"),
    ({"TOWER_WEBHOOK_SECRET": SECRET, "TOWER_SERVICE_ACCOUNT": "ci-bot"}, "TOWER_SERVICE_TOKEN is not set"),
    ({"TOWER_WEBHOOK_SECRET": SECRET, "TOWER_SERVICE_ACCOUNT": "ci-bot", "TOWER_SERVICE_TOKEN": "wrong"},
     "do not match"),
    ({"TOWER_WEBHOOK_SECRET": SECRET, "TOWER_SERVICE_ACCOUNT": "ci-bot", "TOWER_SERVICE_TOKEN": CI_BOT_TOKEN,
      "TOWER_WEBHOOK_TOLERANCE_S": "nan"}, "TOWER_WEBHOOK_TOLERANCE_S must be"),
])
def test_serve_refuses_to_start_without_a_secret_or_a_proven_account(world, monkeypatch, capsys, env, said) -> None:
    for name in ("TOWER_WEBHOOK_SECRET", "TOWER_SERVICE_ACCOUNT", "TOWER_SERVICE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    assert cli.main(["webhooks", "serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and said in err and SECRET not in err and CI_BOT_TOKEN not in err


def test_the_secret_may_come_from_the_secrets_file(world, tmp_path: Path, monkeypatch) -> None:
    from services.webhooks.secret import webhook_secret

    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[webhooks]\nsecret = "{SECRET}"\n', encoding="utf-8")
    assert webhook_secret({"TOWER_SECRETS_FILE": str(secrets)}) == SECRET
    assert webhook_secret({"TOWER_SECRETS_FILE": str(secrets), "TOWER_WEBHOOK_SECRET": SECRET + "x"}) == SECRET + "x"


@pytest.mark.slow
def test_serve_answers_deliveries_and_stops_on_sigterm(world, tmp_path: Path) -> None:
    port = free_port()
    env = {**world.env(), "TOWER_WEBHOOK_SECRET": SECRET, "TOWER_SERVICE_ACCOUNT": "ci-bot",
           "TOWER_SERVICE_TOKEN": CI_BOT_TOKEN, "TOWER_SECRETS_FILE": str(tmp_path / "none.toml")}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "webhooks", "serve", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        headers, body = signed("credit-risk", "3")
        answer = requests.post(f"http://127.0.0.1:{port}/", data=body, headers=headers, timeout=60)
        assert answer.status_code == 200 and answer.json()["outcome"].startswith("filed request")
        bad = requests.post(f"http://127.0.0.1:{port}/", data=body, headers={**headers, "X-MLflow-Signature": "v1,x"},
                            timeout=10)
        assert bad.status_code == 401
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=20)
    text = log.read_text()
    assert code == 0, text
    delivery = headers["X-MLflow-Delivery-Id"]
    assert f"delivery {delivery} (model_version.created 'credit-risk' v3): 200 filed request" in text
    assert "401 The delivery's signature does not match" in text
    assert SECRET not in text and CI_BOT_TOKEN not in text and headers["X-MLflow-Signature"] not in text
