"""The tower's own state (TOWER_DB_URL): one MetaData for every table the app owns.

Each subsystem declares its tables on ``METADATA`` in its own module (monitoring results in
``services.monitoring.store``, the decision ledger in ``services.governance.ledger_schema``);
``create_schema`` imports them all so one call creates everything. SQLite (embedded default) and
PostgreSQL (production) are supported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from services.errors import TowerStateUnavailable

METADATA = sa.MetaData()
# Modules that declare tables on METADATA; imported lazily so a subsystem can be absent.
TABLE_MODULES = ("services.monitoring.store", "services.governance.ledger_schema", "services.webhooks.deliveries",
                 "services.notify.outbox")
# Upgrades of existing databases (new nullable columns, new triggers), registered by the modules that
# own the tables; each is idempotent and runs after create_all.
UPGRADES: list[Any] = []
F = TypeVar("F", bound=Callable[..., Any])


def schema_upgrade(fn: F) -> F:
    """Register an upgrade of existing databases. It runs at start-up (``create_schema``), by the role
    that owns the tables, on behalf of no actor: it may rewrite derived columns, never a ledger row."""
    UPGRADES.append(fn)
    return fn


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer commits; busy_timeout makes concurrent writers
    # (two reviewers, a CLI and the app) wait for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_tower_engine(url: str, *, connect_timeout_s: float = 10.0, statement_timeout_s: float = 30.0) -> Engine:
    """An engine on the tower state; the embedded SQLite file and its folder are created if absent."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": connect_timeout_s})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": max(1, int(connect_timeout_s)),
                        "options": f"-c statement_timeout={int(statement_timeout_s * 1000)}"}
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_timeout=connect_timeout_s,
                            connect_args=connect_args)


def create_schema(engine: Engine) -> None:
    """Create every table of the tower state that does not exist yet (idempotent)."""
    for module in TABLE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not exc.name or not module.startswith(exc.name):  # a missing import inside the module
                raise
    try:
        METADATA.create_all(engine)
        for upgrade in UPGRADES:
            upgrade(engine)
    except sa.exc.OperationalError as exc:
        raise TowerStateUnavailable(
            f"The tower state database cannot be reached: {str(exc.orig).splitlines()[0]}",
            "Check TOWER_DB_URL.") from exc


def ping(engine: Engine) -> None:
    """Ask the tower state the cheapest question; TowerStateUnavailable if it does not answer."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        raise TowerStateUnavailable(
            f"The tower state database cannot be reached: {str(exc.orig).splitlines()[0]}",
            "Check TOWER_DB_URL.") from exc
