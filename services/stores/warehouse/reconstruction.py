"""PCA reconstruction error pushed down to the warehouse (multivariate drift, ``services.stats.reconstruction``).

Three statements, each one round trip whatever the number of features:

* :func:`reference_moments` — the reference's row count, per feature its finite count and mean (first
  statement), then the centred, mean-imputed cross-product sums every pair of features (second);
* :func:`error_sums` — per group (day, version, as asked) of a window: rows, the sum and sum of squares
  of the row errors, and the missing cells imputed;
* :func:`chunk_errors` — the mean row error of each reference chunk (rows numbered in the order the
  reference is read: by timestamp for a log period, the table's own order for a reference table).

A row's error is built in three nested selects so no expression is repeated: ``z_j = (x_j - μ_j) / σ_j``
(0 where the value is NULL, NaN or +-inf: the mean imputes it), then ``r_i = Σ_j M_ij z_j``, then
``SQRT(Σ_i r_i r_i)``. The fitted numbers are written into the statement as float literals at full
precision (``repr``), never as text from a user, so SQLite's bound-parameter limit does not cap the
number of features; column names come only from the mapping and are quoted by the dialect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.mapping import ModelMapping
from services.stats.reconstruction import Z_MAX
from services.stores.warehouse.engine import connection
from services.stores.warehouse.rows import Rows, log_timestamp, rows_source
from services.stores.warehouse.sql import GroupKey, GroupKeys, finite_value, grouped, is_spark

Numbers = Sequence[float] | np.ndarray  # one float per feature, in the columns' order


def _bound(mean: float, scale: float, z: float) -> float:
    """``mean + z * scale``, kept finite (the largest double when it would overflow)."""
    value = float(mean) + z * float(scale)
    return value if math.isfinite(value) else math.copysign(np.finfo(np.float64).max, value)


def float_literal(value: float) -> Any:
    """A finite float written into the SQL at full precision (``repr`` round-trips every double)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return sa.cast(sa.literal_column(repr(value)), sa.Double())


@dataclass(frozen=True)
class Moments:
    """The reference's mean-imputed moments: ``means`` over the finite values of each feature,
    ``cross[i, j]`` the sum over all ``rows`` of ``(x_i - μ_i)(x_j - μ_j)`` (a missing value adds 0)."""

    rows: int
    finite: dict[str, int]
    means: dict[str, float]
    cross: np.ndarray  # over the columns with a mean, in ``means`` order


@dataclass(frozen=True)
class ErrorSums:
    """A group's row errors: they add up over groups (versions of a day)."""

    rows: int
    total: float
    total_sq: float
    missing: int  # feature values imputed (NULL, NaN, +-inf)

    def __add__(self, other: ErrorSums) -> ErrorSums:
        return ErrorSums(self.rows + other.rows, self.total + other.total, self.total_sq + other.total_sq,
                         self.missing + other.missing)

    @property
    def mean(self) -> float | None:
        return self.total / self.rows if self.rows else None


def _table_source(mapping: ModelMapping, rows: Rows, dialect: str, columns: Sequence[str],
                  exprs: dict[str, Any], by_day: bool = False, by_version: bool = False) -> tuple[Any, list[str]]:
    return rows_source(mapping, rows, dialect, by_day, by_version, columns, exprs)


def reference_moments(engine: Engine, mapping: ModelMapping, rows: Rows, columns: Sequence[str]) -> Moments:
    """Counts, means and centred cross-product sums of ``columns`` over ``rows`` (two statements)."""
    dialect = engine.dialect.name
    columns = list(columns)
    xs = {f"x{i}": finite_value(dialect, c) for i, c in enumerate(columns)}
    source, _ = _table_source(mapping, rows, dialect, columns, xs)
    first = [sa.func.count().label("n")]
    for i in range(len(columns)):
        first += [sa.func.count(source.c[f"x{i}"]).label(f"n{i}"), sa.func.avg(source.c[f"x{i}"]).label(f"m{i}")]
    with connection(engine, mapping) as conn:
        head = conn.execute(sa.select(*first).select_from(source)).mappings().one()
        n = int(head["n"] or 0)
        finite = {c: int(head[f"n{i}"] or 0) for i, c in enumerate(columns)}
        means = {c: float(head[f"m{i}"]) for i, c in enumerate(columns)
                 if head[f"m{i}"] is not None and math.isfinite(float(head[f"m{i}"]))}
        usable = [c for c in columns if c in means]
        if n == 0 or len(usable) == 0:
            return Moments(n, finite, means, np.zeros((len(usable), len(usable))))
        centred = {f"d{j}": sa.func.coalesce(finite_value(dialect, c) - float_literal(means[c]), float_literal(0.0))
                   for j, c in enumerate(usable)}
        inner, _ = _table_source(mapping, rows, dialect, usable, centred)
        sums = [sa.func.sum(inner.c[f"d{i}"] * inner.c[f"d{j}"]).label(f"s{i}_{j}")
                for i in range(len(usable)) for j in range(i, len(usable))]
        second = conn.execute(sa.select(*sums).select_from(inner)).mappings().one()
    cross = np.zeros((len(usable), len(usable)))
    for i in range(len(usable)):
        for j in range(i, len(usable)):
            cross[i, j] = cross[j, i] = float(second[f"s{i}_{j}"] or 0.0)
    return Moments(n, finite, means, cross)


