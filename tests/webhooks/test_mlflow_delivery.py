"""End to end with MLflow itself: a real `mlflow server` on loopback, the webhook created through
MLflow's API by `webhooks register`, versions registered through MLflow's REST API, and MLflow
delivering the signed events to the receiver, which files the request with its evidence."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet
from mlflow import MlflowClient

from services import cli
from services.governance import review_state
from services.governance.evidence import PASSED
from services.stores.registry import Registry
from services.webhooks.server import Answer, Receiver
from tests.support.mlflow_server import run_mlflow_server
from tests.webhooks.conftest import SECRET, Hook, open_hook, serving

pytestmark = pytest.mark.slow
HTTP_ENV = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER")


@dataclasses.dataclass
class Recording(Receiver):
    """The receiver, keeping what MLflow sent and what it answered (to re-post a captured delivery)."""

    seen: list[tuple[dict[str, str], bytes, Answer]] = dataclasses.field(default_factory=list)

    def receive(self, headers: Mapping[str, str], body: bytes) -> Answer:
        answer = super().receive(headers, body)
        self.seen.append((dict(headers), body, answer))
        return answer


def _wait_for(what: str, found: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"MLflow did not deliver within {timeout_s:.0f} s: {what}")


def _new_version(client: MlflowClient, model: str, metrics: dict[str, float]) -> str:
    experiment = client.get_experiment_by_name("governance-tests").experiment_id
    run = client.create_run(experiment, tags={"mlflow.user": "dora"})
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return str(client.create_model_version(model, source=f"{run.info.artifact_uri}/model",
                                           run_id=run.info.run_id).version)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Hook, str, Recording]]:
    for name in HTTP_ENV:
        monkeypatch.delenv(name, raising=False)
    # The MLflow server's side (read at its start): our receiver is on loopback over http, which
    # MLflow's SSRF guard refuses unless told it is a development setup; a fixed key so the stored
    # webhook secret survives a server restart.
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
    monkeypatch.setenv("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", Fernet.generate_key().decode())
    with open_hook(tmp_path, monkeypatch) as hook, \
            run_mlflow_server(hook.world.registry_uri, tmp_path / "served-artifacts") as mlflow_url:
        rest = dataclasses.replace(hook.world.ctx, registry=Registry(mlflow_url, timeout_s=10, max_retries=0))
        receiver = Recording(ctx=rest, actor=hook.actor, secret=SECRET)
        with serving(receiver) as url:
            monkeypatch.setenv("TOWER_CONFIG", str(hook.world.config))
            monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_url)
            monkeypatch.setenv("TOWER_DATA_DIR", str(tmp_path / "data"))
            monkeypatch.setenv("TOWER_WEBHOOK_SECRET", SECRET)
            yield hook, url, receiver


def test_mlflow_delivers_a_new_version_and_the_receiver_files_its_request_once(served, capsys) -> None:
    hook, url, receiver = served
    assert cli.main(["webhooks", "register", "--url", url, "--name", "tower-test"]) == 0
    hook_id = capsys.readouterr().out.strip()
    assert cli.main(["webhooks", "register", "--url", url, "--name", "tower-test"]) == 0  # idempotent
    assert capsys.readouterr().out.strip() == hook_id
    client = MlflowClient(tracking_uri=receiver.ctx.registry.tracking_uri)
    (webhook,) = [w for w in client.list_webhooks() if w.name == "tower-test"]
    assert webhook.webhook_id == hook_id and [str(e) for e in webhook.events] == ["model_version.created"]

    version = _new_version(client, "credit-risk", {"roc_auc": 0.86})  # MLflow's REST API, as a trainer would
    request = _wait_for(f"a request for credit-risk v{version}",
                        lambda: [r for r in hook.requests_of("credit-risk") if r.version == version])[0]
    assert (request.stage, request.status, request.requester_name) == ("Staging", "open", "service:ci-bot")
    evidence = review_state.evidence_snapshot(hook.world.ctx, request.evidence_digest or "")
    assert evidence is not None
    (gate,) = evidence.gates
    assert gate.status == PASSED and gate.candidate == pytest.approx(0.86) and gate.holder == pytest.approx(0.85)

    # What MLflow sent, posted again (its own retry): nothing more is recorded.
    (headers, body, answer) = _wait_for("the answer", lambda: [s for s in receiver.seen
                                                              if s[2].body.get("request_id") == request.id])[0]
    assert headers["X-MLflow-Signature"].startswith("v1,") and answer.status == 200
    rows = hook.ledger_rows()
    again = requests.post(url, data=body, headers=headers, timeout=60)
    assert again.status_code == 200 and "duplicate delivery" in again.json()["outcome"]
    assert hook.ledger_rows() == rows and len(hook.requests_of("credit-risk")) == 1

    # The same capture played after the window: refused as a replay, nothing recorded.
    receiver.clock = lambda: time.time() + 301
    assert requests.post(url, data=body, headers=headers, timeout=60).status_code == 400
    receiver.clock = time.time
    assert hook.ledger_rows() == rows and len(hook.deliveries()) == 1

    # A model the tower does not govern, and a governed one whose policy has no auto_request.
    client.create_registered_model("sandbox-model")
    _new_version(client, "sandbox-model", {"roc_auc": 0.99})
    sandbox = _wait_for("sandbox-model", lambda: [s for s in receiver.seen if b'"sandbox-model"' in s[1]])
    assert sandbox[0][2].status == 200 and "not governed" in sandbox[0][2].body["outcome"]
    fraud = _new_version(client, "fraud-detection", {"roc_auc": 0.95})
    answered = _wait_for("fraud-detection", lambda: [s for s in receiver.seen if b'"fraud-detection"' in s[1]])
    assert answered[0][2].body["outcome"].startswith("nothing filed (the policy has no auto_request)")
    assert f"fraud-detection v{fraud} → Staging" in answered[0][2].body["outcome"]
    assert hook.ledger_rows() == rows and len(hook.deliveries()) == 2
    assert review_state.list_requests(hook.world.ctx, model="fraud-detection") == []


def test_register_refuses_without_a_secret_or_with_an_unreachable_server_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("TOWER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOWER_SECRETS_FILE", str(tmp_path / "none.toml"))
    monkeypatch.delenv("TOWER_WEBHOOK_SECRET", raising=False)
    assert cli.main(["webhooks", "register", "--url", "http://127.0.0.1:1/x"]) == 2
    assert "No webhook secret" in capsys.readouterr().err
    monkeypatch.setenv("TOWER_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("TOWER_MLFLOW_TIMEOUT_S", "1")
    monkeypatch.setenv("TOWER_MLFLOW_MAX_RETRIES", "0")
    for name in HTTP_ENV:
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["webhooks", "register", "--url", "http://127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "registry" in err.lower() and SECRET not in err
    assert cli.main(["webhooks", "register", "--url", "ftp://example.test/x"]) == 2
    assert "--url must be an http(s) URL" in capsys.readouterr().err
