"""Performance before labels: confidence-based performance estimation (CBPE) from per-cell aggregates.

CBPE (as NannyML documents it) turns a calibrated probability ``p`` per row into *expected*
confusion counts: a row predicted 1 is a true positive with probability ``p`` and a false positive
with ``1 - p``; a row predicted 0 a false negative with ``p`` and a true negative with ``1 - p``::

    TP = sum p (predicted 1)    FP = sum (1 - p) (predicted 1)
    FN = sum p (predicted 0)    TN = sum (1 - p) (predicted 0)

and the metrics follow from them. ROC AUC is the area under the *expected* ROC curve, the curve
whose step at each row (scores descending) adds ``p`` to the true and ``1 - p`` to the false
positives.

**The calibration map** is piecewise linear in the score (isotonic regression's breakpoints,
interpolated linearly, clipped outside them: what scikit-learn's ``IsotonicRegression(
out_of_bounds="clip")`` predicts). So over a cell of scores that lies inside one segment,
``p = a + b * score`` and ``sum p = a * n + b * sum(score)``: the warehouse only needs ``COUNT``,
``SUM(score)`` and ``SUM(score^2)`` per (predicted class, cell). The cells are a score grid that
holds every breakpoint (plus reference quantiles, for ROC AUC): the expected confusion counts are
exact; ROC AUC is exact over flat cells and counts pairs inside a sloped cell as half ordered
(:func:`roc_auc_grid_bound` bounds that).

**The band** is the spread of the metric the labels will give if the calibrated probabilities are
right: each row's label Bernoulli(p), independently. Accuracy and precision are then linear in the
labels (variance ``sum p(1-p)`` over their rows, divided by the fixed denominator squared); recall
and F1 are ratios of the two independent sums TP and FN (delta method); ROC AUC uses Hanley and
McNeil's (1982) standard error with the expected positives and negatives. The band is the estimate
+- ``BAND_Z`` standard errors (NannyML also draws +-3 standard errors), clipped to [0, 1]. It says
how far the realised value may land from the estimate by chance; it does not cover a calibration
that no longer holds (concept drift), which no label-free method can see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
BAND_Z = 3.0
BAND = "bernoulli_3se"
"""How the band is made (the report names it): +-3 standard errors of the metric when every label is Bernoulli(p)."""
GRID_QUANTILES = 200


@dataclass(frozen=True, eq=False)
class CalibrationMap:
    """``p(score)``: linear between the breakpoints ``(x_k, y_k)``, ``y_0`` below ``x_0``, ``y_K`` above ``x_K``.

    ``grid`` holds the cell edges the warehouse bins scores on: sorted, distinct, every breakpoint
    among them, so each cell lies inside one segment of the map.
    """

    x: np.ndarray
    y: np.ndarray
    grid: np.ndarray

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=float).reshape(-1)
        y = np.asarray(self.y, dtype=float).reshape(-1)
        grid = np.asarray(self.grid, dtype=float).reshape(-1)
        if x.size == 0 or x.shape != y.shape:
            raise ValueError("a calibration map needs as many breakpoint scores as probabilities, at least one")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(grid))):
            raise ValueError("a calibration map holds finite numbers only")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0) or y[0] < 0 or y[-1] > 1:
            raise ValueError("breakpoints must increase and probabilities must not decrease, within [0, 1]")
        if np.any(np.diff(grid) <= 0) or not np.all(np.isin(x, grid)):
            raise ValueError("the grid must be increasing and hold every breakpoint")
        for name, value in (("x", x), ("y", y), ("grid", grid)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw scores (np.interp clips outside the breakpoints, as sklearn's clip)."""
        out: np.ndarray = np.interp(np.asarray(scores, dtype=float), self.x, self.y)
        return out

    @property
    def cells(self) -> int:
        """Cells of the grid: below its first edge, between consecutive edges, from its last edge up."""
        return int(self.grid.size) + 1

    def cell_lines(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` per cell, ``p = a + b * score`` inside it (cell ``c`` holds scores with ``c`` edges <= score)."""
        g = self.grid
        inner = (g[:-1] + g[1:]) / 2
        probes = np.concatenate([[g[0] - 1.0], inner, [g[-1] + 1.0]])
        k = np.searchsorted(self.x, probes, side="right") - 1  # the segment starting at or below the probe
        a = np.empty(probes.size)
        b = np.zeros(probes.size)
        below, above = k < 0, k >= self.x.size - 1
        a[below], a[above] = self.y[0], self.y[-1]
        inside = ~(below | above)
        ki = k[inside]
        slope = (self.y[ki + 1] - self.y[ki]) / (self.x[ki + 1] - self.x[ki])
        b[inside] = slope
        a[inside] = self.y[ki] - slope * self.x[ki]
        return a, b


def score_grid(breakpoints: np.ndarray, scores: np.ndarray, weights: np.ndarray,
               quantiles: int = GRID_QUANTILES) -> np.ndarray:
    """The map's breakpoints together with ``quantiles`` weighted quantiles of the reference scores.

    ``scores`` are distinct reference scores and ``weights`` how many rows hold each; the quantiles
    split a sloped segment of the map into cells so that ROC AUC is resolved inside it.
    """
    scores = np.asarray(scores, dtype=float)
    weights = np.asarray(weights, dtype=float)
    order = np.argsort(scores)
    scores, weights = scores[order], weights[order]
    cumulative = np.cumsum(weights)
    if scores.size == 0 or cumulative[-1] <= 0:
        return np.unique(np.asarray(breakpoints, dtype=float))
    targets = cumulative[-1] * np.arange(1, quantiles) / quantiles
    picked = scores[np.minimum(np.searchsorted(cumulative, targets, side="left"), scores.size - 1)]
    return np.unique(np.concatenate([np.asarray(breakpoints, dtype=float), picked]))


@dataclass(frozen=True, eq=False)
class ExpectedCells:
    """Per predicted class (row 0: predicted 0, row 1: predicted 1) and score cell: rows, sum p, sum p^2.

    ``excluded``: rows with a prediction but no finite score (NULL, NaN, +-inf), left out of the estimate.
    Cells of windows, versions and days add up (``+``) when they share the map.
    """

    n: np.ndarray
    sum_p: np.ndarray
    sum_p2: np.ndarray
    excluded: int = 0

    def __post_init__(self) -> None:
        for name in ("n", "sum_p", "sum_p2"):
            value = np.asarray(getattr(self, name), dtype=float)
            if value.ndim != 2 or value.shape[0] != 2:
                raise ValueError("expected cells are a (2, cells) array per quantity")
            object.__setattr__(self, name, value)
        if not (self.n.shape == self.sum_p.shape == self.sum_p2.shape):
            raise ValueError("n, sum_p and sum_p2 must have the same shape")

    @staticmethod
    def empty(cells: int) -> ExpectedCells:
        zeros = np.zeros((2, cells))
        return ExpectedCells(zeros, zeros, zeros, 0)

    @property
    def rows(self) -> int:
        return int(round(float(self.n.sum())))

    def __add__(self, other: ExpectedCells) -> ExpectedCells:
        if self.n.shape != other.n.shape:
            raise ValueError("only expected cells of the same map add up")
        return ExpectedCells(self.n + other.n, self.sum_p + other.sum_p, self.sum_p2 + other.sum_p2,
                             self.excluded + other.excluded)


def expected_cells(calibration: CalibrationMap, n: np.ndarray, sum_score: np.ndarray, sum_score2: np.ndarray,
                   excluded: int = 0) -> ExpectedCells:
    """The expected cells from the warehouse's ``COUNT``, ``SUM(score)``, ``SUM(score^2)`` per (class, cell).

    Inside a cell ``p = a + b s``: ``sum p = a n + b sum s`` and ``sum p^2 = a^2 n + 2ab sum s + b^2 sum s^2``.
    Rounding can put a sum a hair outside what n rows allow; it is clipped back (``0 <= sum p^2 <= sum p <= n``).
    """
    a, b = calibration.cell_lines()
    n = np.asarray(n, dtype=float)
    s = np.asarray(sum_score, dtype=float)
    s2 = np.asarray(sum_score2, dtype=float)
    sloped = b != 0  # a flat cell needs no score sum: a huge score's SUM(score^2) may be inf there, and 0*inf is NaN
    with np.errstate(invalid="ignore", over="ignore"):
        linear = np.where(sloped, b * s, 0.0)
        square = np.where(sloped, 2 * a * b * s + b * b * s2, 0.0)
    sum_p = np.clip(a * n + linear, 0.0, n)
    sum_p2 = np.clip(a * a * n + square, 0.0, sum_p)
    return ExpectedCells(n, sum_p, sum_p2, excluded)


def expected_cells_of_rows(calibration: CalibrationMap, scores: np.ndarray, predictions: np.ndarray
                           ) -> ExpectedCells:
    """The same aggregate from in-memory rows (finite scores, 0/1 predictions): tests and small data."""
    scores = np.asarray(scores, dtype=float)
    predictions = np.asarray(predictions).astype(int)
    finite = np.isfinite(scores)
    cell = np.searchsorted(calibration.grid, scores[finite], side="right")
    pred = predictions[finite]
    p = calibration.predict(scores[finite])
    shape = (2, calibration.cells)
    n, sp, sp2 = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    np.add.at(n, (pred, cell), 1.0)
    np.add.at(sp, (pred, cell), p)
    np.add.at(sp2, (pred, cell), p * p)
    return ExpectedCells(n, sp, sp2, int((~finite).sum()))


@dataclass(frozen=True)
class Estimate:
    value: float | None
    lower: float | None
    upper: float | None


def _band(value: float | None, variance: float | None) -> Estimate:
    if value is None or variance is None or not math.isfinite(value) or not math.isfinite(variance):
        return Estimate(None if value is None or not math.isfinite(value) else value, None, None)
    se = math.sqrt(max(variance, 0.0))
    return Estimate(value, max(0.0, value - BAND_Z * se), min(1.0, value + BAND_Z * se))


def _div(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def roc_auc_cells(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """Area under the expected ROC curve through the cell edges (cells in increasing score order).

    Pairs in one cell count half: exact for a cell where p is constant (the curve is straight there).
    """
    pos = np.asarray(positives, dtype=float)
    neg = np.asarray(negatives, dtype=float)
    total_pos, total_neg = pos.sum(), neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return None
    negatives_below = np.cumsum(neg) - neg
    return float(np.dot(pos, negatives_below + 0.5 * neg) / (total_pos * total_neg))


def roc_auc_grid_bound(cells: ExpectedCells, calibration: CalibrationMap) -> float | None:
    """How far the grid's ROC AUC can be from the row-level one: half the within-cell pairs of sloped cells."""
    pos = cells.sum_p.sum(axis=0)
    neg = cells.n.sum(axis=0) - pos
    if pos.sum() <= 0 or neg.sum() <= 0:
        return None
    sloped = calibration.cell_lines()[1] > 0
    return float(0.5 * np.dot(pos[sloped], neg[sloped]) / (pos.sum() * neg.sum()))


def _hanley_mcneil(auc: float, positives: float, negatives: float) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    return (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) \
        / (positives * negatives)


def estimate_metrics(cells: ExpectedCells) -> dict[str, Estimate]:
    """Estimated accuracy, precision, recall, F1 and ROC AUC with their bands; None where undefined.

    Undefined as for realised metrics (``services.stats.performance``): no rows, no positive
    predictions (precision), no expected positives (recall), one expected class only (ROC AUC).
    """
    n0, n1 = float(cells.n[0].sum()), float(cells.n[1].sum())
    tp, fn = float(cells.sum_p[1].sum()), float(cells.sum_p[0].sum())
    v1 = float((cells.sum_p[1] - cells.sum_p2[1]).sum())  # sum p(1-p), predicted 1
    v0 = float((cells.sum_p[0] - cells.sum_p2[0]).sum())
    n = n0 + n1
    tn = n0 - fn
    out: dict[str, Estimate] = {}
    accuracy = _div(tp + tn, n)
    out["accuracy"] = _band(accuracy, (v0 + v1) / (n * n) if n > 0 else None)
    precision = _div(tp, n1)
    out["precision"] = _band(precision, v1 / (n1 * n1) if n1 > 0 else None)
    positives = tp + fn
    recall = _div(tp, positives)
    out["recall"] = _band(recall, (fn * fn * v1 + tp * tp * v0) / positives ** 4 if positives > 0 else None)
    d = n1 + tp + fn  # 2TP + FP + FN
    f1 = _div(2 * tp, d)
    out["f1"] = _band(f1, (4 * (n1 + fn) ** 2 * v1 + 4 * tp * tp * v0) / d ** 4 if d > 0 else None)
    pos_cells = cells.sum_p.sum(axis=0)
    neg_cells = cells.n.sum(axis=0) - pos_cells
    auc = roc_auc_cells(pos_cells, neg_cells)
    negatives = n - positives
    variance = _hanley_mcneil(auc, positives, negatives) if auc is not None and positives >= 1 and negatives >= 1 \
        else None
    out["roc_auc"] = _band(auc, variance)
    return out
