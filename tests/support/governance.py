"""A real world for the governance tests: an MLflow registry built through MLflow's API, a SQLite
warehouse with prediction logs, a tower.yaml with policies, and the tower state on SQLite or on a
PostgreSQL database of its own.

The registry (built once per session, copied per test):

  credit-risk (owner alice)        v1 roc_auc 0.80 by alice   alias production
                                   v2 roc_auc 0.85 by alice   alias staging
                                   v3 roc_auc 0.845 by carl   (passes: -0.005 vs v2, +0.045 vs v1)
                                   v4 roc_auc 0.70 by carl    (fails the roc_auc gate)
                                   v5 no roc_auc, by carl     (no data)
  fraud-detection (owner bob)      v1 by bob, p95 ~100 ms     alias production
                                   v2 by carl, p95 ~400 ms    (fails the 250 ms SLO)
                                   v3 by carl, no traffic     (no data)
  HOSTILE_MODEL (owner alice)      v1 by alice                alias production
                                   v2 by carl
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import psycopg.sql
import sqlalchemy as sa
from mlflow import MlflowClient

from services.auth.identity import Actor
from services.governance.context import GovernanceContext
from services.governance.ledger_schema import create_tables
from services.settings import Settings, load_settings
from services.stores.registry import Registry
from services.stores.tower_db import make_tower_engine
from services.stores.warehouse.engine import make_engine
from tests.support.databases import ensure_postgres

ISSUER = "https://idp.test"
OTHER_ISSUER = "https://other-idp.test"
# Markdown, HTML, right-to-left override and zero-width space; MLflow forbids only '/' and ':'.
HOSTILE_MODEL = "<img src=x onerror=alert(1)> **bold** &#60;b&#62; \u202eevil\u200b | = cmd"

POLICY_YAML = """
policies:
  default:
    approvals_required: 1
    approvers: {roles: [reviewer]}
    override_roles: [admin]
    requesters: ["tower-service|ci-bot"]
  credit-risk:
    metrics:
      - {name: roc_auc, direction: higher, max_regression: 0.01}
"""

# The service accounts' tokens (TOWER_SERVICE_TOKEN); CONFIG_YAML holds only their salted hashes.
CI_BOT_TOKEN = "ci-bot-test-token-5f2c81"
OPS_BOT_TOKEN = "ops-bot-test-token-a93e07"
READER_BOT_TOKEN = "reader-bot-test-token-41bd6c"
SERVICE_TOKENS = {"ci-bot": CI_BOT_TOKEN, "ops-bot": OPS_BOT_TOKEN, "reader-bot": READER_BOT_TOKEN}

CONFIG_YAML = """
stages:
  Production: production
  Staging: staging
models:
  fraud-detection:
    table: predictions_fraud_detection
    task: binary_classification
    columns: {request_id: request_id, timestamp: ts, version: model_version,
              prediction: prediction, score: score, label: label,
              latency_ms: latency_ms, status: status}
    features: {numerical: [amount], categorical: []}
    sensitive: []
    reference: {table: predictions_fraud_detection}
    slo: {latency_p95_ms: 250, error_rate: 0.01}
auth:
  roles_claim: groups
  roles: {}
  service_accounts:
    ci-bot:
      roles: [model_owner]
      token_hash: "scrypt$16384$8$1$iAlt2BqFDtEvLziW0APeLw==$WWWv1SyS5d2Z2wnboQTvFWyM7ORbNy5NjdIAeU18XJ4="
    ops-bot:
      roles: [viewer]
      repair: true
      token_hash: "scrypt$16384$8$1$11L781BtqvQQ3TS+54KWCQ==$6Br4MZYHT+jGVma7QMNsFHxOvA88DH4yBaV5V0t2MWY="
    reader-bot:
      roles: [viewer]
      token_hash: "scrypt$16384$8$1$1GbOTvRXswJ2H/e99EiReQ==$1C/lE9SSq/OLi5uS9wx+3QP1bV3YiT1u30etsmgyJKg="
