"""Value ranges pushed down to the warehouse: the reference's finite minimum and maximum per numerical
feature, and how many of a window's finite values fall outside them (the data-quality aggregates).

Both are one statement whatever the number of features, and return one row per group: no row is
pulled. Values are compared as doubles; NULL, NaN and +-inf are not finite (``sql.finite_value``), so
they are neither a bound nor outside one: the null share counts them
(``services.monitoring.data_quality``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.mapping import ModelMapping
from services.stores.warehouse.engine import connection
from services.stores.warehouse.rows import Rows, rows_source
from services.stores.warehouse.sql import WHOLE, GroupKey, GroupKeys, finite_or_none, finite_value, grouped


def value_ranges(engine: Engine, mapping: ModelMapping, rows: Rows, columns: Sequence[str]
                 ) -> dict[str, tuple[float, float] | None]:
    """``{column: (min, max)}`` of the finite values of ``rows``; None for a column without any."""
    columns = list(columns)
    if not columns:
        return {}
    dialect = engine.dialect.name
    source, _ = rows_source(mapping, rows, dialect, False, False, columns,
                            {f"x{i}": finite_value(dialect, c) for i, c in enumerate(columns)})
    aggregates = []
    for i in range(len(columns)):
        x = source.c[f"x{i}"]
        aggregates += [sa.func.min(x).label(f"lo{i}"), sa.func.max(x).label(f"hi{i}")]
    with connection(engine, mapping) as conn:
        row = conn.execute(sa.select(*aggregates).select_from(source)).mappings().one()
    out: dict[str, tuple[float, float] | None] = {}
    for i, column in enumerate(columns):
        lo, hi = finite_or_none(row[f"lo{i}"]), finite_or_none(row[f"hi{i}"])
        out[column] = None if lo is None or hi is None else (lo, hi)
    return out


def outside_counts(engine: Engine, mapping: ModelMapping, rows: Rows, bounds: Mapping[str, tuple[float, float]], *,
                   by_day: bool = False, by_version: bool = False) -> dict[GroupKey, dict[str, int]]:
    """``{group: {column: n}}``: finite values below ``bounds[column][0]`` or above ``[1]``, per group.

    One statement. A group is present when it has any row; without grouping the whole window is
    always present (zero counts for an empty window).
    """
    columns = list(bounds)
    if not columns:
        return {WHOLE: {}} if not by_day and not by_version else {}
    dialect = engine.dialect.name
    source, keys = rows_source(mapping, rows, dialect, by_day, by_version, columns,
                               {f"x{i}": finite_value(dialect, c) for i, c in enumerate(columns)})
    counts = []
    for i, column in enumerate(columns):
        x = source.c[f"x{i}"]
        lo: Any = sa.literal(float(bounds[column][0]), sa.Double())
        hi: Any = sa.literal(float(bounds[column][1]), sa.Double())
        counts.append(sa.func.count(sa.case((sa.or_(x < lo, x > hi), sa.literal(1)), else_=sa.null())).label(f"o{i}"))
    keys_of = GroupKeys(by_day, by_version)
    result: dict[GroupKey, dict[str, int]] = {}
    with connection(engine, mapping) as conn:
        for row in conn.execute(grouped(source, keys, *counts)):
            values = row[keys_of.width:]
            result[keys_of(row[:keys_of.width])] = {c: int(values[i] or 0) for i, c in enumerate(columns)}
    if not by_day and not by_version:
        result.setdefault(WHOLE, dict.fromkeys(columns, 0))
    return result
