"""Predictions against labels, pushed down to the warehouse: fairness counts, classification counts, regression sums.

Each function sends one statement (``GROUP BY`` the sensitive group, the rounded score, the
prediction and the label) and returns one result per (day, version) group. Predictions and labels
of a classifier must be 0/1: anything else is a MappingError, never rounded into 0/1. NaN and
+-inf count as missing, as NULL does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.errors import MappingError
from services.mapping import ModelMapping
from services.stats.fairness import GroupCounts, group_counts_from_rows
from services.stats.performance import AUC_DECIMALS, ConfusionCounts, ScoreCounts
from services.stores.warehouse.binning import int_literal
from services.stores.warehouse.engine import connection
from services.stores.warehouse.rows import Rows, rows_source
from services.stores.warehouse.sql import (
    WHOLE,
    GroupKey,
    GroupKeys,
    double,
    finite_or_none,
    finite_value,
    grouped,
    union_all,
)


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
            "grp": sa.cast(sa.column(attribute), sa.String()), "p": double(prediction), "y": double(label)})
        c = source.c
        branches.append(grouped(source, keys, int_literal(index).label("f"), c.grp, c.p, c.y,
                                sa.func.count().label("n"), where=[c.p.is_not(None)], group=[c.grp, c.p, c.y]))
    collected: dict[GroupKey, dict[str, list[tuple[Any, ...]]]] = defaultdict(lambda: {a: [] for a in attributes})
    with connection(engine, mapping) as conn:
        keys_of = GroupKeys(by_day, by_version)
        for row in conn.execute(union_all(branches)):
            f, group, p, y, n = row[keys_of.width:]
            p, y = finite_or_none(p), finite_or_none(y)
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
    exprs = {"p": double(prediction), "y": double(mapping.column("label")) if has_label else sa.null(),
             "s": _round_score(dialect, finite_value(dialect, mapping.column("score"))) if has_score else sa.null()}
    read = [prediction] + [mapping.column(c) for c in ("label", "score") if c in mapping.columns]
    source, keys = rows_source(mapping, rows, dialect, by_day, by_version, read, exprs)
    c = source.c
    query = grouped(source, keys, c.s, c.p, c.y, sa.func.count().label("n"), where=[c.p.is_not(None)],
                    group=[c.s, c.p, c.y])
    parts: dict[GroupKey, list[tuple[Any, Any, Any, int]]] = defaultdict(list)
    with connection(engine, mapping) as conn:
        keys_of = GroupKeys(by_day, by_version)
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
        pred, label = finite_or_none(pred), finite_or_none(label)
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
    query = grouped(source, keys, sa.func.count(c.pred).label("predictions"), sa.func.count(c.error).label("labeled"),
                    sa.func.sum(sa.func.abs(c.error)).label("sae"), sa.func.sum(c.error * c.error).label("sse"))
    result: dict[GroupKey, RegressionSums] = {}
    with connection(engine, mapping) as conn:
        keys_of = GroupKeys(by_day, by_version)
        for row in conn.execute(query):
            predictions, labeled, sae, sse = row[keys_of.width:]
            result[keys_of(row[:keys_of.width])] = RegressionSums(int(predictions or 0), int(labeled or 0),
                                                                float(sae or 0.0), float(sse or 0.0))
    return result