"""


def person(subject: str, *roles: str, issuer: str = ISSUER, email: str | None = None,
           username: str | None = None, person: str | None = None) -> Actor:
    """A signed-in person (kind "person"); ``person`` is the normalised person claim, if any."""
    return Actor(issuer=issuer, subject=subject, name=subject.title(),
                 email=email if email is not None else f"{subject}@example.test", roles=frozenset(roles),
                 kind="person", username=username, person=person)


ALICE = person("alice", "model_owner")
BOB = person("bob", "model_owner")
RITA = person("rita", "reviewer")
ROB = person("rob", "reviewer")
CARL = person("carl", "reviewer")  # created credit-risk v3-v5 and fraud-detection v2-v3
ADA = person("ada", "admin")
VIC = person("vic", "viewer")
DAN = person("dan", "data_scientist")


# ----------------------------------------------------------------------------------------------
# Registry and warehouse, built once
# ----------------------------------------------------------------------------------------------
_VERSIONS = {
    "credit-risk": ("alice", [("alice", {"roc_auc": 0.80}), ("alice", {"roc_auc": 0.85}),
                              ("carl", {"roc_auc": 0.845}), ("carl", {"roc_auc": 0.70}), ("carl", {"accuracy": 0.9})],
                    {"production": "1", "staging": "2"}),
    "fraud-detection": ("bob", [("bob", {"roc_auc": 0.9}), ("carl", {"roc_auc": 0.91}), ("carl", {"roc_auc": 0.92})],
                        {"production": "1"}),
    HOSTILE_MODEL: ("alice", [("alice", {}), ("carl", {})], {"production": "1"}),
}


def build_registry(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "mlflow.db"
    uri = f"sqlite:///{db}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("governance-tests", artifact_location=str(folder / "artifacts"))
    for model, (owner, versions, aliases) in _VERSIONS.items():
        client.create_registered_model(model, tags={"owner": owner})
        for creator, metrics in versions:
            run = client.create_run(experiment, tags={"mlflow.user": creator})
            for key, value in metrics.items():
                client.log_metric(run.info.run_id, key, value)
            client.set_terminated(run.info.run_id)
            source = str(folder / "artifacts" / run.info.run_id)
            client.create_model_version(model, source=source, run_id=run.info.run_id)
        for alias, version in aliases.items():
            client.set_registered_model_alias(model, alias, version)
    return db


def build_warehouse(folder: Path, now: datetime) -> str:
    """Prediction logs of fraud-detection over the last days: v1 fast, v2 slow, v3 silent."""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'warehouse.db'}"
    rng = np.random.default_rng(7)
    rows = []
    base = now.astimezone(UTC).replace(tzinfo=None) - timedelta(days=3)
    for version, mean in (("1", 100.0), ("2", 400.0)):
        for i in range(200):
            rows.append({"request_id": f"{version}-{i}", "ts": base + timedelta(minutes=i),
                         "model_version": version, "prediction": 0, "score": 0.1, "label": 0,
                         "latency_ms": float(rng.normal(mean, 5.0)), "status": "ok", "amount": 1.0})
    engine = sa.create_engine(url)
    pd.DataFrame(rows).to_sql("predictions_fraud_detection", engine, index=False)
    engine.dispose()
    return url


# ----------------------------------------------------------------------------------------------
# Tower state
# ----------------------------------------------------------------------------------------------
class TowerDatabase:
    """A fresh tower-state database: a SQLite file, or a PostgreSQL database made for one test."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.name: str | None = None
        if kind == "sqlite":
            self.url = f"sqlite:///{folder / 'tower.db'}"
            return
        base = ensure_postgres()
        if base is None:
            import pytest

            pytest.skip("no PostgreSQL installed here")
        self._base = sa.make_url(base)
        self.name = f"tower_gov_{uuid.uuid4().hex[:16]}"
        with self._admin() as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(self.name)))
        self.url = self._base.set(database=self.name).render_as_string(hide_password=False)

    def _admin(self) -> psycopg.Connection:
        b = self._base
        return psycopg.connect(host=b.host, port=b.port, user=b.username, password=b.password, dbname="postgres",
                               autocommit=True, connect_timeout=5)

    def drop(self) -> None:
        if self.name is not None:
            with self._admin() as conn:
                conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(self.name)))


