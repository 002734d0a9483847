"""What the reference says about its numerical columns before they are binned: counts and quantile edges.

:func:`column_profiles` computes, in a few statements whatever the number of columns, the finite and
distinct counts and the 1000-quantile edges the fine histograms are binned on (exact, or from a sample
above the mapping's ``reference.exact_edges_max_rows`` on DuckDB); the monitoring reference profile is
built from them (``services.monitoring.reference``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

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


EDGE_SAMPLE_ROWS = 200_000
"""About this many reference rows are sampled (Bernoulli) for the edges of a reference above its
``exact_edges_max_rows``: a bin then holds 1/1000 of the reference within a few per cent, and its counts
and sums stay exact, so KS and Wasserstein are still computed from exact bins (tests/stores pin them
against scipy on the raw values)."""


def column_profiles(engine: Engine, mapping: ModelMapping, rows: Rows, columns: Sequence[str],
                    n_bins: int = FINE_BINS, *,
                    exact_max_rows: int | None = None) -> tuple[int, dict[str, ColumnProfile]]:
    """``(row count, {column: ColumnProfile})``: counts, distinct counts and quantile edges of ``rows``.

    Exact (any dialect): counts first, then distinct counts, then, per column, only the ranks next to
    ``(n - 1) * i / n_bins`` of the sorted finite values (``ROW_NUMBER() OVER (ORDER BY x)``),
    interpolated as numpy's linear quantile does (docs/ARCHITECTURE.md: faster than ``quantile_cont``
    with a thousand probabilities, and bit-for-bit ``np.quantile``); three statements whatever the
    number of columns.

    Sampled (DuckDB, more than ``exact_max_rows`` rows): sorting every value and counting distinct
    ones cost a 10M-row reference tens of CPU seconds and gigabytes, so the edges are ``np.quantile``
    of a Bernoulli sample of about ``EDGE_SAMPLE_ROWS`` rows; ``distinct`` is the sample's (a lower
    bound) unless that is at most ``VALUE_COUNT_MAX``, where it is counted exactly, so the choice
    between value counts and a histogram is the exact one.
    """
    if n_bins % 10:
        raise ValueError("n_bins must be a multiple of 10, so that the deciles are among the edges")
    columns = list(columns)
    dialect = engine.dialect.name
    needed = list(columns) + ([mapping.column("timestamp")] if rows.start is not None else [])
    schema, name = split_table_name(rows.table)
    table = sa.table(name, *(sa.column(c) for c in dict.fromkeys(needed)), schema=schema)
    where = row_filter(mapping, rows)
    counts = [sa.func.count().label("rows")]
    for index, column in enumerate(columns):
        counts.append(sa.func.count(finite_value(dialect, column)).label(f"n{index}"))
    with connection(engine, mapping) as conn:
        first = conn.execute(sa.select(*counts).select_from(table).where(*where)).mappings().one()
        total = int(first["rows"] or 0)
        finite = {column: int(first[f"n{index}"] or 0) for index, column in enumerate(columns)}
        if dialect == "duckdb" and exact_max_rows is not None and total > exact_max_rows:
            profiles = _sampled_profiles(conn, table, where, dialect, finite, total, n_bins)
        else:
            profiles = _exact_profiles(conn, table, where, dialect, finite, n_bins)
    return total, profiles


def _distinct_counts(conn: Connection, table: Any, where: Sequence[Any], dialect: str,
                     columns: Sequence[str]) -> dict[str, int]:
    if not columns:
        return {}
    found = conn.execute(sa.select(*(sa.func.count(sa.distinct(finite_value(dialect, c))).label(f"d{i}")
                                     for i, c in enumerate(columns))).select_from(table).where(*where)).one()
    return {column: int(found[i] or 0) for i, column in enumerate(columns)}


def _profile(raw: np.ndarray, finite: int, distinct: int, n_bins: int) -> ColumnProfile:
    deciles = np.unique(raw[np.arange(1, 10) * (n_bins // 10) - 1])  # i / n_bins == j / 10 exactly
    return ColumnProfile(finite=finite, distinct=distinct, edges=np.unique(raw), deciles=deciles)


def _exact_profiles(conn: Connection, table: Any, where: Sequence[Any], dialect: str, finite: dict[str, int],
                    n_bins: int) -> dict[str, ColumnProfile]:
    columns = list(finite)
    distinct = _distinct_counts(conn, table, where, dialect, [c for c in columns if finite[c]])
    probabilities = quantile_probabilities(n_bins)
    profiles: dict[str, ColumnProfile] = {}
    wanted: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    batches: list[list[Any]] = [[]]
    used = 0
    for index, column in enumerate(columns):
        n = finite[column]
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
                  .select_from(table).where(*where, x.is_not(None)).subquery())
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
        profiles[column] = _profile(raw, finite[column], distinct[column], n_bins)
    return profiles


def _sampled_profiles(conn: Connection, table: Any, where: Sequence[Any], dialect: str, finite: dict[str, int],
                      total: int, n_bins: int) -> dict[str, ColumnProfile]:
    columns = [c for c in finite if finite[c]]
    profiles = {c: ColumnProfile(0, 0, np.empty(0), np.empty(0)) for c in finite if not finite[c]}
    if not columns:
        return profiles
    percent = min(100.0, 100.0 * EDGE_SAMPLE_ROWS / total)
    # DuckDB's USING SAMPLE (Bernoulli: every row kept with the same chance, so the sample is spread
    # over the whole reference) is applied before WHERE, which keeps the same share of the rows it reads.
    sample = (sa.select(*(finite_value(dialect, c).label(f"x{i}") for i, c in enumerate(columns)))
              .select_from(table).where(*where).suffix_with(f"USING SAMPLE {percent:.6f}% (bernoulli)"))
    # DuckDB's own column arrays (this path is DuckDB's): np.array over SQLAlchemy Rows asked each Row for
    # __array__ and friends, every failed lookup raising and catching an exception inside SQLAlchemy (six
    # per row): 6 s of CPU for a 200,000-row sample, most of a 10M-row reference's column profiles.
    arrays = conn.execute(sample).cursor.fetchnumpy()
    values: np.ndarray = np.column_stack([np.ma.filled(np.ma.asarray(arrays[f"x{i}"], dtype=float), np.nan)
                                          for i in range(len(columns))])  # NULL (not finite) -> NaN
    probabilities = quantile_probabilities(n_bins)
    few: list[str] = []
    sampled: dict[str, tuple[np.ndarray, int]] = {}
    for index, column in enumerate(columns):
        x = values[:, index]
        x = x[np.isfinite(x)]
        if x.size == 0:  # so few finite values that none was drawn: take them all
            few.append(column)
            continue
        sampled[column] = (np.quantile(x, probabilities), int(np.unique(x).size))
        if sampled[column][1] <= VALUE_COUNT_MAX:
            few.append(column)
    exact = _distinct_counts(conn, table, where, dialect, few)
    missing = [c for c in few if c not in sampled]
    if missing:
        profiles |= _exact_profiles(conn, table, where, dialect, {c: finite[c] for c in missing}, n_bins)
    for column, (raw, distinct) in sampled.items():
        profiles[column] = _profile(raw, finite[column], exact.get(column, distinct), n_bins)
    return {c: profiles[c] for c in finite}
