"""An independent, row-level numpy implementation of CBPE as NannyML documents it, and data for it.

Nothing here imports ``services``: the calibrator is scikit-learn's ``IsotonicRegression(
out_of_bounds="clip", increasing=True)`` fitted on the reference *rows* (NannyML's
``IsotonicCalibrator``); every window row gets its calibrated ``p``; then

    TP = sum p over rows predicted 1, FP = sum (1 - p) over them,
    FN = sum p over rows predicted 0, TN = sum (1 - p) over them,

and ROC AUC is the trapezoidal area under the expected ROC curve whose step at each row, scores
descending, adds ``p`` to the true and ``1 - p`` to the false positives (NannyML's
``estimate_roc_auc``, without its rounding of the cumulative sums to 5 decimals).

``make_rows`` draws a scorer whose scores are over-confident (so that NannyML, which calibrates only
when calibration lowers the expected calibration error, calibrates too) and whose covariate shifts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression


def make_rows(seed: int, rows: int, shift: float = 0.0) -> pd.DataFrame:
    """``score`` (over-confident probability), ``prediction`` (score >= 0.5) and ``label``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, rows)
    truth = 1 / (1 + np.exp(-(1.2 * x - 0.3)))
    label = (rng.random(rows) < truth).astype("int64")
    score = 1 / (1 + np.exp(-(3.0 * x - 0.6 + rng.normal(0, 0.3, rows))))  # right order, too sure of itself
    return pd.DataFrame({"score": score, "prediction": (score >= 0.5).astype("int64"), "label": label})


def calibrator(reference_scores: np.ndarray, reference_labels: np.ndarray) -> IsotonicRegression:
    model = IsotonicRegression(out_of_bounds="clip", increasing=True)
    return model.fit(np.asarray(reference_scores, dtype=float), np.asarray(reference_labels, dtype=float))


def cbpe(reference_scores: np.ndarray, reference_labels: np.ndarray, scores: np.ndarray,
         predictions: np.ndarray) -> dict[str, float]:
    """Estimated accuracy, precision, recall, F1 and ROC AUC of the window rows (finite scores only)."""
    scores = np.asarray(scores, dtype=float)
    keep = np.isfinite(scores)
    scores, predictions = scores[keep], np.asarray(predictions)[keep].astype(int)
    p = calibrator(reference_scores, reference_labels).predict(scores)
    tp = float(np.sum(np.where(predictions == 1, p, 0.0)))
    fp = float(np.sum(np.where(predictions == 1, 1 - p, 0.0)))
    fn = float(np.sum(np.where(predictions == 0, p, 0.0)))
    tn = float(np.sum(np.where(predictions == 0, 1 - p, 0.0)))
    order = np.argsort(-scores, kind="stable")
    tps = np.concatenate([[0.0], np.cumsum(p[order])])
    fps = np.concatenate([[0.0], np.cumsum(1 - p[order])])
    auc = float(np.trapezoid(tps / tps[-1], fps / fps[-1]))
    return {"accuracy": (tp + tn) / (tp + fp + fn + tn), "precision": tp / (tp + fp), "recall": tp / (tp + fn),
            "f1": 2 * tp / (2 * tp + fp + fn), "roc_auc": auc}
