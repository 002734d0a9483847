"""The ledger's transactions: the serialized write, the plain read, the registry-projection lock.

Appends serialize on the chain head: SQLite takes the write lock up front (``BEGIN IMMEDIATE``,
waiting up to the busy timeout), PostgreSQL a transaction-scoped advisory lock. The work inside is
re-run on a lock timeout, a deadlock or a unique violation, a bounded number of times.
"""

from __future__ import annotations

import fcntl
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.errors import ConfigError, TowerError, TowerStateUnavailable

T = TypeVar("T")
_ADVISORY_LOCK_KEY = 0x746F776572_4C44  # "towerLD": one lock for the chain head of this database
_ATTEMPTS = 6


def first_line(exc: BaseException) -> str:
    """The database's message in one line: error texts reach people and logs, never a traceback."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]


def _retryable(exc: sa.exc.DBAPIError) -> bool:
    if isinstance(exc, sa.exc.IntegrityError):
        return True  # re-run: it now sees the row that won, and answers idempotently or with Conflict
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if code in ("40001", "40P01", "55P03", "57014"):  # serialization, deadlock, lock/statement timeout
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return isinstance(exc, sa.exc.OperationalError) and ("locked" in text or "busy" in text)


def _sqlite_locked(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        # The driver must not open transactions by itself, so that ours starts with the write lock.
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")
        return result


def _postgres_locked(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
        return fn(conn)


def run_locked(engine: Engine, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` in one transaction holding the ledger's write lock; commit; return its result.

    ``fn`` reads what it needs under the lock and may be run again (bounded) after a lock
    timeout, a deadlock or a unique violation. A TowerError raised by ``fn`` rolls back and
    propagates at once.
    """
    dialect = engine.dialect.name
    if dialect == "sqlite":
        locked = _sqlite_locked
    elif dialect == "postgresql":
        locked = _postgres_locked
    else:
        raise ConfigError(f"The tower state must be SQLite or PostgreSQL, not {dialect}.", "Check TOWER_DB_URL.")
    for attempt in range(_ATTEMPTS):
        try:
            return locked(engine, fn)
        except TowerError:
            raise
        except sa.exc.DBAPIError as exc:
            if attempt == _ATTEMPTS - 1 or not _retryable(exc):
                raise TowerStateUnavailable(f"The tower state database refused the write: {first_line(exc)}",
                                            "Try again; if it persists, check TOWER_DB_URL.") from exc
            time.sleep(min(0.5, 0.05 * 2 ** attempt) * (0.5 + random.random()))  # jitter
    raise AssertionError("unreachable")  # pragma: no cover


_PROJECTION_LOCK_KEY = 0x746F776572_5052  # "towerPR": registry projections and repairs, one at a time
PROJECTION_LOCK_WAIT_S = 30.0


@contextmanager
def projection_lock(engine: Engine, wait_s: float = PROJECTION_LOCK_WAIT_S) -> Iterator[None]:
    """Hold the registry-projection lock of this tower state, across threads and processes.

    Projections write to MLflow, which takes seconds; holding the ledger's write lock that long
    would stall every decision, so they have a lock of their own: a session advisory lock on
    PostgreSQL, an exclusive ``flock`` on a file beside the SQLite database. TowerStateUnavailable
    after ``wait_s`` (the decision stays recorded; the repair applies it).
    """
    deadline = time.monotonic() + wait_s
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            while not conn.execute(sa.select(sa.func.pg_try_advisory_lock(_PROJECTION_LOCK_KEY))).scalar():
                if time.monotonic() > deadline:
                    raise TowerStateUnavailable("Another projection of decisions onto the registry is still running.",
                                                "The decision is recorded; run `promote repair` later.")
                time.sleep(0.05)
            try:
                yield
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(_PROJECTION_LOCK_KEY)))
        return
    database = engine.url.database
    path = Path(database + ".projection.lock") if database and database != ":memory:" else None
    if path is None:
        with _MEMORY_LOCK:
            yield
        return
    with open(path, "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TowerStateUnavailable("Another projection of decisions onto the registry is still running.",
                                                "The decision is recorded; run `promote repair` later.") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_MEMORY_LOCK = threading.Lock()


def read(engine: Engine, fn: Callable[[Connection], T]) -> T:
    """Run a read; an unreachable database is TowerStateUnavailable."""
    try:
        with engine.connect() as conn:
            return fn(conn)
    except sa.exc.DBAPIError as exc:
        raise TowerStateUnavailable(f"The tower state database cannot be read: {first_line(exc)}",
                                    "Check TOWER_DB_URL.") from exc