def _errors(mapping: ModelMapping, rows: Rows, dialect: str, columns: Sequence[str], means: Numbers,
            scales: Numbers, residual: np.ndarray, *, by_day: bool = False, by_version: bool = False,
            extra: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    """A subquery of ``rows`` with the group keys, ``e`` (the row error), ``m`` (missing cells) and ``extra``."""
    zs: dict[str, Any] = {}
    missing = []
    for j, column in enumerate(columns):
        x = finite_value(dialect, column)
        # A value beyond Z_MAX standard deviations counts as Z_MAX: its error stays huge (it drifts), but
        # squares and sums stay finite, where PostgreSQL and DuckDB would stop the statement on overflow.
        high, low = _bound(means[j], scales[j], Z_MAX), _bound(means[j], scales[j], -Z_MAX)
        zs[f"z{j}"] = sa.case((x.is_(None), float_literal(0.0)), (x >= float_literal(high), float_literal(Z_MAX)),
                              (x <= float_literal(low), float_literal(-Z_MAX)),
                              else_=(x - float_literal(means[j])) * float_literal(1.0 / scales[j]))
        missing.append(sa.case((x.is_(None), 1), else_=0))
    zs["m"] = sum(missing[1:], missing[0])
    zs.update(extra or {})
    level1, keys = _table_source(mapping, rows, dialect, columns, zs, by_day, by_version)
    passed = [level1.c[k] for k in keys] + [level1.c.m] + [level1.c[k] for k in (extra or {})]
    d = len(columns)
    rs = []
    for i in range(d):
        terms = [float_literal(residual[i, j]) * level1.c[f"z{j}"] for j in range(d) if residual[i, j] != 0.0]
        rs.append((sum(terms[1:], terms[0]) if terms else float_literal(0.0)).label(f"r{i}"))
    level2 = sa.select(*passed, *rs).subquery()
    squares = [level2.c[f"r{i}"] * level2.c[f"r{i}"] for i in range(d)]
    error = sa.func.sqrt(sum(squares[1:], squares[0])).label("e")
    level3 = sa.select(*(level2.c[k] for k in keys), level2.c.m, *(level2.c[k] for k in (extra or {})),
                       error).subquery()
    return level3, keys


def error_sums(engine: Engine, mapping: ModelMapping, rows: Rows, columns: Sequence[str], means: Numbers,
               scales: Numbers, residual: np.ndarray, *, by_day: bool = False,
               by_version: bool = False) -> dict[GroupKey, ErrorSums]:
    """Row-error sums per group of ``rows`` (one statement); groups without rows are absent."""
    source, keys = _errors(mapping, rows, engine.dialect.name, columns, means, scales, residual,
                           by_day=by_day, by_version=by_version)
    e = source.c.e
    query = grouped(source, keys, sa.func.count().label("n"), sa.func.sum(e).label("s"),
                    sa.func.sum(e * e).label("ss"), sa.func.sum(source.c.m).label("m"))
    keys_of = GroupKeys(by_day, by_version)
    with connection(engine, mapping) as conn:
        found = conn.execute(query).all()
    result: dict[GroupKey, ErrorSums] = {}
    for row in found:
        n = int(row[keys_of.width] or 0)
        if n == 0:
            continue
        key = keys_of(row[:keys_of.width])
        sums = ErrorSums(n, float(row[keys_of.width + 1] or 0.0), float(row[keys_of.width + 2] or 0.0),
                         int(row[keys_of.width + 3] or 0))
        result[key] = result[key] + sums if key in result else sums
    return result


def chunk_errors(engine: Engine, mapping: ModelMapping, rows: Rows, columns: Sequence[str], means: Numbers,
                 scales: Numbers, residual: np.ndarray, size: int) -> list[tuple[int, float]]:
    """(rows, mean row error) of each chunk of ``size`` consecutive reference rows, in order (one statement).

    Rows are numbered by the log's timestamp for a log period; a reference table is numbered in the
    order the database reads it (SQL promises no order there: the band is computed once and kept).
    """
    if size < 1:
        raise ValueError("a chunk holds at least one row")
    dialect = engine.dialect.name
    if rows.is_log:
        number = sa.func.row_number().over(order_by=log_timestamp(mapping))
    elif is_spark(dialect):  # Spark refuses ROW_NUMBER() without ORDER BY; this id rises in the order it reads
        number = sa.func.row_number().over(order_by=sa.func.monotonically_increasing_id())
    else:
        number = sa.func.row_number().over()
    source, _ = _errors(mapping, rows, dialect, columns, means, scales, residual, extra={"rn": number})
    position = source.c.rn - 1
    # (p - p % size) / size is a whole number on every dialect, whether '/' divides integers or not
    chunk = ((position - position % size) / size).label("chunk")
    numbered = sa.select(chunk, source.c.e).subquery()
    query = (sa.select(numbered.c.chunk, sa.func.count().label("n"), sa.func.avg(numbered.c.e).label("mean"))
             .group_by(numbered.c.chunk).order_by(numbered.c.chunk))
    with connection(engine, mapping) as conn:
        found = conn.execute(query).all()
    return [(int(row.n), float(row.mean)) for row in found]


def missing_columns(columns: Sequence[str], moments: Moments) -> list[str]:
    """The columns without a finite reference value (left out of the fit)."""
    return [c for c in columns if c not in moments.means]
