"""The warehouse engine: read-only connections, and what a failure of the warehouse tells the user.

Every query of this package runs inside :func:`connection`, so a failure comes out as
WarehouseUnavailable (the database is down, busy or too slow) or MappingError (the mapped table or
column does not fit); the URL's password never reaches a message.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.pool import QueuePool

from services.errors import MappingError, WarehouseUnavailable
from services.mapping import ModelMapping
from services.stores.warehouse import thrift
from services.stores.warehouse.resources import WarehouseResources

MISSING_FILE_HINT = "Set WAREHOUSE_URL or run `make seed`."
STATEMENT_TIMEOUT_S = 30.0  # TOWER_WAREHOUSE_STATEMENT_TIMEOUT_S's default: no page waits minutes for a query
_QUERY_CANCELED = "57014"  # SQLSTATE of a statement cancelled by statement_timeout
# Errors a database gives for a table, schema or column that is not there.
_MISSING_SQLSTATES = {"42P01", "42703", "3F000", "42S02", "42S22"}
_MISSING_TEXT = re.compile(
    r"no such (table|column)|does not exist|not found|unknown (table|column)|invalid (object|column) name",
    re.IGNORECASE,
)


def make_engine(url: str, *, connect_timeout_s: float = 10.0, statement_timeout_s: float = STATEMENT_TIMEOUT_S,
                duckdb_config: Mapping[str, Any] | None = None) -> Engine:
    """An engine that only reads the warehouse.

    DuckDB files open ``read_only`` (several processes may read one file, none can write);
    SQLite files open with ``mode=ro``; PostgreSQL sessions default to read-only transactions and
    UTC, and the server cancels any statement running longer than ``statement_timeout_s``; Spark
    Thrift servers (``hive://``) get the same timeouts, UTC and only queries (``thrift``). Server
    databases get a bounded pool (5 + 5 overflow; waiting ``connect_timeout_s`` for a free
    connection). A missing DuckDB or SQLite file raises WarehouseUnavailable instead of being created.
    ``duckdb_config`` (DuckDB only: ``memory_limit``, ``threads``, ``temp_directory``, from tower.yaml's
    ``warehouse`` section, ``services.stores.warehouse.resources``; its defaults when None) is SET on
    every DuckDB connection.
    """
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:  # the text may hold a password: do not echo it
        raise WarehouseUnavailable(
            "The warehouse URL is not a valid SQLAlchemy URL.", "Check WAREHOUSE_URL."
        ) from exc
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    options: dict[str, Any] = {"pool_pre_ping": True}

    if backend == "duckdb":
        path = _local_file(parsed)
        if path is not None:
            _require_file(path)
            connect_args["read_only"] = True
        # Applied with SET on each new connection, not as connect-time config: DuckDB refuses a second
        # connection to an open file whose config differs, which would lock a re-read tower.yaml's new
        # engine (or any plain read-only reader) out of the file while the old engine's pool holds it.
        # The settings are the process's database instance's, so the newest engine's apply.
        duckdb_settings = dict(WarehouseResources().duckdb_config() if duckdb_config is None else duckdb_config)
    elif backend == "sqlite":
        path = _local_file(parsed)
        if path is not None and parsed.query.get("uri") != "true":
            _require_file(path)
            parsed = parsed.set(database=path.resolve().as_uri(), query={**parsed.query, "mode": "ro", "uri": "true"})
    else:
        timeout = max(1, math.ceil(connect_timeout_s))
        if backend == "postgresql":
            connect_args["connect_timeout"] = timeout
        elif backend in ("mysql", "mariadb"):
            connect_args["connect_timeout"] = timeout
        elif backend == "hive" and parsed.get_driver_name() == "thrift":  # not hive+http(s): PyHive's own
            thrift_url = parsed
            options["creator"] = lambda: thrift.connect(thrift_url, connect_timeout_s, statement_timeout_s)
    try:
        if backend not in ("duckdb", "sqlite") and issubclass(
            cast("type[DefaultDialect]", parsed.get_dialect()).get_pool_class(parsed), QueuePool
        ):
            options.update(pool_size=5, max_overflow=5, pool_recycle=1800, pool_timeout=connect_timeout_s)
        engine = sa.create_engine(parsed, connect_args=connect_args, **options)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise WarehouseUnavailable(
            f"No usable SQLAlchemy driver for the warehouse at {safe_url(parsed)}: {first_line(exc)}.",
            "Install the dialect's driver or check WAREHOUSE_URL.",
        ) from exc
    if backend == "duckdb":
        event.listen(engine, "connect", functools.partial(_duckdb_session, settings=duckdb_settings))
    if backend == "postgresql":
        timeout_ms = max(1, math.ceil(statement_timeout_s * 1000))
        event.listen(engine, "connect", functools.partial(_postgres_session, statement_timeout_ms=timeout_ms))
    if backend == "hive":
        event.listen(engine, "before_cursor_execute", thrift.refuse_writes)
        event.listen(engine, "handle_error", thrift.lost_connection)
    return engine


def _local_file(url: URL) -> Path | None:
    """The file a DuckDB/SQLite URL opens, or None for in-memory and remote databases."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith(("file:", "md:", "motherduck:")):
        return None
    return Path(database)


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise WarehouseUnavailable(f"The warehouse file {path.resolve()} does not exist.", MISSING_FILE_HINT)


def _duckdb_session(dbapi_connection: Any, _record: Any, *, settings: Mapping[str, Any]) -> None:
    """Every DuckDB connection: the warehouse section's memory_limit, threads and spill folder."""
    cursor = dbapi_connection.cursor()
    try:
        for name, value in settings.items():
            literal = str(int(value)) if name == "threads" else "'" + str(value).replace("'", "''") + "'"
            cursor.execute(f"SET {name} = {literal}")  # names are resources.py's three keys, never input
    finally:
        cursor.close()


def _postgres_session(dbapi_connection: Any, _record: Any, *, statement_timeout_ms: int) -> None:
    """Every PostgreSQL session of the dashboard reads only, in UTC, with a statement timeout."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.execute("SET default_transaction_read_only = on")
        cursor.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
    finally:
        cursor.close()
    dbapi_connection.commit()  # or the pool's reset-on-return rollback would undo the SETs


def safe_url(url: URL | str) -> str:
    """The URL as it may be shown: its password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "(unparseable URL)"


def first_line(exc: BaseException, secret: str | None = None) -> str:
    """The first line of an error's text, ``secret`` masked: drivers put whole statements after it."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip().rstrip(".!")
    if secret:
        text = text.replace(secret, "***")
    return text or type(exc).__name__


def _reason(engine: Engine, exc: sa_exc.DBAPIError) -> str:
    status = thrift.status_of(exc.orig) if exc.orig is not None else None
    if status is not None:
        return first_line(RuntimeError(status[1]), engine.url.password)
    return first_line(exc.orig if exc.orig is not None else exc, engine.url.password)


def _sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    orig = exc.orig
    status = thrift.status_of(orig) if orig is not None else None
    if status is not None:
        return status[0]
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def _unavailable(engine: Engine, exc: sa_exc.DBAPIError) -> WarehouseUnavailable:
    return WarehouseUnavailable(
        f"Cannot reach the warehouse at {safe_url(engine.url)}: {_reason(engine, exc)}.",
        "Check WAREHOUSE_URL and that the database is running.",
    )


def is_missing_object(exc: sa_exc.DBAPIError) -> bool:
    """True when the database says a table, schema or column does not exist."""
    orig = exc.orig
    state = _sqlstate(exc)
    if state:
        return state in _MISSING_SQLSTATES
    if type(orig).__name__ in ("CatalogException", "BinderException"):  # DuckDB
        return True
    return bool(_MISSING_TEXT.search(str(orig)))


def _query_failed(engine: Engine, mapping: ModelMapping | None, exc: sa_exc.DBAPIError) -> Exception:
    """A failed statement: too slow, the connection broke (unavailable) or the mapping does not fit."""
    if _sqlstate(exc) == _QUERY_CANCELED or thrift.timed_out(exc.orig):
        return WarehouseUnavailable(
            f"The warehouse at {safe_url(engine.url)} did not answer in time: {_reason(engine, exc)}.",
            "The query ran past TOWER_WAREHOUSE_STATEMENT_TIMEOUT_S; the database may be overloaded. Try again later.",
        )
    connection_problem = exc.connection_invalidated or (
        type(exc) in (sa_exc.OperationalError, sa_exc.DatabaseError, sa_exc.InterfaceError)
        and not is_missing_object(exc)
    )
    if connection_problem or mapping is None:
        return WarehouseUnavailable(
            f"The warehouse at {safe_url(engine.url)} failed to answer: {_reason(engine, exc)}.",
            "Check WAREHOUSE_URL and that the database is running.",
        )
    return MappingError(
        f"Reading table {mapping.table} for model '{mapping.name}' failed: {_reason(engine, exc)}.",
        f"A mapped table or column is missing or has the wrong type: check models.{mapping.name} in tower.yaml.",
    )


@contextmanager
def connection(engine: Engine, mapping: ModelMapping | None) -> Iterator[Connection]:
    """A connection whose failures come out as WarehouseUnavailable or MappingError."""
    try:
        conn = engine.connect()
    except sa_exc.DBAPIError as exc:
        raise _unavailable(engine, exc) from exc
    except sa_exc.TimeoutError as exc:
        raise WarehouseUnavailable(
            f"Every connection to the warehouse at {safe_url(engine.url)} is busy.", "Try again in a moment."
        ) from exc
    try:
        with conn:
            yield conn
    except sa_exc.DBAPIError as exc:
        raise _query_failed(engine, mapping, exc) from exc


def ping(engine: Engine) -> None:
    """Ask the warehouse the cheapest question; WarehouseUnavailable if it does not answer."""
    with connection(engine, None) as conn:
        conn.execute(sa.text("SELECT 1"))
