"""What the warehouse can say about a registry reference's table: whether it exists, its columns, the row
count of one snapshot, and its first rows in the logged order (to recompute MLflow's dataset digest).

Table and column names come validated (a ``reference_sources`` rule's allowlist, MLflow's schema checked
against the table's real columns); the snapshot value is always a bound parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from services.stores.warehouse.engine import connection
from services.stores.warehouse.mapping_check import table_columns
from services.stores.warehouse.sql import split_table_name


@dataclass(frozen=True)
class TableFacts:
    """A table as the warehouse sees it: None rows/columns when it does not exist."""

    table: str
    exists: bool
    columns: tuple[str, ...] = ()
    rows: int = 0  # in the snapshot (the whole table without one)


def _where(snapshot: tuple[str, str] | None) -> list[sa.ColumnElement[bool]]:
    if snapshot is None:
        return []
    return [sa.column(snapshot[0]) == sa.bindparam(None, snapshot[1], type_=sa.String())]


def table_facts(engine: sa.Engine, table: str, snapshot: tuple[str, str] | None) -> TableFacts:
    """Whether ``table`` exists, its columns and how many rows its snapshot holds (one or two statements)."""
    schema, name = split_table_name(table)
    with connection(engine, None) as conn:
        if not sa.inspect(conn).has_table(name, schema=schema):
            return TableFacts(table, False)
        columns = tuple(table_columns(conn, schema, name))
        if snapshot is not None and snapshot[0].lower() not in {c.lower() for c in columns}:
            return TableFacts(table, True, columns, 0)
        source = sa.table(name, schema=schema)
        rows = conn.execute(sa.select(sa.func.count()).select_from(source).where(*_where(snapshot))).scalar_one()
    return TableFacts(table, True, columns, int(rows or 0))


def ordered_head(engine: sa.Engine, table: str, columns: Sequence[str], snapshot: tuple[str, str] | None,
                 order_column: str, limit: int) -> pd.DataFrame:
    """The first ``limit`` rows of the snapshot by ``order_column``, only ``columns``, in that order."""
    schema, name = split_table_name(table)
    source = sa.table(name, *(sa.column(c) for c in dict.fromkeys([*columns, order_column])), schema=schema)
    query = (sa.select(*(source.c[c] for c in columns)).where(*_where(snapshot))
             .order_by(source.c[order_column]).limit(limit))
    with connection(engine, None) as conn:
        result = conn.execute(query)
        return pd.DataFrame(result.fetchall(), columns=list(columns))
