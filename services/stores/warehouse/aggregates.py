"""Push-down SQL for monitoring: histograms, value counts, group counts and quantiles in the warehouse.

The statistics of ``services.stats`` are computed from aggregates; this module is the only one that
asks the warehouse for them (docs/ARCHITECTURE.md, "Push the work to the data"). Every function sends a few
statements whatever the size of the data, and only one row per (group, bin) or (group, value) comes
back. As in ``services.stores.warehouse.logs``: SQLAlchemy Core with bound parameters, names only from a
:class:`~services.mapping.ModelMapping`, naive UTC datetimes, half-open windows ``[start, end)``.

**Which rows.** A :class:`Rows` names a table and optionally a time range: the log in a window
(:func:`log_rows`) or the model's reference (:func:`reference_rows`: its own table, or a time range
of the log). Aggregates of the log can be grouped by UTC day and/or by version in the same
statement (``by_day``/``by_version``), so a 35-day backfill costs the same few round trips as one
window; results are keyed by :data:`GroupKey` ``(day, version)``, with None for a dimension not
grouped on.

**Round trips** for one window, or for a whole backfill grouped by day:

=====================  ======================================================================
numeric_histograms     1 (all numerical features: counts, sums, nulls, sums of squares per bin)
value_counts           1 per call (all categorical features; or the few-valued numerical ones)
fairness_counts        1 (all sensitive attributes)
classification_counts  1 (confusion, rounded-score counts and label coverage together)
regression_sums        1 (count, sum |e|, sum e^2 and label coverage)
latency_summaries      1 (2 on dialects without a quantile aggregate, e.g. SQLite)
=====================  ======================================================================

SQLite keeps every numerical feature's bins under its bound-parameter limit by splitting the
features over several statements when needed.

**Binning** follows ``services.stats.histogram``: the bin of a finite ``x`` is the number of edges
``<= x``; NULL, NaN and +-inf go to the null count. Per dialect: PostgreSQL ``width_bucket(x,
edges[])`` (a binary search in the server); DuckDB a uniform grid over the edges (of x or of ln x):
each value's cell is joined to its row of a grid table (the cell's first bin and the few edges
that may follow), lent to DuckDB as an Arrow table registered on the connection for the statement
(`duckdb_grids`), or, where no grid narrows the search, a binary search over one bound array; any
other dialect a balanced ``CASE`` tree (about ten comparisons per value). All of them give exactly
the bins of ``bin_sample``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.errors import ConfigError, MappingError
from services.mapping import ModelMapping
from services.stats.fairness import GroupCounts, group_counts_from_rows
from services.stats.histogram import BinnedSample, default_shift, quantile_probabilities
from services.stats.performance import AUC_DECIMALS, ConfusionCounts, ScoreCounts
from services.stats.quantiles import exact_quantiles, quantile_positions
from services.stores.warehouse.binning import (
    GridPlan,
    binned_values,
    duckdb_grids,
    grid_columns,
    grid_plan,
    int_literal,
)
from services.stores.warehouse.logs import (
    connection,
    latency_aggregate,
    naive_utc,
    naive_utc_or_none,
    split_table_name,
    utc_day,
    version_str,
)

__all__ = [
    "finite_value",
    "rows_source",
    "FINE_BINS",
    "VALUE_COUNT_MAX",
    "WHOLE",
    "ClassificationCounts",
    "ColumnProfile",
    "GroupKey",
    "LatencySummary",
    "RegressionSums",
    "Rows",
    "classification_counts",
    "column_profiles",
    "fairness_counts",
    "log_bounds",
    "log_rows",
    "numeric_histograms",
    "reference_rows",
    "regression_sums",
    "latency_summaries",
    "value_counts",
]

FINE_BINS = 1000
"""Reference quantile bins of every numerical histogram (edges at i / 1000)."""
VALUE_COUNT_MAX = 64
"""A numerical feature with at most this many distinct reference values is aggregated as value counts."""
GroupKey = tuple[datetime | None, str | None]
"""(UTC day, version) of a group; None for a dimension the query did not group on."""
WHOLE: GroupKey = (None, None)

_SQLITE_MAX_PARAMS = 30_000  # SQLite refuses statements with more than 32 766 bound parameters


# --------------------------------------------------------------------------------------------
# Which rows
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rows:
    """The rows an aggregate reads: a table, and a time range of it when ``start``/``end`` are set.

    ``is_log`` tells whether the table is the model's prediction log (it then has the mapped
    timestamp, latency and status columns); a reference table may hold only features, predictions
    and labels.
    """

    table: str
    is_log: bool
    start: datetime | None = None
    end: datetime | None = None

    @property
    def description(self) -> str:
        if self.start is None:
            return f"table {self.table}"
        return f"{self.table} from {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M}"


def _window(start: datetime, end: datetime, what: str) -> tuple[datetime, datetime]:
    start, end = naive_utc(start), naive_utc(end)
    if start >= end:
        raise ConfigError(f"The {what} starts at {start:%Y-%m-%d %H:%M:%S} but ends at {end:%Y-%m-%d %H:%M:%S}; "
                          "its start must be before its end.")
    return start, end


def log_rows(mapping: ModelMapping, start: datetime, end: datetime) -> Rows:
    """The prediction log of ``mapping`` in ``[start, end)``; ConfigError unless start < end."""
    start, end = _window(start, end, "window")
    return Rows(mapping.table, True, start, end)


def reference_rows(mapping: ModelMapping, start: datetime | None = None, end: datetime | None = None) -> Rows:
    """The reference of ``mapping``: ``[start, end)`` of the log when given, else its configured reference.

    The configured reference is its own table (``reference.table``) or a time range of the log
    (``reference.start``/``reference.end``). ConfigError when there is none or a range is invalid.
    """
    if start is not None or end is not None:
        if start is None or end is None:
            raise ConfigError("A reference range needs both a start and an end.")
        start, end = _window(start, end, "reference range")
        return Rows(mapping.table, True, start, end)
    ref = mapping.reference
    if ref.table:
        return Rows(ref.table, False)
    if ref.start and ref.end:
        try:
            parsed = datetime.fromisoformat(ref.start), datetime.fromisoformat(ref.end)
        except ValueError as exc:
            raise ConfigError(f"models.{mapping.name}.reference: start and end must be ISO dates or times.") from exc
        start, end = _window(*parsed, f"reference range of models.{mapping.name}")
        return Rows(mapping.table, True, start, end)
    raise ConfigError(f"Model '{mapping.name}' has no reference configured.",
                      f"Set models.{mapping.name}.reference (a table, or start and end of the log) in tower.yaml, "
                      "or give a reference range.")


# --------------------------------------------------------------------------------------------
# SQL building blocks
# --------------------------------------------------------------------------------------------
def _ts(mapping: ModelMapping) -> Any:
    return sa.column(mapping.column("timestamp"), sa.DateTime())


def _where(mapping: ModelMapping, rows: Rows) -> list[Any]:
    if rows.start is None or rows.end is None:
        return []
    ts = _ts(mapping)
    return [ts >= rows.start, ts < rows.end]


def rows_source(mapping: ModelMapping, rows: Rows, dialect: str, by_day: bool, by_version: bool,
            columns: Sequence[str], exprs: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """A subquery of ``rows`` with ``day``/``version`` (as asked) and the labelled ``exprs``.

    ``columns`` are the physical columns the expressions read. Outer queries group by the
    subquery's columns, so no expression (nor its bound parameters) is repeated in GROUP BY.
    """
    keys: list[Any] = []
    needed = list(columns)
    if rows.start is not None or by_day:
        needed.append(mapping.column("timestamp"))
    if by_day:
        if not rows.is_log:
            raise ValueError("only the prediction log can be grouped by day")
        keys.append(utc_day(dialect, _ts(mapping)).label("day"))
    if by_version:
        needed.append(mapping.column("version"))
        keys.append(sa.column(mapping.column("version")).label("version"))
    schema, name = split_table_name(rows.table)
    table = sa.table(name, *(sa.column(c) for c in dict.fromkeys(needed)), schema=schema)
    query = (sa.select(*keys, *(expr.label(label) for label, expr in exprs.items()))
             .select_from(table).where(*_where(mapping, rows)))
    return query.subquery(), [k.name for k in keys]


def _double(name: str) -> Any:
    return sa.cast(sa.column(name), sa.Double())


def _is_finite(dialect: str, x: Any) -> Any:
    """True for a finite number; NULL, NaN and +-inf are not (NaN sorts above +inf in DuckDB/PostgreSQL)."""
    if dialect == "duckdb":
        return sa.func.isfinite(x)
    return sa.and_(x > sa.literal(-math.inf, sa.Double()), x < sa.literal(math.inf, sa.Double()))


def finite_value(dialect: str, name: str) -> Any:
    """The column as a double, NULL where it is not a finite number."""
    x = _double(name)
    return sa.case((_is_finite(dialect, x), x), else_=sa.null())


def _finite_or_none(value: Any) -> float | None:
    """A result value as a finite float, or None for NULL, NaN and +-inf."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class _Keys:
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