# ----------------------------------------------------------------------------------------------
# One world per test
# ----------------------------------------------------------------------------------------------
@dataclass
class World:
    root: Path
    config: Path
    registry_uri: str
    warehouse_url: str
    tower_url: str
    settings: Settings
    ctx: GovernanceContext

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.registry_uri, registry_uri=self.registry_uri)

    def env(self) -> dict[str, str]:
        """The environment a subprocess (CLI, crash script, worker) needs to see this world."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOWER_", "MLFLOW_", "WAREHOUSE_"))}
        env.update({"TOWER_CONFIG": str(self.config), "MLFLOW_TRACKING_URI": self.registry_uri,
                    "WAREHOUSE_URL": self.warehouse_url, "TOWER_DB_URL": self.tower_url,
                    "TOWER_DATA_DIR": str(self.root / "data")})
        return env

    def dispose(self) -> None:
        self.ctx.engine.dispose()
        if self.ctx.warehouse is not None:
            self.ctx.warehouse.dispose()


def write_config(path: Path, policies: str = POLICY_YAML) -> Path:
    path.write_text(CONFIG_YAML + policies, encoding="utf-8")
    return path


def make_world(root: Path, registry_template: Path, warehouse_url: str, tower_url: str,
               policies: str = POLICY_YAML, legacy: bool = False) -> World:
    root.mkdir(parents=True, exist_ok=True)
    db = root / "mlflow.db"
    shutil.copy2(registry_template, db)
    registry_uri = f"sqlite:///{db}"
    config = write_config(root / "tower.yaml", policies)
    settings = load_settings({"TOWER_CONFIG": str(config), "MLFLOW_TRACKING_URI": registry_uri,
                              "WAREHOUSE_URL": warehouse_url, "TOWER_DB_URL": tower_url,
                              "TOWER_DATA_DIR": str(root / "data"),
                              "TOWER_USE_LEGACY_STAGES": "true" if legacy else "false"})
    engine = make_tower_engine(tower_url)
    create_tables(engine)
    ctx = GovernanceContext(settings=settings, registry=Registry(registry_uri), engine=engine,
                            warehouse=make_engine(warehouse_url))
    return World(root, config, registry_uri, warehouse_url, tower_url, settings, ctx)


_shared: dict[str, object] = {}
_shared_lock = threading.Lock()


def shared_stores() -> tuple[Path, str]:
    """(registry template file, warehouse URL), built once per process and removed at exit."""
    with _shared_lock:
        if not _shared:
            folder = Path(tempfile.mkdtemp(prefix="tower-governance-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            _shared["registry"] = build_registry(folder / "registry")
            _shared["warehouse"] = build_warehouse(folder / "warehouse", datetime.now(UTC))
    return _shared["registry"], _shared["warehouse"]  # type: ignore[return-value]


@contextmanager
def open_world(root: Path, kind: str = "sqlite", *, policies: str = POLICY_YAML,
               legacy: bool = False) -> Iterator[World]:
    """A private registry copy, the shared warehouse and a fresh tower state of ``kind``."""
    template, warehouse_url = shared_stores()
    database = TowerDatabase(kind, root)
    try:
        world = make_world(root, template, warehouse_url, database.url, policies, legacy)
        try:
            yield world
        finally:
            world.dispose()
    finally:
        database.drop()


def context_from_env() -> GovernanceContext:
    """What a separate process builds from World.env() (no schema creation: the test made it); like
    the World's own context, without a monitoring source, so both record the same evidence."""
    from dataclasses import replace

    from services.wiring import governance_context

    return replace(governance_context(load_settings(), create_schema=False), monitoring=None)


class FixedMonitoring:
    """A MonitoringEvidence with given answers (the monitoring subsystem's interface, not ours)."""

    def __init__(self, drift: dict[str, float | None] | None = None, dpd: float | None = None) -> None:
        self.drift = drift or {}
        self.dpd = dpd

    def latest_drift_share(self, model: str, version: str) -> float | None:
        return self.drift.get(version)

    def latest_fairness_dpd(self, model: str) -> float | None:
        return self.dpd


# ----------------------------------------------------------------------------------------------
# Other processes
# ----------------------------------------------------------------------------------------------
def decide_in_process(env: dict[str, str], subject: str, verdict: str, request_id: str,
                      barrier: object, results: object) -> None:
    """A separate process: build everything from the environment, wait for the others, decide."""
    from services.errors import TowerError
    from services.governance import promotion

    os.environ.update(env)
    ctx = context_from_env()
    actor = person(subject, "reviewer")
    ctx.registry.model_tags("credit-risk")  # warm up: the race is the decision, not the imports
    try:
        barrier.wait(timeout=120)  # type: ignore[attr-defined]
        if verdict == "approve":
            outcome = promotion.approve(ctx, actor, request_id, f"{subject} approves")
        else:
            outcome = promotion.reject(ctx, actor, request_id, f"{subject} rejects")
        answer = ("created" if outcome.created else "same", outcome.decision.decision_id, outcome.projection_error)
    except TowerError as exc:
        answer = (type(exc).__name__, str(exc), None)
    except BaseException as exc:  # reported, so the test shows it
        answer = ("crash", repr(exc), None)
    finally:
        ctx.engine.dispose()
    results.put((subject, verdict, *answer))  # type: ignore[attr-defined]


CRASH_SCRIPT = """
import os, sys
from services.governance import ledger, projection, promotion
from tests.support.governance import context_from_env, person

where, request_id = sys.argv[1], sys.argv[2]
ctx = context_from_env()
if where == "before_tags":   # the ledger has committed; nothing reached the registry
    projection.apply_projection = lambda *args, **kwargs: os._exit(9)
else:                        # tags and alias written; the projection not yet recorded
    ledger.record_projection = lambda *args, **kwargs: os._exit(9)
promotion.approve(ctx, person("rita", "reviewer"), request_id, "approved, then the process dies")
sys.exit(0)
"""
