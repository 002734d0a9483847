"""Live model performance from counts the warehouse computes over labelled rows.

Aggregates (``label IS NOT NULL`` only):

* classifier confusion: ``SELECT prediction, label, COUNT(*) ... GROUP BY prediction, label``;
* ROC AUC: ``SELECT ROUND(score, 4) AS s, label, COUNT(*) ... GROUP BY s, label`` (positives and
  negatives per distinct rounded score);
* regressor: ``SELECT COUNT(*), SUM(ABS(prediction - label)), SUM((prediction - label) * (prediction - label))``;
* label coverage: labelled rows and all rows of the window.

Every ratio with a zero denominator is **None** (never NaN or inf): precision without positive
predictions, recall without positive labels, AUC with one class only, anything on an empty window.
scikit-learn returns 0.0 with a warning (precision/recall/F1) or raises (AUC) in those cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AUC_DECIMALS",
    "ClassificationMetrics",
    "ConfusionCounts",
    "RegressionMetrics",
    "ScoreCounts",
    "classification_metrics",
    "confusion_counts",
    "label_coverage",
    "regression_aggregates",
    "regression_metrics",
    "roc_auc",
    "roc_auc_tie_bound",
    "score_counts",
]

AUC_DECIMALS = 4
"""Scores are rounded to 4 decimals before counting: at most 10 001 levels per label in [0, 1]."""


@dataclass(frozen=True)
class ConfusionCounts:
    """Binary confusion counts of the labelled rows (positive = 1)."""

    tp: int
    fp: int
    fn: int
    tn: int

    def __post_init__(self) -> None:
        if min(self.tp, self.fp, self.fn, self.tn) < 0:
            raise ValueError("confusion counts must be non-negative")

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


@dataclass(frozen=True)
class ClassificationMetrics:
    n: int
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True, eq=False)
class ScoreCounts:
    """Positives and negatives per distinct (rounded) score, levels strictly increasing."""

    levels: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray

    def __post_init__(self) -> None:
        levels = np.asarray(self.levels, dtype=float).reshape(-1)
        positives = np.asarray(self.positives, dtype=np.int64).reshape(-1)
        negatives = np.asarray(self.negatives, dtype=np.int64).reshape(-1)
        if not (levels.shape == positives.shape == negatives.shape):
            raise ValueError("levels, positives and negatives must have the same length")
        if np.any(positives < 0) or np.any(negatives < 0):
            raise ValueError("counts must be non-negative")
        order = np.argsort(levels, kind="stable")
        levels, positives, negatives = levels[order], positives[order], negatives[order]
        if levels.size > 1 and not np.all(np.diff(levels) > 0):
            raise ValueError("score levels must be distinct (one row per level)")
        for name, value in (("levels", levels), ("positives", positives), ("negatives", negatives)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScoreCounts):
            return NotImplemented
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in ("levels", "positives", "negatives"))

    def __hash__(self) -> int:
        return hash((self.levels.tobytes(), self.positives.tobytes(), self.negatives.tobytes()))


@dataclass(frozen=True)
class RegressionMetrics:
    n: int
    mae: float | None
    rmse: float | None


def _div(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray) -> ConfusionCounts:
    """The confusion aggregate from 0/1 arrays (tests, in-memory data)."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_pred).astype(int)
    return ConfusionCounts(tp=int(np.sum((y_pred == 1) & (y_true == 1))), fp=int(np.sum((y_pred == 1) & (y_true == 0))),
                           fn=int(np.sum((y_pred == 0) & (y_true == 1))), tn=int(np.sum((y_pred == 0) & (y_true == 0))))


def classification_metrics(counts: ConfusionCounts) -> ClassificationMetrics:
    """Accuracy, precision, recall and F1 (= 2tp / (2tp + fp + fn), as scikit-learn) of one confusion."""
    tp, fp, fn, tn = counts.tp, counts.fp, counts.fn, counts.tn
    return ClassificationMetrics(
        n=counts.n,
        accuracy=_div(tp + tn, counts.n),
        precision=_div(tp, tp + fp),
        recall=_div(tp, tp + fn),
        f1=_div(2 * tp, 2 * tp + fp + fn),
    )


def score_counts(scores: np.ndarray, labels: np.ndarray, *, decimals: int = AUC_DECIMALS) -> ScoreCounts:
    """The AUC aggregate from arrays: scores rounded with ``np.round`` (half to even), counted per label.

    SQL ``ROUND`` may break exact halves the other way; either way the AUC is exact for the rounded
    scores the query produced, and `roc_auc_tie_bound` bounds its distance to the raw-score AUC.
    """
    rounded = np.round(np.asarray(scores, dtype=float), decimals)
    labels = np.asarray(labels).astype(int)
    levels, index = np.unique(rounded, return_inverse=True)
    positives = np.bincount(index, weights=labels == 1, minlength=levels.size).astype(np.int64)
    negatives = np.bincount(index, weights=labels == 0, minlength=levels.size).astype(np.int64)
    return ScoreCounts(levels=levels, positives=positives, negatives=negatives)


def roc_auc(counts: ScoreCounts) -> float | None:
    """Area under the ROC curve by the Mann-Whitney rule: P(score_pos > score_neg) + P(tie) / 2.

    Equal to the trapezoidal area scikit-learn's ``roc_auc_score`` computes on the same (rounded)
    scores. None when either class is absent.
    """
    pos = counts.positives.astype(float)
    neg = counts.negatives.astype(float)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos == 0 or total_neg == 0:
        return None
    negatives_below = np.cumsum(neg) - neg
    return float(np.dot(pos, negatives_below + 0.5 * neg) / (total_pos * total_neg))


def roc_auc_tie_bound(counts: ScoreCounts) -> float | None:
    """Largest possible difference between this AUC and the AUC of the unrounded scores.

    Rounding is monotone, so only pairs that share a level can change order: at most half of them
    count differently, ``0.5 * sum(pos_i * neg_i) / (P * N)``.
    """
    pos = counts.positives.astype(float)
    neg = counts.negatives.astype(float)
    if pos.sum() == 0 or neg.sum() == 0:
        return None
    return float(0.5 * np.dot(pos, neg) / (pos.sum() * neg.sum()))


def regression_aggregates(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, float, float]:
    """``(n, sum |e|, sum e^2)`` with ``e = prediction - label`` over rows with both (the SQL aggregate)."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    keep = np.isfinite(y_true) & np.isfinite(y_pred)
    errors = y_pred[keep] - y_true[keep]
    return int(errors.size), float(np.abs(errors).sum()), float(np.dot(errors, errors))


def regression_metrics(n: int, sum_abs_error: float, sum_squared_error: float) -> RegressionMetrics:
    """MAE = sum|e| / n and RMSE = sqrt(sum e^2 / n); None for an empty window."""
    if n < 0 or sum_abs_error < 0 or sum_squared_error < 0:
        raise ValueError("n and the error sums must be non-negative")
    if n == 0:
        return RegressionMetrics(n=0, mae=None, rmse=None)
    return RegressionMetrics(n=n, mae=sum_abs_error / n, rmse=math.sqrt(sum_squared_error / n))


def label_coverage(labeled: int, total: int) -> float | None:
    """Share of the window's predictions that already have a label; None for an empty window."""
    if labeled < 0 or total < labeled:
        raise ValueError("need 0 <= labeled <= total")
    return _div(labeled, total)