def _union(selects: Sequence[Any]) -> Any:
    return selects[0] if len(selects) == 1 else sa.union_all(*selects)


def _grouped(source: Any, keys: Sequence[str], *columns: Any, where: Sequence[Any] = (),
             group: Sequence[Any] = ()) -> Any:
    """SELECT keys..., columns... FROM source WHERE ... GROUP BY keys..., group..."""
    keyed = [source.c[k] for k in keys]
    query = sa.select(*keyed, *columns).where(*where)
    by = keyed + list(group)
    return query.group_by(*by) if by else query


# --------------------------------------------------------------------------------------------
# Numerical histograms
# --------------------------------------------------------------------------------------------
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
    keys_of = _Keys(by_day, by_version)
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
                    branches.append(_grouped(binned, keys, int_literal(index).label("f"), binned.c.bin,
                                             sa.func.count().label("n"), sa.func.sum(x).label("s"),
                                             sa.func.sum(_square(x, shift_of[column], dialect)).label("ss"),
                                             group=[binned.c.bin]))
                statement = _union(branches)
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


def _accumulate_bins(found: dict[GroupKey, dict[str, tuple[Any, ...]]], rows: Sequence[Sequence[Any]], keys_of: _Keys,
                     columns: Sequence[str], edges: Mapping[str, np.ndarray]) -> None:
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
                   else_=sa.literal(math.inf, sa.Double()))


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
    unpivoted = (sa.func.unnest(postgresql.array(xs), postgresql.array(bins), postgresql.array(squares))
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
        if batches[-1] and used + cost > _SQLITE_MAX_PARAMS:
            batches.append([])
            used = 0
        batches[-1].append(column)
        used += cost
    return batches


# --------------------------------------------------------------------------------------------
# Value counts (categorical features, few-valued numerical features)
# --------------------------------------------------------------------------------------------
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
        branches.append(_grouped(source, keys, int_literal(index).label("f"), source.c.value,
                                 sa.func.count().label("n"), group=[source.c.value]))
    result: dict[GroupKey, dict[str, dict[Any, int]]] = {}
    with connection(engine, mapping) as conn:
        keys_of = _Keys(by_day, by_version)
        for row in conn.execute(_union(branches)):
            f, value, n = row[keys_of.width:]
            if value is not None:
                value = float(value) if numeric else (value if isinstance(value, str) else str(value))
            per_column = result.setdefault(keys_of(row[:keys_of.width]), {c: {} for c in columns})
            counts = per_column[columns[f]]
            counts[value] = counts.get(value, 0) + n
    if not result and not by_day and not by_version:
        result[WHOLE] = {c: {} for c in columns}
    return result


# --------------------------------------------------------------------------------------------
# Fairness: counts per (sensitive group, prediction, label)
# --------------------------------------------------------------------------------------------
def fairness_counts(engine: Engine, mapping: ModelMapping, rows: Rows, *, by_day: bool = False,
                    by_version: bool = False) -> dict[GroupKey, dict[str, tuple[GroupCounts, ...]]]:
    """Per group and sensitive attribute, one `GroupCounts` per value of the attribute.

    ``SELECT sensitive, prediction, label, COUNT(*) ... GROUP BY ...`` for every attribute in one
    statement; rows without a prediction (failed requests) are left out, rows without a label count
    for selection only. Predictions and labels must be 0/1 (MappingError otherwise).
    """
    attributes = list(mapping.sensitive)
    if not attributes:
        return {}
    if "label" not in mapping.columns:
        raise MappingError(f"Model '{mapping.name}' maps no label column, so its fairness cannot be measured.",
                           f"Map columns.label of models.{mapping.name} in tower.yaml.")
    dialect = engine.dialect.name
    prediction, label = mapping.column("prediction"), mapping.column("label")
    branches = []
    for index, attribute in enumerate(attributes):
        # Grouped on the plain values, NaN and +-inf sorted out on the few result rows: a finite check
        # and integer cast of every row took 60 % of the statement's CPU.
        source, keys = rows_source(mapping, rows, dialect, by_day, by_version, [attribute, prediction, label], {
            "grp": sa.cast(sa.column(attribute), sa.String()), "p": _double(prediction), "y": _double(label)})
        c = source.c
        branches.append(_grouped(source, keys, int_literal(index).label("f"), c.grp, c.p, c.y,
                                 sa.func.count().label("n"), where=[c.p.is_not(None)], group=[c.grp, c.p, c.y]))
    collected: dict[GroupKey, dict[str, list[tuple[Any, ...]]]] = defaultdict(lambda: {a: [] for a in attributes})
    with connection(engine, mapping) as conn:
        keys_of = _Keys(by_day, by_version)
        for row in conn.execute(_union(branches)):
            f, group, p, y, n = row[keys_of.width:]
            p, y = _finite_or_none(p), _finite_or_none(y)
            if p is None:  # NaN or +-inf: no prediction, as NULL
                continue
            collected[keys_of(row[:keys_of.width])][attributes[f]].append((group, p, y, n))
    result: dict[GroupKey, dict[str, tuple[GroupCounts, ...]]] = {}
    for key, per_attribute in collected.items():
        try:
            result[key] = {a: group_counts_from_rows(r) for a, r in per_attribute.items()}
        except ValueError as exc:
            raise MappingError(f"Fairness of model '{mapping.name}' cannot be measured: {exc}.",
                               _zero_one_hint(mapping)) from exc
    if not result and not by_day and not by_version:
        result[WHOLE] = {a: () for a in attributes}
    return result


# --------------------------------------------------------------------------------------------
# Performance aggregates
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassificationCounts:
    """Labelled-row aggregates of a binary classifier: confusion, rounded-score counts, coverage.

    ``predictions`` counts rows with a prediction; ``labeled`` those of them whose label has arrived.
    ``scores`` is None when the mapping has no score column.
    """

    predictions: int
    labeled: int
    confusion: ConfusionCounts
    scores: ScoreCounts | None

    @staticmethod
    def empty(with_scores: bool = True) -> ClassificationCounts:
        none = np.empty(0)
        return ClassificationCounts(0, 0, ConfusionCounts(0, 0, 0, 0),
                                    ScoreCounts(none, none, none) if with_scores else None)

    def __add__(self, other: ClassificationCounts) -> ClassificationCounts:
        c, d = self.confusion, other.confusion
        scores = self.scores
        if scores is None or other.scores is None:
            scores = None
        else:
            scores = _merge_scores([scores, other.scores])
        return ClassificationCounts(self.predictions + other.predictions, self.labeled + other.labeled,
                                    ConfusionCounts(c.tp + d.tp, c.fp + d.fp, c.fn + d.fn, c.tn + d.tn), scores)


def _merge_scores(parts: Sequence[ScoreCounts]) -> ScoreCounts:
    levels = np.concatenate([p.levels for p in parts]) if parts else np.empty(0)
    unique, index = np.unique(levels, return_inverse=True)
    positives = np.bincount(index, weights=np.concatenate([p.positives for p in parts]) if parts else None,
                            minlength=unique.size).round().astype(np.int64)
    negatives = np.bincount(index, weights=np.concatenate([p.negatives for p in parts]) if parts else None,
                            minlength=unique.size).round().astype(np.int64)
    return ScoreCounts(levels=unique, positives=positives, negatives=negatives)


def _round_score(dialect: str, score: Any) -> Any:
    if dialect == "postgresql":  # PostgreSQL rounds to decimals only for numeric
        return sa.cast(sa.func.round(sa.cast(score, sa.Numeric()), AUC_DECIMALS), sa.Double())
    return sa.func.round(score, AUC_DECIMALS)


def classification_counts(engine: Engine, mapping: ModelMapping, rows: Rows, *, by_day: bool = False,
                          by_version: bool = False) -> dict[GroupKey, ClassificationCounts]:
    """Confusion counts, positives/negatives per ``ROUND(score, 4)`` and label coverage in one statement.

    ``GROUP BY ROUND(score, 4), prediction, label`` over the rows with a prediction; unlabelled rows
    (label NULL) give the coverage. Predictions and labels must be 0/1.
    """
    dialect = engine.dialect.name
    prediction = mapping.column("prediction")
    has_label, has_score = "label" in mapping.columns, "score" in mapping.columns
    exprs = {"p": _double(prediction), "y": _double(mapping.column("label")) if has_label else sa.null(),
             "s": _round_score(dialect, finite_value(dialect, mapping.column("score"))) if has_score else sa.null()}
    read = [prediction] + [mapping.column(c) for c in ("label", "score") if c in mapping.columns]
    source, keys = rows_source(mapping, rows, dialect, by_day, by_version, read, exprs)
    c = source.c
    query = _grouped(source, keys, c.s, c.p, c.y, sa.func.count().label("n"), where=[c.p.is_not(None)],
                     group=[c.s, c.p, c.y])
    parts: dict[GroupKey, list[tuple[Any, Any, Any, int]]] = defaultdict(list)
    with connection(engine, mapping) as conn:
        keys_of = _Keys(by_day, by_version)
        for row in conn.execute(query):
            parts[keys_of(row[:keys_of.width])].append(tuple(row[keys_of.width:]))
    result = {key: _classification(mapping, found, has_score) for key, found in parts.items()}
    if not result and not by_day and not by_version:
        result[WHOLE] = ClassificationCounts.empty(has_score)
    return result


def _zero_one_hint(mapping: ModelMapping) -> str:
    label = mapping.columns.get("label")
    return (f"Fairness and performance need 0/1 predictions and labels (positive = 1): map columns.prediction "
            f"('{mapping.column('prediction')}' now)" + (f" and columns.label ('{label}' now)" if label else "")
            + f" of models.{mapping.name} in tower.yaml to such columns; a probability belongs in columns.score.")


def _classification(mapping: ModelMapping, rows: list[tuple[Any, Any, Any, int]], has_score: bool
                    ) -> ClassificationCounts:
    cells = {(1, 1): 0, (1, 0): 0, (0, 1): 0, (0, 0): 0}
    predictions = labeled = 0
    score_rows: dict[float, list[int]] = {}
    for score, pred, label, n in rows:
        pred, label = _finite_or_none(pred), _finite_or_none(label)
        if pred is None:  # NaN or +-inf: no prediction, as NULL
            continue
        if pred not in (0, 1) or (label is not None and label not in (0, 1)):  # refused, never truncated
            found = f"{pred:g}" if label is None else f"{pred:g}, {label:g}"
            raise MappingError(f"Model '{mapping.name}' logs predictions or labels other than 0 and 1 ({found}).",
                               _zero_one_hint(mapping))
        predictions += n
        if label is None:
            continue
        key = (int(pred), int(label))
        cells[key] += n
        labeled += n
        if score is not None:
            slot = score_rows.setdefault(float(score), [0, 0])
            slot[0 if key[1] == 1 else 1] += n
    levels = np.array(sorted(score_rows), dtype=float)
    # Lists are fine: ScoreCounts.__post_init__ converts them to int64 arrays.
    scores = (ScoreCounts(levels=levels, positives=cast(np.ndarray, [score_rows[v][0] for v in levels]),
                          negatives=cast(np.ndarray, [score_rows[v][1] for v in levels])) if has_score else None)
    return ClassificationCounts(predictions=predictions, labeled=labeled,
                                confusion=ConfusionCounts(tp=cells[1, 1], fp=cells[1, 0], fn=cells[0, 1],
                                                          tn=cells[0, 0]), scores=scores)


@dataclass(frozen=True)
class RegressionSums:
    """``predictions`` with a finite prediction; ``labeled`` of them with a finite label; error sums."""

    predictions: int
    labeled: int
    sum_abs_error: float
    sum_squared_error: float

    def __add__(self, other: RegressionSums) -> RegressionSums:
        return RegressionSums(self.predictions + other.predictions, self.labeled + other.labeled,
                              self.sum_abs_error + other.sum_abs_error,
                              self.sum_squared_error + other.sum_squared_error)


def regression_sums(engine: Engine, mapping: ModelMapping, rows: Rows, *, by_day: bool = False,
                    by_version: bool = False) -> dict[GroupKey, RegressionSums]:
    """``COUNT``, ``SUM(|prediction - label|)`` and ``SUM((prediction - label)^2)`` in one statement."""
    dialect = engine.dialect.name
    pred = finite_value(dialect, mapping.column("prediction"))
    label = finite_value(dialect, mapping.column("label")) if "label" in mapping.columns else sa.null()
    read = [mapping.column(c) for c in ("prediction", "label") if c in mapping.columns]
    source, keys = rows_source(mapping, rows, dialect, by_day, by_version, read, {"pred": pred, "error": pred - label})
    c = source.c
    query = _grouped(source, keys, sa.func.count(c.pred).label("predictions"), sa.func.count(c.error).label("labeled"),
                     sa.func.sum(sa.func.abs(c.error)).label("sae"), sa.func.sum(c.error * c.error).label("sse"))
    result: dict[GroupKey, RegressionSums] = {}
    with connection(engine, mapping) as conn:
        keys_of = _Keys(by_day, by_version)
        for row in conn.execute(query):
            predictions, labeled, sae, sse = row[keys_of.width:]
            result[keys_of(row[:keys_of.width])] = RegressionSums(int(predictions or 0), int(labeled or 0),
                                                                float(sae or 0.0), float(sse or 0.0))
    return result


# --------------------------------------------------------------------------------------------
# Latency (the quantile helpers of services.stores.warehouse.logs)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LatencySummary:
    """Requests, errors and latency quantiles (ms) of one group; quantiles None without latencies."""

    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def latency_summaries(engine: Engine, mapping: ModelMapping, start: datetime, end: datetime, *,
                      by_day: bool = False, by_version: bool = False) -> dict[GroupKey, LatencySummary]:
    """Requests, errors and p50/p95/p99 latency of the log in ``[start, end)`` per group."""
    rows = log_rows(mapping, start, end)
    assert rows.start is not None and rows.end is not None  # log_rows always sets the window
    keys = tuple(k for k, on in (("day", by_day), ("version", by_version)) if on)
    result: dict[GroupKey, LatencySummary] = {}
    keys_of = _Keys(by_day, by_version)
    for record in latency_aggregate(engine, mapping, rows.start, rows.end, keys, quantiles=True):
        requests = int(record["requests"] or 0)
        if requests == 0 and keys:
            continue
        quantiles = [None if record[c] is None else float(record[c]) for c in ("p50_ms", "p95_ms", "p99_ms")]
        result[keys_of([record[k] for k in keys])] = LatencySummary(requests, int(record["errors"] or 0), *quantiles)
    return result


# --------------------------------------------------------------------------------------------
# Reference edges and the log's time span
# --------------------------------------------------------------------------------------------
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
        first = conn.execute(sa.select(*counts).select_from(table).where(*_where(mapping, rows))).mappings().one()
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
            if dialect == "sqlite" and batches[-1] and used + len(ranks) > _SQLITE_MAX_PARAMS:
                batches.append([])
                used = 0
            used += len(ranks)
            x = finite_value(dialect, column)
            ranked = (sa.select(x.label("x"), sa.func.row_number().over(order_by=x).label("rn"))
                      .select_from(table).where(*_where(mapping, rows), x.is_not(None)).subquery())
            batches[-1].append(sa.select(int_literal(index).label("f"), ranked.c.rn, ranked.c.x)
                               .where(ranked.c.rn.in_(ranks)))
        values: dict[str, dict[int, float]] = defaultdict(dict)
        for selects in batches:
            if not selects:
                continue
            for row in conn.execute(_union(selects)).mappings():
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


def log_bounds(engine: Engine, mapping: ModelMapping) -> tuple[datetime, datetime] | None:
    """The first and last prediction time of the log, or None when it is empty."""
    ts = _ts(mapping)
    schema, name = split_table_name(mapping.table)
    table = sa.table(name, ts, schema=schema)
    query = sa.select(sa.func.min(ts, type_=sa.types.NullType()).label("first"),
                      sa.func.max(ts, type_=sa.types.NullType()).label("last")).select_from(table)
    with connection(engine, mapping) as conn:
        row = conn.execute(query).mappings().one()
    first, last = naive_utc_or_none(row["first"]), naive_utc_or_none(row["last"])
    return None if first is None or last is None else (first, last)
