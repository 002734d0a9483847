"""Numerical histograms and value counts pushed down to the warehouse (the drift aggregates).

:func:`numeric_histograms` sends one statement for all numerical features (counts, sums, nulls and
sums of squares per bin); :func:`value_counts` one per call (all categorical features, or the
few-valued numerical ones). SQLite keeps every numerical feature's bins under its bound-parameter
limit by splitting the features over several statements when needed.

**Binning** follows ``services.stats.histogram``: the bin of a finite ``x`` is the number of edges
``<= x``; NULL, NaN and +-inf go to the null count. Per dialect: PostgreSQL ``width_bucket(x,
edges[])`` (a binary search in the server); DuckDB a uniform grid over the edges (of x or of ln x):
each value's cell is joined to its row of a grid table (the cell's first bin and the few edges
that may follow), lent to DuckDB as an Arrow table registered on the connection for the statement
(`duckdb_grids`), or, where no grid narrows the search, a binary search over one bound array; any
other dialect a balanced ``CASE`` tree (about ten comparisons per value). All of them give exactly
the bins of ``bin_sample`` (``services.stores.warehouse.binning``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.functions import Function

from services.mapping import ModelMapping
from services.stats.histogram import BinnedSample, default_shift
from services.stores.warehouse.binning import (
    GridPlan,
    binned_values,
    duckdb_grids,
    grid_columns,
    grid_plan,
    int_literal,
)
from services.stores.warehouse.engine import connection
from services.stores.warehouse.rows import Rows, rows_source
from services.stores.warehouse.sql import (
    SQLITE_MAX_PARAMS,
    WHOLE,
    GroupKey,
    GroupKeys,
    finite_value,
    grouped,
    infinity,
    union_all,
)


def numeric_histograms(engine: Engine, mapping: ModelMapping, rows: Rows, edges: Mapping[str, np.ndarray], *,
                       shifts: Mapping[str, float] | None = None, by_day: bool = False,
                       by_version: bool = False, grid: bool = True) -> dict[GroupKey, dict[str, BinnedSample]]:
    """Fine histograms of numerical columns, one `BinnedSample` per group and column.

    ``edges`` maps each column to its interior edges (the reference's 1000-quantiles); ``shifts``
    to the constant subtracted before squaring (default ``default_shift(edges)``). One statement
    for all columns (several on SQLite when the edges exceed its parameter limit). A group is
    present when it has any row; without grouping an empty window gives empty samples.
    """
    columns = list(edges)
    if not columns:
        return {}
    dialect = engine.dialect.name
    edge_arrays = {c: np.asarray(edges[c], dtype=float).reshape(-1) for c in columns}
    shift_of = {c: (default_shift(edge_arrays[c]) if shifts is None or c not in shifts else float(shifts[c]))
                for c in columns}
    batches = _batches(columns, edge_arrays, dialect)
    found: dict[GroupKey, dict[str, tuple[Any, ...]]] = defaultdict(dict)
    keys_of = GroupKeys(by_day, by_version)
    plans: dict[int, GridPlan] = {}
    if dialect == "duckdb" and grid:  # grid=False: the plain binary search (the benchmark compares both)
        for index, column in enumerate(columns):
            plan = grid_plan(edge_arrays[column]) if edge_arrays[column].size else None
            if plan is not None:
                plans[index] = plan
    width = grid_columns(plans)
    with connection(engine, mapping) as conn, \
            duckdb_grids(conn, plans, {i: edge_arrays[columns[i]] for i in plans}):
        for batch in batches:
            if dialect == "postgresql":
                statement = _histograms_unnested(mapping, rows, columns, edge_arrays, shift_of, by_day, by_version)
            else:
                branches = []
                for column in batch:
                    index = columns.index(column)
                    source, keys = rows_source(mapping, rows, dialect, by_day, by_version, [column],
                                               {"x": finite_value(dialect, column)})
                    grid_spec = (index, plans[index], width) if index in plans else None
                    binned = binned_values(dialect, source, keys, edge_arrays[column], f"edges_{index}",
                                           grid=grid_spec)
                    x = binned.c.x
                    branches.append(grouped(binned, keys, int_literal(index).label("f"), binned.c.bin,
                                            sa.func.count().label("n"), sa.func.sum(x).label("s"),
                                            sa.func.sum(_square(x, shift_of[column], dialect)).label("ss"),
                                            group=[binned.c.bin]))
                statement = union_all(branches)
            _accumulate_bins(found, conn.execute(statement).all(), keys_of, columns, edge_arrays)
    if not found and not by_day and not by_version:
        found[WHOLE] = {}
    result: dict[GroupKey, dict[str, BinnedSample]] = {}
    for key, per_column in found.items():
        result[key] = {}
        for column in columns:
            k = edge_arrays[column].size
            counts, sums, nulls, sum_sq = per_column.get(column, (np.zeros(k + 1, dtype=np.int64), np.zeros(k + 1),
                                                                  0, 0.0))
            result[key][column] = BinnedSample(edges=edge_arrays[column], counts=counts, sums=sums, nulls=nulls,
                                               sum_sq=sum_sq, shift=shift_of[column])
    return result


def _accumulate_bins(found: dict[GroupKey, dict[str, tuple[Any, ...]]], rows: Sequence[Sequence[Any]],
                     keys_of: GroupKeys, columns: Sequence[str], edges: Mapping[str, np.ndarray]) -> None:
    """Add the rows ``(keys..., f, bin, n, s, ss)`` of a histogram statement into ``found``.

    ``found[key][column]`` is ``(counts, sums, nulls, sum_sq)``. The rows are added with numpy, one
    ``bincount`` per (group, column), rather than one Python step per row: a 1000-bin histogram of
    17 features is 17,000 rows, and a per-row loop cost as much as a tenth of the whole statement.
    """
    if not rows:
        return
    width = keys_of.width
    fields = list(zip(*rows, strict=True))
    f = np.asarray(fields[width], dtype=np.int64)
    bins = np.asarray(fields[width + 1], dtype=float)  # NULL (the non-finite values) -> NaN
    n = np.asarray(fields[width + 2], dtype=np.int64)
    sums = np.nan_to_num(np.asarray(fields[width + 3], dtype=float), nan=0.0)
    squares = np.nan_to_num(np.asarray(fields[width + 4], dtype=float), nan=0.0)
    if width:
        raw_keys = list(zip(*fields[:width], strict=True))
        distinct = {raw: i for i, raw in enumerate(dict.fromkeys(raw_keys))}
        group = np.fromiter((distinct[raw] for raw in raw_keys), dtype=np.int64, count=len(raw_keys))
        group_keys = [keys_of(raw) for raw in distinct]
    else:
        group, group_keys = np.zeros(f.size, dtype=np.int64), [keys_of(())]
    null = np.isnan(bins)
    # One sort by (group, feature) so that each slice is read once.
    order = np.lexsort((f, group))
    pair = group[order] * len(columns) + f[order]
    bounds = np.flatnonzero(np.diff(pair)) + 1
    for chunk in np.split(order, bounds):
        g, index = int(group[chunk[0]]), int(f[chunk[0]])
        column = columns[index]
        size = edges[column].size + 1
        binned = chunk[~null[chunk]]
        at = bins[binned].astype(np.int64)
        counts = np.bincount(at, weights=n[binned], minlength=size).round().astype(np.int64)
        bin_sums = np.bincount(at, weights=sums[binned], minlength=size)
        nulls = int(n[chunk[null[chunk]]].sum())
        square_sum = float(squares[binned].sum())
        found[group_keys[g]][column] = (counts, bin_sums, nulls, square_sum)  # each column is in one statement


def _square(x: Any, shift: float, dialect: str) -> Any:
    """``(x - shift)^2``; +inf past 1e300 rather than PostgreSQL's overflow error.

    DuckDB's product already overflows to +inf, and the guard (a CASE over every value) cost 5-7 %
    of its histogram statement, so it has none there.
    """
    centred = x - sa.literal(shift, sa.Double())
    if dialect == "duckdb":
        return centred * centred
    return sa.case((sa.func.abs(centred) < sa.literal(1e150, sa.Double()), centred * centred),
                   else_=infinity(dialect))


def _histograms_unnested(mapping: ModelMapping, rows: Rows, columns: list[str], edges: Mapping[str, np.ndarray],
                         shifts: Mapping[str, float], by_day: bool, by_version: bool) -> Any:
    """PostgreSQL: every feature's bins in one scan of the rows.

    A row store reads whole rows, so a UNION of one branch per feature would scan the table once
    per feature (2.5x slower at 20 features). Instead each row is binned per feature
    (``width_bucket``) and unpivoted with ``unnest(ARRAY[x...], ARRAY[bin...], ARRAY[square...])
    WITH ORDINALITY`` before one GROUP BY.
    """
    from sqlalchemy.dialects import postgresql

    source, keys = rows_source(mapping, rows, "postgresql", by_day, by_version, columns,
                               {f"x{i}": finite_value("postgresql", c) for i, c in enumerate(columns)})
    xs = [source.c[f"x{i}"] for i in range(len(columns))]
    bins = [sa.func.width_bucket(x, sa.bindparam(f"edges_{i}", [float(e) for e in edges[c]],
                                                 type_=postgresql.ARRAY(sa.Double())))
            if edges[c].size else sa.case((x.is_not(None), int_literal(0)), else_=sa.null())
            for i, (c, x) in enumerate(zip(columns, xs, strict=True))]
    squares = [_square(x, shifts[c], "postgresql") for c, x in zip(columns, xs, strict=True)]
    # A plain Function, not sa.func.unnest: sqlalchemy-bigquery registers a one-argument ``unnest`` in
    # SQLAlchemy's global function registry on import, which would then refuse this three-array call.
    unpivoted = (Function("unnest", postgresql.array(xs), postgresql.array(bins), postgresql.array(squares))
                 .table_valued("x", "bin", "ss", with_ordinality="f").render_derived(name="u").lateral("u"))
    keyed = [source.c[k] for k in keys]
    f = (unpivoted.c.f - 1).label("f")
    return (sa.select(*keyed, f, unpivoted.c.bin, sa.func.count().label("n"), sa.func.sum(unpivoted.c.x).label("s"),
                      sa.func.sum(unpivoted.c.ss).label("ss"))
            .select_from(source.join(unpivoted, sa.true()))
            .group_by(*keyed, unpivoted.c.f, unpivoted.c.bin))


def _batches(columns: list[str], edges: Mapping[str, np.ndarray], dialect: str) -> list[list[str]]:
    """Columns per statement: all together, except where a parameter limit forces a split."""
    if dialect != "sqlite":
        return [columns]
    batches: list[list[str]] = [[]]
    used = 0
    for column in columns:
        cost = int(edges[column].size) + 2
        if batches[-1] and used + cost > SQLITE_MAX_PARAMS:
            batches.append([])
            used = 0
        batches[-1].append(column)
        used += cost
    return batches


def value_counts(engine: Engine, mapping: ModelMapping, rows: Rows, columns: Sequence[str], *, numeric: bool,
                 by_day: bool = False, by_version: bool = False
                 ) -> dict[GroupKey, dict[str, dict[Any, int]]]:
    """``{group: {column: {value: count}}}`` (``GROUP BY column``) for all ``columns`` in one statement.

    Categorical (``numeric=False``): values compared as text, SQL NULL under the key None.
    Numerical (``numeric=True``): float values; NULL, NaN and +-inf under the key None.
    """
    columns = list(columns)
    if not columns:
        return {}
    dialect = engine.dialect.name
    branches = []
    for index, column in enumerate(columns):
        value = finite_value(dialect, column) if numeric else sa.cast(sa.column(column), sa.String())
        source, keys = rows_source(mapping, rows, dialect, by_day, by_version, [column], {"value": value})
        branches.append(grouped(source, keys, int_literal(index).label("f"), source.c.value,
                                sa.func.count().label("n"), group=[source.c.value]))
    result: dict[GroupKey, dict[str, dict[Any, int]]] = {}
    with connection(engine, mapping) as conn:
        keys_of = GroupKeys(by_day, by_version)
        for row in conn.execute(union_all(branches)):
            f, value, n = row[keys_of.width:]
            if value is not None:
                value = float(value) if numeric else (value if isinstance(value, str) else str(value))
            per_column = result.setdefault(keys_of(row[:keys_of.width]), {c: {} for c in columns})
            counts = per_column[columns[f]]
            counts[value] = counts.get(value, 0) + n
    if not result and not by_day and not by_version:
        result[WHOLE] = {c: {} for c in columns}
    return result
