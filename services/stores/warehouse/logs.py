"""All SQL against the prediction-log warehouse (docs/ARCHITECTURE.md, "Push the work to the data").

Every statement is SQLAlchemy Core with bound parameters; table and column names come only from
a :class:`~services.mapping.ModelMapping` and reach SQL through ``sqlalchemy.table()`` /
``sqlalchemy.column()``, so the dialect quotes them. Counts and latency quantiles are computed by
the database; only one row per group travels back to Python.

Times are naive UTC datetimes and every window is half-open, ``[start, end)``. A request whose
status differs from ``mapping.ok_status`` (NULL included) is an error. Quantiles interpolate
linearly between the two neighbouring ranks (numpy's default, SQL's ``percentile_cont``) over the
rows whose latency is not NULL.

Dialect differences live in three small helpers: :func:`utc_day` (day bucket),
:func:`_native_quantiles` (DuckDB ``quantile_cont``, PostgreSQL ``percentile_cont … WITHIN GROUP``)
and :func:`_ranked_quantiles` (a ROW_NUMBER/COUNT window-function fallback for the rest, SQLite
among them). On SQLite timestamps are compared as text, so they must be stored the way SQLAlchemy
and ``pandas.to_sql`` write them (``YYYY-MM-DD HH:MM:SS.ffffff``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.pool import QueuePool

from services.errors import MappingError, WarehouseUnavailable
from services.mapping import ModelMapping

QUANTILES = (0.5, 0.95, 0.99)
QUANTILE_COLUMNS = ("p50_ms", "p95_ms", "p99_ms")
UNKNOWN_VERSION = "(unknown)"  # how a NULL version is shown
MISSING_FILE_HINT = "Set WAREHOUSE_URL or run `make seed`."
STATEMENT_TIMEOUT_S = 30.0  # TOWER_WAREHOUSE_STATEMENT_TIMEOUT_S's default: no page waits minutes for a query
_QUERY_CANCELED = "57014"  # SQLSTATE of a statement cancelled by statement_timeout

_TRAFFIC_COLUMNS = {"day": "datetime64[ns]", "version": "object", "requests": "int64", "errors": "int64"}
_RATES = {"error_rate": "float64", **dict.fromkeys(QUANTILE_COLUMNS, "float64")}
_LATENCY_BY_DAY_COLUMNS = {**_TRAFFIC_COLUMNS, **_RATES}
_LATENCY_BY_VERSION_COLUMNS = {
    "version": "object", "requests": "int64", "errors": "int64", **_RATES,
    "first_seen": "datetime64[ns]", "last_seen": "datetime64[ns]",
}
_NATIVE_QUANTILE_DIALECTS = ("duckdb", "postgresql")
# Errors a database gives for a table, schema or column that is not there.
_MISSING_SQLSTATES = {"42P01", "42703", "3F000", "42S02", "42S22"}
_MISSING_TEXT = re.compile(
    r"no such (table|column)|does not exist|not found|unknown (table|column)|invalid (object|column) name",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class WindowSummary:
    """Traffic and latency of one model over one window, all versions together."""

    requests: int
    errors: int
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    last_prediction_at: datetime | None


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------
def make_engine(url: str, *, connect_timeout_s: float = 10.0,
                statement_timeout_s: float = STATEMENT_TIMEOUT_S) -> Engine:
    """An engine that only reads the warehouse.

    DuckDB files open ``read_only`` (several processes may read one file, none can write);
    SQLite files open with ``mode=ro``; PostgreSQL sessions default to read-only transactions and
    UTC, and the server cancels any statement running longer than ``statement_timeout_s``. Server
    databases get a bounded pool (5 + 5 overflow; waiting ``connect_timeout_s`` for a free
    connection). A missing DuckDB or SQLite file raises WarehouseUnavailable instead of being created.
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
    if backend == "postgresql":
        timeout_ms = max(1, math.ceil(statement_timeout_s * 1000))
        event.listen(engine, "connect", functools.partial(_postgres_session, statement_timeout_ms=timeout_ms))
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


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
def safe_url(url: URL | str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        return "(unparseable URL)"


def first_line(exc: BaseException, secret: str | None = None) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip().rstrip(".!")
    if secret:
        text = text.replace(secret, "***")
    return text or type(exc).__name__


def _reason(engine: Engine, exc: sa_exc.DBAPIError) -> str:
    return first_line(exc.orig if exc.orig is not None else exc, engine.url.password)


def _unavailable(engine: Engine, exc: sa_exc.DBAPIError) -> WarehouseUnavailable:
    return WarehouseUnavailable(
        f"Cannot reach the warehouse at {safe_url(engine.url)}: {_reason(engine, exc)}.",
        "Check WAREHOUSE_URL and that the database is running.",
    )


def _is_missing_object(exc: sa_exc.DBAPIError) -> bool:
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state:
        return state in _MISSING_SQLSTATES
    if type(orig).__name__ in ("CatalogException", "BinderException"):  # DuckDB
        return True
    return bool(_MISSING_TEXT.search(str(orig)))


def _query_failed(engine: Engine, mapping: ModelMapping | None, exc: sa_exc.DBAPIError) -> Exception:
    """A failed statement: too slow, the connection broke (unavailable) or the mapping does not fit."""
    orig = exc.orig
    if (getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)) == _QUERY_CANCELED:
        return WarehouseUnavailable(
            f"The warehouse at {safe_url(engine.url)} did not answer in time: {_reason(engine, exc)}.",
            "The query ran past TOWER_WAREHOUSE_STATEMENT_TIMEOUT_S; the database may be overloaded. Try again later.",
        )
    connection_problem = exc.connection_invalidated or (
        type(exc) in (sa_exc.OperationalError, sa_exc.DatabaseError, sa_exc.InterfaceError)
        and not _is_missing_object(exc)
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


# --------------------------------------------------------------------------------------------
# Mapping check
# --------------------------------------------------------------------------------------------
def split_table_name(table: str) -> tuple[str | None, str]:
    """``schema.table`` into (schema or None, table)."""
    schema, _, name = table.rpartition(".")
    return (schema or None), name


def _expected_columns(mapping: ModelMapping) -> list[tuple[str, str]]:
    """(physical column, what it is for) of every column the mapping names, once each."""
    expected = [(physical, f"logical {logical}") for logical, physical in mapping.columns.items()]
    expected += [(name, "numerical feature") for name in mapping.numerical]
    expected += [(name, "categorical feature") for name in mapping.categorical]
    expected += [(name, "sensitive attribute") for name in mapping.sensitive]
    seen: set[str] = set()
    # set.add is called for its side effect (it returns None) in this first-occurrence dedupe.
    return [(name, what) for name, what in expected if not (name in seen or seen.add(name))]  # type: ignore[func-returns-value]


def _column_names(conn: Connection, schema: str | None, name: str) -> list[str]:
    try:
        return [c["name"] for c in sa.inspect(conn).get_columns(name, schema=schema)]
    except sa_exc.DBAPIError:
        # duckdb-engine 0.17's inspector queries pg_catalog tables DuckDB lacks: ask the standard
        # information_schema instead.
        conn.rollback()
    info = sa.table(
        "columns", sa.column("table_catalog"), sa.column("table_schema"), sa.column("table_name"),
        sa.column("column_name"), sa.column("ordinal_position"), schema="information_schema",
    )
    query = (
        sa.select(info.c.column_name)
        .where(info.c.table_name == name)
        .where(info.c.table_schema == (schema if schema is not None else sa.func.current_schema()))
        .where(info.c.table_catalog == sa.func.current_database())
        .order_by(info.c.ordinal_position)
    )
    return [str(row[0]) for row in conn.execute(query)]


def check_mapping(engine: Engine, mapping: ModelMapping) -> None:
    """Raise MappingError unless the mapped table holds every mapped column."""
    schema, name = split_table_name(mapping.table)
    with connection(engine, mapping) as conn:
        if not sa.inspect(conn).has_table(name, schema=schema):
            raise MappingError(
                f"Table {mapping.table} of model '{mapping.name}' does not exist in the warehouse.",
                f"Check models.{mapping.name}.table in tower.yaml and WAREHOUSE_URL.",
            )
        present = _column_names(conn, schema, name)
    fold = engine.dialect.name in ("duckdb", "sqlite")  # identifiers are case-insensitive there
    known = {c.lower() for c in present} if fold else set(present)
    missing = [
        f"column '{physical}' ({what}) is missing from table {mapping.table}"
        for physical, what in _expected_columns(mapping)
        if (physical.lower() if fold else physical) not in known
    ]
    if missing:
        shown = ", ".join(present[:30]) + (", …" if len(present) > 30 else "")
        raise MappingError(
            f"Model '{mapping.name}' does not match its log table: " + "; ".join(missing) + ".",
            f"Fix models.{mapping.name}.columns in tower.yaml. Columns present: {shown}.",
        )


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------
def utc_day(dialect: str, ts: Any) -> Any:
    """Midnight (UTC) of a timestamp, as the dialect computes it."""
    if dialect in ("duckdb", "postgresql"):
        return sa.func.date_trunc("day", ts)
    if dialect == "sqlite":
        return sa.func.date(ts)
    return sa.cast(ts, sa.Date)


def _native_quantiles(dialect: str, latency: Any) -> list[Any] | None:
    """Continuous quantile aggregates, or None where the dialect has none."""
    if dialect == "duckdb":
        return [sa.func.quantile_cont(latency, q) for q in QUANTILES]
    if dialect == "postgresql":
        return [sa.func.percentile_cont(q).within_group(latency) for q in QUANTILES]
    return None


def _window_rows(mapping: ModelMapping, dialect: str, start: datetime, end: datetime, keys: Sequence[str]) -> Any:
    """The rows of [start, end) as a subquery: group keys, ts, latency (double), is_error (0/1)."""
    schema, name = split_table_name(mapping.table)
    ts = sa.column(mapping.column("timestamp"), sa.DateTime())
    version: sa.ColumnClause[Any] = sa.column(mapping.column("version"))
    latency: sa.ColumnClause[Any] = sa.column(mapping.column("latency_ms"))
    status: sa.ColumnClause[Any] = sa.column(mapping.column("status"))
    log = sa.table(name, ts, version, latency, status, schema=schema)
    key_exprs = {"day": utc_day(dialect, ts), "version": version}
    return (
        sa.select(
            *(key_exprs[k].label(k) for k in keys),
            ts.label("ts"),
            sa.cast(latency, sa.Double()).label("latency"),
            # compared as text, so integer status codes (200) work with ok_status "200"
            sa.case((sa.cast(status, sa.String()) == mapping.ok_status, 0), else_=1).label("is_error"),
        )
        .select_from(log)
        .where(ts >= naive_utc(start), ts < naive_utc(end))
        .subquery("w")
    )


def _ranked_quantiles(conn: Connection, rows: Any, keys: Sequence[str]) -> dict[tuple[Any, ...], list[float | None]]:
    """Quantiles for dialects without a quantile aggregate.

    Ranks each group's non-NULL latencies with ROW_NUMBER and COUNT over the partition, keeps only
    the ranks next to (n - 1) * q for each q (at most nine rows per group) and interpolates those
    in Python.
    """
    part = [rows.c[k] for k in keys] or None
    ranked = (
        sa.select(
            *(rows.c[k] for k in keys),
            rows.c.latency,
            sa.func.row_number().over(partition_by=part, order_by=rows.c.latency).label("rn"),
            sa.func.count().over(partition_by=part).label("n"),
        )
        .where(rows.c.latency.is_not(None))
        .subquery("r")
    )
    position = ranked.c.rn - 1  # 0-based rank
    near = [
        sa.and_(position > (ranked.c.n - 1) * q - 1.5, position < (ranked.c.n - 1) * q + 1.5) for q in QUANTILES
    ]
    query = sa.select(*(ranked.c[k] for k in keys), ranked.c.n, ranked.c.rn, ranked.c.latency).where(sa.or_(*near))
    groups: dict[tuple[Any, ...], tuple[int, dict[int, float]]] = {}
    for row in conn.execute(query).mappings():
        key = tuple(row[k] for k in keys)
        n, values = groups.setdefault(key, (int(row["n"]), {}))
        values[int(row["rn"]) - 1] = float(row["latency"])
    return {key: [_interpolate(n, values, q) for q in QUANTILES] for key, (n, values) in groups.items()}


def _interpolate(n: int, values: dict[int, float], q: float) -> float:
    h = (n - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    low = values[lo]
    return low + (values[hi] - low) * (h - lo)


def latency_aggregate(
    engine: Engine,
    mapping: ModelMapping,
    start: datetime,
    end: datetime,
    keys: Sequence[str],
    *,
    quantiles: bool,
    last_seen: bool = False,
    first_seen: bool = False,
) -> list[dict[str, Any]]:
    """One dict per group of ``keys`` (one in all when ``keys`` is empty)."""
    dialect = engine.dialect.name
    rows = _window_rows(mapping, dialect, start, end, keys)
    columns: list[Any] = [rows.c[k] for k in keys]
    columns += [sa.func.count().label("requests"), sa.func.sum(rows.c.is_error).label("errors")]
    native = _native_quantiles(dialect, rows.c.latency) if quantiles else None
    if native is not None:
        columns += [expr.label(name) for expr, name in zip(native, QUANTILE_COLUMNS, strict=True)]
    if first_seen:
        columns.append(sa.func.min(rows.c.ts, type_=sa.types.NullType()).label("first_seen"))
    if last_seen:
        columns.append(sa.func.max(rows.c.ts, type_=sa.types.NullType()).label("last_seen"))
    query = sa.select(*columns)
    if keys:
        query = query.group_by(*(rows.c[k] for k in keys))
    with connection(engine, mapping) as conn:
        result = [dict(row) for row in conn.execute(query).mappings()]
        if quantiles and native is None:
            ranked = _ranked_quantiles(conn, rows, keys)
            for row in result:
                found = ranked.get(tuple(row[k] for k in keys), [None] * len(QUANTILES))
                row.update(zip(QUANTILE_COLUMNS, found, strict=True))
    return result


def _frame(records: list[dict[str, Any]], dtypes: dict[str, str], sort: Sequence[str]) -> pd.DataFrame:
    for record in records:
        requests = int(record["requests"])
        errors = int(record["errors"] or 0)
        record.update(requests=requests, errors=errors, error_rate=errors / requests if requests else None)
        if "version" in record:
            record["version"] = version_str(record["version"])
    if sort:
        records.sort(key=lambda r: tuple(_sort_key(c, r[c]) for c in sort))
    data = {}
    for name, dtype in dtypes.items():
        values = [r.get(name) for r in records]
        if dtype == "datetime64[ns]":
            data[name] = _timestamps(values)
        elif dtype == "float64":
            data[name] = pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64")
        else:
            data[name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(data, columns=list(dtypes))


def _sort_key(column: str, value: Any) -> tuple[Any, ...]:
    if column == "version":  # 2 before 10; names after numbers
        return (0, int(value), "") if value.isdigit() else (1, 0, value)
    return (0, naive_utc_or_none(value) or datetime.min, "")


def version_str(value: Any) -> str:
    if value is None:
        return UNKNOWN_VERSION
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (float, Decimal)) and math.isfinite(value) and value == int(value):
        return str(int(value))  # 3.0 (a nullable int column read as float) is version "3"
    return str(value)


def _timestamps(values: list[Any]) -> pd.Series:
    cleaned = [naive_utc_or_none(v) for v in values]
    return pd.Series(pd.to_datetime(cleaned), dtype="datetime64[ns]")


def naive_utc(value: datetime) -> datetime:
    """A naive UTC datetime from a datetime, date or pandas Timestamp (aware ones are converted)."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def naive_utc_or_none(value: Any) -> datetime | None:
    """A timestamp as returned by any driver (datetime, date, text on SQLite) as naive UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        stamp = pd.Timestamp(value)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        stamp_utc: datetime = stamp.to_pydatetime()
        return stamp_utc
    return naive_utc(value)


def traffic_by_day(engine: Engine, mapping: ModelMapping, start: datetime, end: datetime) -> pd.DataFrame:
    """Requests and errors per (UTC day, version) in [start, end)."""
    records = latency_aggregate(engine, mapping, start, end, ("day", "version"), quantiles=False)
    return _frame(records, _TRAFFIC_COLUMNS, ("day", "version"))


def latency_by_day(engine: Engine, mapping: ModelMapping, start: datetime, end: datetime) -> pd.DataFrame:
    """Requests, errors, error rate and p50/p95/p99 latency per (UTC day, version) in [start, end)."""
    records = latency_aggregate(engine, mapping, start, end, ("day", "version"), quantiles=True)
    return _frame(records, _LATENCY_BY_DAY_COLUMNS, ("day", "version"))


def latency_by_version(engine: Engine, mapping: ModelMapping, start: datetime, end: datetime) -> pd.DataFrame:
    """Requests, errors, error rate, p50/p95/p99 latency, first and last request per version."""
    records = latency_aggregate(
        engine, mapping, start, end, ("version",), quantiles=True, first_seen=True, last_seen=True
    )
    return _frame(records, _LATENCY_BY_VERSION_COLUMNS, ("version",))


def window_summary(engine: Engine, mapping: ModelMapping, start: datetime, end: datetime) -> WindowSummary:
    """The whole window, all versions together; an empty window gives requests=0 and no quantiles."""
    (record,) = latency_aggregate(engine, mapping, start, end, (), quantiles=True, last_seen=True)
    requests = int(record["requests"] or 0)
    errors = int(record["errors"] or 0)
    p50, p95, p99 = (None if record[c] is None else float(record[c]) for c in QUANTILE_COLUMNS)
    return WindowSummary(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else None,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        last_prediction_at=naive_utc_or_none(record["last_seen"]),
    )


def last_prediction_at(engine: Engine, mapping: ModelMapping) -> datetime | None:
    """When the model last served a prediction (any version), or None for an empty log."""
    schema, name = split_table_name(mapping.table)
    ts: sa.ColumnClause[Any] = sa.column(mapping.column("timestamp"))
    query = sa.select(sa.func.max(ts, type_=sa.types.NullType())).select_from(sa.table(name, ts, schema=schema))
    with connection(engine, mapping) as conn:
        return naive_utc_or_none(conn.execute(query).scalar())
