"""Whether the warehouse holds what a model mapping names: its table and every mapped column."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from services.errors import MappingError
from services.mapping import ModelMapping
from services.stores.warehouse.engine import connection
from services.stores.warehouse.sql import split_table_name


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
