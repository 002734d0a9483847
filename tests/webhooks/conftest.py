"""The webhook receiver's world: the governance test registry and warehouse (tests/support/governance.py),
a tower.yaml whose credit-risk policy says ``auto_request: Staging``, the receiver on loopback as the
ci-bot service account, and deliveries signed the way MLflow signs them (MLflow's own signing code)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from mlflow.webhooks.delivery import _generate_hmac_signature  # the sender's code: our oracle

from services.auth.identity import Actor
from services.governance import review_state
from services.governance.commands import cli_actor
from services.stores.tower_db import create_schema
from services.webhooks.deliveries import DELIVERIES
from services.webhooks.server import Receiver, make_server
from tests.support.governance import CI_BOT_TOKEN, World, open_world

SECRET = "whsec-test-8c1f0f6e2b9a4d7e93a5c2d1"
WEBHOOK_POLICIES = """
policies:
  default:
    approvals_required: 1
    approvers: {roles: [reviewer]}
    override_roles: [admin]
    requesters: ["tower-service|ci-bot"]
  credit-risk:
    auto_request: staging          # any case: the configured stage is Staging
    metrics:
      - {name: roc_auc, direction: higher, max_regression: 0.01}
  fraud-detection:                 # governed (mapped, own policy), no auto_request
    metrics:
      - {name: roc_auc, direction: higher, max_regression: 0.005}
"""


def signed(model: str, version: str, *, event: tuple[str, str] = ("model_version", "created"),
           delivery_id: str | None = None, timestamp: int | None = None,
           secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    """Headers and body exactly as MLflow 3.17's ``_send_webhook_request`` builds them."""
    body = json.dumps({"entity": event[0], "action": event[1], "timestamp": datetime.now(UTC).isoformat(),
                       "data": {"name": model, "version": version, "source": "models:/x", "run_id": None,
                                "tags": {}, "description": None}})
    delivery_id = delivery_id or str(uuid.uuid4())
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery_id,
               "X-MLflow-Timestamp": stamp,
               "X-MLflow-Signature": _generate_hmac_signature(secret, delivery_id, stamp, body)}
    return headers, body.encode("utf-8")


@dataclass
class Hook:
    world: World
    actor: Actor
    receiver: Receiver
    url: str

    def post(self, headers: dict[str, str], body: bytes) -> requests.Response:
        return requests.post(self.url, data=body, headers=headers, timeout=60)

    def requests_of(self, model: str) -> list[review_state.PromotionRequest]:
        return review_state.list_requests(self.world.ctx, model=model)

    def deliveries(self) -> list[dict[str, Any]]:
        with self.world.ctx.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(DELIVERIES)).mappings()]

    def ledger_rows(self) -> int:
        with self.world.ctx.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM governance_ledger")).scalar_one())


@contextmanager
def serving(receiver: Receiver) -> Iterator[str]:
    """The receiver on a free loopback port, in a thread; its URL."""
    server = make_server(receiver, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mlflow-webhook"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def open_hook(root: Path, monkeypatch: pytest.MonkeyPatch, kind: str = "sqlite") -> Iterator[Hook]:
    with open_world(root, kind, policies=WEBHOOK_POLICIES) as world:
        create_schema(world.ctx.engine)  # the world makes the ledger tables only
        monkeypatch.setenv("TOWER_SERVICE_ACCOUNT", "ci-bot")
        monkeypatch.setenv("TOWER_SERVICE_TOKEN", CI_BOT_TOKEN)
        actor = cli_actor(world.settings)  # as `webhooks serve` proves the account
        receiver = Receiver(ctx=world.ctx, actor=actor, secret=SECRET)
        with serving(receiver) as url:
            yield Hook(world, actor, receiver, url)


@pytest.fixture
def hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    with open_hook(tmp_path, monkeypatch) as h:
        yield h
