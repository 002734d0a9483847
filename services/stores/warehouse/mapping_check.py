"""Whether the warehouse holds what a model mapping names: its table and every mapped column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from services.errors import MappingError
from services.mapping import ModelMapping
from services.stores.warehouse.engine import connection, is_missing_object
from services.stores.warehouse.sql import is_spark, split_table_name


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


def table_columns(conn: Connection, schema: str | None, name: str) -> list[str]:
    """The columns of an existing table, in their order (DuckDB asked through information_schema)."""
    return _column_names(conn, schema, name)


@dataclass(frozen=True)
class _Mismatch:
    """What the warehouse lacks of one mapping: its table, or some of its columns."""

    model: str
    table: str
    table_missing: bool
    missing: tuple[tuple[str, str], ...] = ()  # (physical column, what it is for)
    present: tuple[str, ...] = ()

    @property
    def problem(self) -> str:
        if self.table_missing:
            return f"{self.model}: no table {self.table}"
        noun = "column" if len(self.missing) == 1 else "columns"
        return f"{self.model}: table {self.table} has no {noun} {', '.join(c for c, _ in self.missing)}"

    @property
    def fix(self) -> str:
        if self.table_missing:
            return f"models.{self.model}.table names no table of this warehouse (or WAREHOUSE_URL names another)"
        shown = ", ".join(self.present[:30]) + (", …" if len(self.present) > 30 else "")
        return (f"models.{self.model} maps " + ", ".join(f"{c} ({what})" for c, what in self.missing)
                + f"; {self.table} has {shown}")


def _has_table(conn: Connection, schema: str | None, name: str) -> bool:
    if not is_spark(conn.dialect.name):
        return sa.inspect(conn).has_table(name, schema=schema)
    # PyHive's has_table looks for Hive's old "Table not found" text; Spark 4 answers
    # TABLE_OR_VIEW_NOT_FOUND / SCHEMA_NOT_FOUND with their SQLSTATEs.
    quote = conn.dialect.identifier_preparer.quote
    try:
        conn.execute(sa.text(f"DESCRIBE TABLE {quote(schema) + '.' if schema else ''}{quote(name)}"))
    except sa_exc.DBAPIError as exc:
        if is_missing_object(exc):
            return False
        raise
    return True


def _mismatch(engine: Engine, mapping: ModelMapping) -> _Mismatch | None:
    schema, name = split_table_name(mapping.table)
    with connection(engine, mapping) as conn:
        if not _has_table(conn, schema, name):
            return _Mismatch(mapping.name, mapping.table, table_missing=True)
        present = _column_names(conn, schema, name)
    # identifiers are case-insensitive there (Spark unless spark.sql.caseSensitive is set)
    fold = engine.dialect.name in ("duckdb", "sqlite") or is_spark(engine.dialect.name)
    known = {c.lower() for c in present} if fold else set(present)
    missing = tuple((physical, what) for physical, what in _expected_columns(mapping)
                    if (physical.lower() if fold else physical) not in known)
    return _Mismatch(mapping.name, mapping.table, False, missing, tuple(present)) if missing else None


def check_mappings(engine: Engine, mappings: Sequence[ModelMapping]) -> None:
    """Raise one MappingError naming every missing table and column of ``mappings``, or return.

    All of them at once, so a broken tower.yaml is fixed in one pass rather than one model per run.
    """
    found = [m for m in (_mismatch(engine, mapping) for mapping in mappings) if m is not None]
    if found:
        raise MappingError("The warehouse does not match tower.yaml: " + "; ".join(m.problem for m in found) + ".",
                           "In tower.yaml: " + ". ".join(m.fix for m in found) + ".")
