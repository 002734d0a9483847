"""The SQL building blocks every warehouse query shares, and how their result values are read back.

Names reach SQL only through ``sqlalchemy.table()``/``sqlalchemy.column()`` (the dialect quotes
them); values come back as naive UTC datetimes, version strings and finite floats or None. The
aggregates are grouped by UTC day and/or version and keyed by :data:`GroupKey`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa

UNKNOWN_VERSION = "(unknown)"  # how a NULL version is shown
GroupKey = tuple[datetime | None, str | None]
"""(UTC day, version) of a group; None for a dimension the query did not group on."""
WHOLE: GroupKey = (None, None)

SQLITE_MAX_PARAMS = 30_000  # SQLite refuses statements with more than 32 766 bound parameters


SPARK_DIALECTS = ("hive", "databricks")
"""Dialects that speak Spark SQL: a Spark Thrift server through PyHive (hive://), Databricks SQL."""


def is_spark(dialect: str) -> bool:
    """True for the dialects whose SQL is Spark SQL (``hive://`` here means a Spark Thrift server)."""
    return dialect in SPARK_DIALECTS


def split_table_name(table: str) -> tuple[str | None, str]:
    """``schema.table`` into (schema or None, table)."""
    schema, _, name = table.rpartition(".")
    return (schema or None), name


def utc_day(dialect: str, ts: Any) -> Any:
    """Midnight (UTC) of a timestamp, as the dialect computes it."""
    if dialect in ("duckdb", "postgresql") or is_spark(dialect):
        return sa.func.date_trunc("day", ts)
    if dialect == "sqlite":
        return sa.func.date(ts)
    return sa.cast(ts, sa.Date)


def version_str(value: Any) -> str:
    """A version as read back from any driver, as text; NULL is shown as ``UNKNOWN_VERSION``."""
    if value is None:
        return UNKNOWN_VERSION
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (float, Decimal)) and math.isfinite(value) and value == int(value):
        return str(int(value))  # 3.0 (a nullable int column read as float) is version "3"
    return str(value)


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


def double(name: str) -> Any:
    """The column as a double (integers, decimals and booleans alike)."""
    return sa.cast(sa.column(name), sa.Double())


# +inf as Snowflake and BigQuery spell it (their documented special values): their SQLAlchemy
# dialects write a float('inf') into SQL as ``inf``, which the engines read as a column name
# (tests/stores/test_engine_compile.py). Trino's client sends a bound inf as ``infinity()``.
_INFINITY_TEXT = {"snowflake": "inf", "bigquery": "inf"}


def infinity(dialect: str, sign: float = 1.0) -> Any:
    """+inf (or -inf for a negative ``sign``) as a double the dialect accepts.

    PyHive writes a bound float into the SQL text as ``str(value)``, and Spark reads ``inf`` as a
    column name; the text ``'Infinity'`` cast to a double is +inf there.
    """
    value = math.copysign(math.inf, sign)
    if is_spark(dialect):
        return sa.cast(sa.literal("Infinity" if value > 0 else "-Infinity"), sa.Double())
    text = _INFINITY_TEXT.get(dialect)
    if text is not None:
        return sa.cast(sa.literal_column(f"'{'-' if value < 0 else ''}{text}'"), sa.Double())
    return sa.literal(value, sa.Double())


def _is_finite(dialect: str, x: Any) -> Any:
    """True for a finite number; NULL, NaN and +-inf are not (NaN sorts above +inf in DuckDB, PostgreSQL
    and Spark)."""
    if dialect == "duckdb":
        return sa.func.isfinite(x)
    return sa.and_(x > infinity(dialect, -1), x < infinity(dialect))


def finite_value(dialect: str, name: str) -> Any:
    """The column as a double, NULL where it is not a finite number."""
    x = double(name)
    return sa.case((_is_finite(dialect, x), x), else_=sa.null())


def finite_or_none(value: Any) -> float | None:
    """A result value as a finite float, or None for NULL, NaN and +-inf."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class GroupKeys:
    """Turns the raw (day, version) values of result rows into a GroupKey, once per distinct value."""

    def __init__(self, by_day: bool, by_version: bool) -> None:
        self.by_day, self.by_version = by_day, by_version
        self._seen: dict[tuple[Any, ...], GroupKey] = {}

    def __call__(self, raw: Sequence[Any]) -> GroupKey:
        """``raw``: the row's leading key columns (day first, then version, as grouped)."""
        raw = tuple(raw)
        key = self._seen.get(raw)
        if key is None:
            values = iter(raw)
            day = naive_utc_or_none(next(values)) if self.by_day else None
            version = version_str(next(values)) if self.by_version else None
            key = self._seen[raw] = (day, version)
        return key

    @property
    def width(self) -> int:
        return int(self.by_day) + int(self.by_version)


def union_all(selects: Sequence[Any]) -> Any:
    """One statement of the selects (a single one stays a plain select)."""
    return selects[0] if len(selects) == 1 else sa.union_all(*selects)


def grouped(source: Any, keys: Sequence[str], *columns: Any, where: Sequence[Any] = (),
            group: Sequence[Any] = ()) -> Any:
    """SELECT keys..., columns... FROM source WHERE ... GROUP BY keys..., group..."""
    keyed = [source.c[k] for k in keys]
    query = sa.select(*keyed, *columns).where(*where)
    by = keyed + list(group)
    return query.group_by(*by) if by else query
