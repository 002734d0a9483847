"""CBPE's aggregates pushed down to the warehouse: the reference's score/label counts, and score moments per cell.

:func:`reference_score_labels` sends ``SELECT score, label, COUNT(*) ... GROUP BY score, label`` over
the reference's labelled rows with a finite score: what the calibration fit needs (each distinct
score once, with its positives and rows), never a window's rows.

:func:`calibrated_cells` sends one statement per window (or per backfill chunk, grouped by day and
version)::

    SELECT [day,] [version,] prediction, cell(score), COUNT(*), SUM(score), SUM(score * score)
    ... WHERE prediction IS NOT NULL GROUP BY ..., prediction, cell(score)

where ``cell`` is the score's cell on the calibration map's grid, found as the histograms find a
bin (``binning.binned_values``: ``width_bucket`` on PostgreSQL, a binary search on DuckDB, a CASE
tree elsewhere). The map is linear inside each cell, so these three numbers give the expected
confusion counts exactly (``services.stats.cbpe.expected_cells``). Rows whose score is NULL, NaN or
+-inf land in the NULL cell and are counted as excluded; predictions must be 0/1 (MappingError).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.errors import MappingError
from services.mapping import ModelMapping
from services.stats.cbpe import CalibrationMap, ExpectedCells, expected_cells
from services.stores.warehouse.binning import binned_values
from services.stores.warehouse.engine import connection
from services.stores.warehouse.rows import Rows, rows_source
from services.stores.warehouse.sql import WHOLE, GroupKey, GroupKeys, double, finite_or_none, finite_value, grouped


def _zero_one(mapping: ModelMapping, what: str, value: float) -> MappingError:
    return MappingError(f"Model '{mapping.name}' logs {what} other than 0 and 1 ({value:g}), so its performance "
                        "cannot be estimated.",
                        f"Map columns.{what.rstrip('s')} of models.{mapping.name} to a 0/1 column; the probability "
                        "belongs in columns.score.")


def reference_score_labels(engine: Engine, mapping: ModelMapping, rows: Rows) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """``(scores, positives, counts)`` per distinct finite score of the labelled reference rows, scores ascending."""
    dialect = engine.dialect.name
    score, label = mapping.column("score"), mapping.column("label")
    source, _ = rows_source(mapping, rows, dialect, False, False, [score, label],
                            {"s": finite_value(dialect, score), "y": double(label)})
    c = source.c
    query = grouped(source, [], c.s, c.y, sa.func.count().label("n"), where=[c.s.is_not(None), c.y.is_not(None)],
                    group=[c.s, c.y])
    totals: dict[float, list[int]] = {}
    with connection(engine, mapping) as conn:
        for row in conn.execute(query):
            s, y, n = row[0], row[1], row[2]  # type: Any, Any, Any
            y_value = finite_or_none(y)
            if y_value is None:  # a NaN label is a missing label
                continue
            if y_value not in (0, 1):
                raise _zero_one(mapping, "labels", y_value)
            slot = totals.setdefault(float(s), [0, 0])
            slot[0] += int(n) * int(y_value)
            slot[1] += int(n)
    scores = np.array(sorted(totals), dtype=float)
    positives = np.array([totals[s][0] for s in scores], dtype=np.int64)
    counts = np.array([totals[s][1] for s in scores], dtype=np.int64)
    return scores, positives, counts


def calibrated_cells(engine: Engine, mapping: ModelMapping, rows: Rows, calibration: CalibrationMap, *,
                     by_day: bool = False, by_version: bool = False) -> dict[GroupKey, ExpectedCells]:
    """Expected cells (``services.stats.cbpe.ExpectedCells``) per (day, version) group, in one statement.

    A group is present when it has a row with a prediction; without grouping an empty window gives
    empty cells.
    """
    found = cells_by(engine, mapping, rows, calibration, by_day=by_day, by_version=by_version)
    result = {key: cells for (key, _), cells in found.items()}
    if not result and not by_day and not by_version:
        result[WHOLE] = ExpectedCells.empty(calibration.cells)
    return result


def cells_by(engine: Engine, mapping: ModelMapping, rows: Rows, calibration: CalibrationMap, *,
             by_day: bool = False, by_version: bool = False, group: tuple[str, Any] | None = None
             ) -> dict[tuple[GroupKey, Any], ExpectedCells]:
    """Expected cells per (day, version) group and, with ``group`` (the column it reads, an expression
    labelling each row), per label as well: one statement. Keys: (group key, label or None)."""
    dialect = engine.dialect.name
    prediction, score = mapping.column("prediction"), mapping.column("score")
    read = [prediction, score, *([group[0]] if group else [])]
    exprs = {"p": double(prediction), "x": finite_value(dialect, score), **({"grp": group[1]} if group else {})}
    source, keys = rows_source(mapping, rows, dialect, by_day, by_version, read, exprs)
    keys = [*keys, *(["grp"] if group else [])]
    binned = binned_values(dialect, source, [*keys, "p"], calibration.grid, "cbpe_grid")
    c = binned.c
    query = grouped(binned, [*keys, "p"], c.bin, sa.func.count().label("n"), sa.func.sum(c.x).label("s"),
                    sa.func.sum(c.x * c.x).label("ss"), where=[c.p.is_not(None)], group=[c.bin])
    cells = calibration.cells
    found: dict[tuple[GroupKey, Any], list[Any]] = defaultdict(
        lambda: [np.zeros((2, cells)), np.zeros((2, cells)), np.zeros((2, cells)), 0])
    keys_of = GroupKeys(by_day, by_version)
    width = keys_of.width + (1 if group else 0)
    with connection(engine, mapping) as conn:
        for row in conn.execute(query):
            p, cell, n, s, ss = row[width:]
            p_value = finite_or_none(p)
            if p_value is None:  # NaN or +-inf: no prediction, as NULL
                continue
            if p_value not in (0, 1):
                raise _zero_one(mapping, "predictions", p_value)
            slot = found[(keys_of(row[:keys_of.width]), row[keys_of.width] if group else None)]
            if cell is None:  # NULL, NaN or +-inf score
                slot[3] += int(n)
                continue
            at = (int(p_value), int(cell))
            slot[0][at] += int(n)
            slot[1][at] += float(s or 0.0)
            slot[2][at] += float(ss or 0.0)
    return {key: expected_cells(calibration, n, s, ss, excluded) for key, (n, s, ss, excluded) in found.items()}
