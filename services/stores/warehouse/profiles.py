"""What the reference says about its numerical columns before they are binned: counts and quantile edges.

:func:`column_profiles` computes, in two statements whatever the number of columns, the finite and
distinct counts and the 1000-quantile edges the fine histograms are binned on; the monitoring
reference profile is built from them (``services.monitoring.reference``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.mapping import ModelMapping
from services.stats.histogram import quantile_probabilities
from services.stats.quantiles import exact_quantiles, quantile_positions
from services.stores.warehouse.binning import int_literal
from services.stores.warehouse.engine import connection
from services.stores.warehouse.rows import Rows, row_filter
from services.stores.warehouse.sql import SQLITE_MAX_PARAMS, finite_value, split_table_name, union_all

FINE_BINS = 1000
"""Reference quantile bins of every numerical histogram (edges at i / 1000)."""
VALUE_COUNT_MAX = 64
"""A numerical feature with at most this many distinct reference values is aggregated as value counts."""


@dataclass(frozen=True)
class ColumnProfile:
    """What the reference says about one numerical column before it is binned.

    ``finite``: rows with a finite value; ``distinct``: distinct finite values; ``edges``: the
    1000-quantile edges (duplicates collapsed, exactly ``reference_edges(values)``); ``deciles``: the
    10-bin edges, a subset of ``edges`` (exactly ``decile_edges(values)``).
    """

    finite: int
    distinct: int
    edges: np.ndarray
    deciles: np.ndarray


def column_profiles(engine: Engine, mapping: ModelMapping, rows: Rows, columns: Sequence[str],
                    n_bins: int = FINE_BINS) -> tuple[int, dict[str, ColumnProfile]]:
    """``(row count, {column: ColumnProfile})``: counts, distinct counts and quantile edges of ``rows``.

    Two statements whatever the number of columns: counts first, then, per column, only the ranks
    next to ``(n - 1) * i / n_bins`` of the sorted finite values (``ROW_NUMBER() OVER (ORDER BY x)``),
    interpolated as numpy's linear quantile does (docs/ARCHITECTURE.md: faster than ``quantile_cont`` with a
    thousand probabilities, and bit-for-bit ``np.quantile``).
    """
    if n_bins % 10:
        raise ValueError("n_bins must be a multiple of 10, so that the deciles are among the edges")
    columns = list(columns)
    dialect = engine.dialect.name
    needed = list(columns) + ([mapping.column("timestamp")] if rows.start is not None else [])
    schema, name = split_table_name(rows.table)
    table = sa.table(name, *(sa.column(c) for c in dict.fromkeys(needed)), schema=schema)
    counts = [sa.func.count().label("rows")]
    for index, column in enumerate(columns):
        x = finite_value(dialect, column)
        counts += [sa.func.count(x).label(f"n{index}"), sa.func.count(sa.distinct(x)).label(f"d{index}")]
    probabilities = quantile_probabilities(n_bins)
    profiles: dict[str, ColumnProfile] = {}
    with connection(engine, mapping) as conn:
        first = conn.execute(sa.select(*counts).select_from(table).where(*row_filter(mapping, rows))).mappings().one()
        total = int(first["rows"] or 0)
        wanted: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        batches: list[list[Any]] = [[]]
        used = 0
        for index, column in enumerate(columns):
            n = int(first[f"n{index}"] or 0)
            if n == 0:
                profiles[column] = ColumnProfile(0, 0, np.empty(0), np.empty(0))
                continue
            lower, upper, fraction = quantile_positions(n, probabilities)
            ranks = sorted({int(r) + 1 for r in np.concatenate([lower, upper])})
            wanted[column] = (lower, upper, fraction)
            if dialect == "sqlite" and batches[-1] and used + len(ranks) > SQLITE_MAX_PARAMS:
                batches.append([])
                used = 0
            used += len(ranks)
            x = finite_value(dialect, column)
            ranked = (sa.select(x.label("x"), sa.func.row_number().over(order_by=x).label("rn"))
                      .select_from(table).where(*row_filter(mapping, rows), x.is_not(None)).subquery())
            batches[-1].append(sa.select(int_literal(index).label("f"), ranked.c.rn, ranked.c.x)
                               .where(ranked.c.rn.in_(ranks)))
        values: dict[str, dict[int, float]] = defaultdict(dict)
        for selects in batches:
            if not selects:
                continue
            for row in conn.execute(union_all(selects)).mappings():
                values[columns[int(row["f"])]][int(row["rn"]) - 1] = float(row["x"])
    for column, (lower, upper, fraction) in wanted.items():
        found = values[column]
        raw = exact_quantiles(np.array([found[int(i)] for i in lower]), np.array([found[int(i)] for i in upper]),
                              fraction)
        index = columns.index(column)
        deciles = np.unique(raw[np.arange(1, 10) * (n_bins // 10) - 1])  # i / n_bins == j / 10 exactly
        profiles[column] = ColumnProfile(finite=int(first[f"n{index}"]), distinct=int(first[f"d{index}"]),
                                         edges=np.unique(raw), deciles=deciles)
    return total, profiles
