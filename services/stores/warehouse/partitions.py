"""Outcome counts per segment of a partition, pushed down to the warehouse: what the "Why" panel decomposes.

A :class:`Partition` splits every row by ONE column: each value of a categorical column (NULL is
its own group, ``(missing)``), or a numerical column's declared range segments in declaration order
(a row goes to the first range it falls in; rows in none of them, and NULL, NaN or +-inf values,
go to ``(rest)``). So the groups never overlap and always cover every row, which the exact
decomposition needs (``services.stats.decomposition``).

One statement per set of rows, whatever the number of partitions: a ``UNION ALL`` of one branch
per partition, each ``SELECT f, grp, prediction, label, COUNT(*) ... GROUP BY grp, prediction,
label`` (a regressor: ``COUNT``, ``SUM(|error|)``, ``SUM(error^2)`` per group). Only one row per
group and outcome comes back, never a logged row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.errors import MappingError
from services.mapping import ModelMapping
from services.segments import Segment
from services.stats.cbpe import CalibrationMap, ExpectedCells
from services.stats.fairness import GroupCounts, group_counts_from_rows
from services.stores.warehouse.binning import int_literal
from services.stores.warehouse.calibrated import cells_by
from services.stores.warehouse.engine import connection
from services.stores.warehouse.outcomes import RegressionSums
from services.stores.warehouse.rows import Rows, rows_source
from services.stores.warehouse.sql import double, finite_or_none, finite_value, union_all

REST = "(rest)"  # rows of a ranged partition in none of its ranges (no segment name starts with "(")
MISSING = "(missing)"  # a NULL value of a categorical partition (as services.stats.fairness names it)


@dataclass(frozen=True)
class Partition:
    """Rows split by ``column``: its values, or (``ranges`` given) its declared range segments + the rest."""

    column: str
    ranges: tuple[Segment, ...] = ()


def _group(dialect: str, partition: Partition) -> Any:
    if not partition.ranges:
        return sa.cast(sa.column(partition.column), sa.String())
    x = finite_value(dialect, partition.column)
    whens = []
    for segment in partition.ranges:
        inside = [x.is_not(None)] + ([x >= segment.lo] if segment.lo is not None else []) \
            + ([x < segment.hi] if segment.hi is not None else [])
        whens.append((sa.and_(*inside), sa.literal(segment.name, sa.String())))
    return sa.case(*whens, else_=sa.literal(REST, sa.String()))


def _sources(engine: Engine, mapping: ModelMapping, rows: Rows, partitions: Sequence[Partition],
             read: Sequence[str], exprs: dict[str, Any]) -> list[Any]:
    dialect = engine.dialect.name
    return [rows_source(mapping, rows, dialect, False, False, [*read, p.column],
                        {"grp": _group(dialect, p), **exprs})[0] for p in partitions]


def classification_by_partition(engine: Engine, mapping: ModelMapping, rows: Rows,
                                partitions: Sequence[Partition]) -> dict[str, tuple[GroupCounts, ...]]:
    """Per partition column, one :class:`GroupCounts` per group (rows with a prediction; confusion
    counts over the labelled ones). Predictions and labels must be 0/1 (MappingError otherwise)."""
    if not partitions:
        return {}
    prediction = mapping.column("prediction")
    label = mapping.columns.get("label")
    exprs = {"p": double(prediction), "y": double(label) if label else sa.null()}
    read = [prediction] + ([label] if label else [])
    branches = []
    for index, source in enumerate(_sources(engine, mapping, rows, partitions, read, exprs)):
        c = source.c
        branches.append(sa.select(int_literal(index).label("f"), c.grp, c.p, c.y, sa.func.count().label("n"))
                        .where(c.p.is_not(None)).group_by(c.grp, c.p, c.y))
    found: dict[int, list[tuple[Any, float, float | None, int]]] = defaultdict(list)
    with connection(engine, mapping) as conn:
        for row in conn.execute(union_all(branches)):
            f, group, p, y, n = tuple(row)  # type: Any, Any, Any, Any, Any
            p_value = finite_or_none(p)
            if p_value is None:  # NaN or +-inf: no prediction, as NULL
                continue
            found[int(f)].append((group, p_value, finite_or_none(y), int(n)))
    result: dict[str, tuple[GroupCounts, ...]] = {}
    for index, partition in enumerate(partitions):
        try:
            result[partition.column] = group_counts_from_rows(found.get(index, []))
        except ValueError as exc:
            raise MappingError(f"Model '{mapping.name}' logs predictions or labels other than 0 and 1, so its "
                               f"performance cannot be split by segment: {exc}.",
                               f"Map columns.prediction and columns.label of models.{mapping.name} to 0/1 "
                               "columns; a probability belongs in columns.score.") from exc
    return result


def regression_by_partition(engine: Engine, mapping: ModelMapping, rows: Rows,
                            partitions: Sequence[Partition]) -> dict[str, dict[str, RegressionSums]]:
    """Per partition column and group: predictions, labelled rows and the error sums (NaN and
    +-inf count as missing). A NULL categorical value is the group ``(missing)``."""
    if not partitions:
        return {}
    dialect = engine.dialect.name
    pred = finite_value(dialect, mapping.column("prediction"))
    label = finite_value(dialect, mapping.column("label")) if "label" in mapping.columns else sa.null()
    read = [mapping.column(c) for c in ("prediction", "label") if c in mapping.columns]
    branches = []
    for index, source in enumerate(_sources(engine, mapping, rows, partitions, read,
                                            {"pred": pred, "error": pred - label})):
        c = source.c
        branches.append(sa.select(int_literal(index).label("f"), c.grp, sa.func.count(c.pred).label("predictions"),
                                  sa.func.count(c.error).label("labeled"),
                                  sa.func.sum(sa.func.abs(c.error)).label("sae"),
                                  sa.func.sum(c.error * c.error).label("sse")).group_by(c.grp))
    result: dict[str, dict[str, RegressionSums]] = {p.column: {} for p in partitions}
    with connection(engine, mapping) as conn:
        for row in conn.execute(union_all(branches)):
            f, group, predictions, labeled, sae, sse = tuple(row)  # type: Any, Any, Any, Any, Any, Any
            name = MISSING if group is None else str(group)
            slot = result[partitions[int(f)].column]
            sums = RegressionSums(int(predictions or 0), int(labeled or 0), float(sae or 0.0), float(sse or 0.0))
            slot[name] = slot[name] + sums if name in slot else sums
    return result


def expected_by_partition(engine: Engine, mapping: ModelMapping, rows: Rows, partitions: Sequence[Partition],
                          calibration: CalibrationMap) -> dict[str, dict[str, ExpectedCells]]:
    """Per partition column, the CBPE expected cells of each group (what the labels would say, from the
    calibrated scores): one statement per partition. NULL groups are ``(missing)`` as above."""
    dialect = engine.dialect.name
    result: dict[str, dict[str, ExpectedCells]] = {}
    for partition in partitions:
        found = cells_by(engine, mapping, rows, calibration, group=(partition.column, _group(dialect, partition)))
        groups: dict[str, ExpectedCells] = {}
        for (_, group), cells in found.items():
            name = MISSING if group is None else str(group)
            groups[name] = groups[name] + cells if name in groups else cells
        result[partition.column] = groups
    return result
