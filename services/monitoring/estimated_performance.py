"""Performance before labels: CBPE estimates of a binary classifier's metrics, per window and version.

What is estimated and how (``services.stats.cbpe``): a calibration map ``score -> P(label = 1)`` is
fitted once per reference with scikit-learn's ``IsotonicRegression(out_of_bounds="clip",
increasing=True)`` (NannyML's calibrator) on the reference's labelled rows, and kept in tower state
(``monitoring_fitted``, kind ``calibration``, keyed by the reference id). Each window then sends one
statement (``services.stores.warehouse.calibrated``) whose per-cell counts and score sums give the
expected confusion counts; accuracy, precision, recall, F1 and ROC AUC follow, each with a band.

Differences from NannyML's CBPE, on purpose: the map is always applied (NannyML skips it when it
would not lower the expected calibration error in every fold of the reference, i.e. when the scores
are already calibrated, where isotonic calibration changes little); ROC AUC is resolved on a score
grid (the map's breakpoints and 200 reference quantiles) rather than per row; the band is the
metric's spread when labels are Bernoulli(p) rather than the spread of the metric over reference
chunks.

Not covered, and so never shown: **regressors** (CBPE estimates classification metrics; NannyML's
DLE for regression needs a model fitted on features, which the tower does not train), models that
log **no score**, and references **without labels** (nothing to calibrate on). The report then
carries the reason instead of numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.mapping import ModelMapping
from services.monitoring.config import EstimatedPerformanceRule
from services.monitoring.fitted import kept_fit
from services.monitoring.reference import ReferenceProfile
from services.monitoring.store import ALL_VERSIONS, monitoring_results
from services.segments import OVERALL
from services.stats.cbpe import (
    BAND,
    METRICS,
    CalibrationMap,
    Estimate,
    ExpectedCells,
    estimate_metrics,
    score_grid,
)
from services.stats.performance import classification_metrics, roc_auc
from services.stores.warehouse.calibrated import reference_score_labels
from services.stores.warehouse.rows import reference_rows

KIND = "calibration"
FORMAT = 1
METHOD = "cbpe"
PREFIX = "estimated_"
NOT_HERE = "not estimated in this view (the monitoring job and the report command estimate it)"


def metric_name(metric: str) -> str:
    """The stored result metric of an estimated metric: ``roc_auc`` -> ``estimated_roc_auc``."""
    return PREFIX + metric


# --------------------------------------------------------------------------------------------
# The calibration map, fitted once per reference
# --------------------------------------------------------------------------------------------
def unavailable_reason(mapping: ModelMapping, profile: ReferenceProfile) -> str | None:
    """Why this model gets no estimate (None when it can get one)."""
    if mapping.task != "binary_classification":
        return ("not estimated: CBPE covers binary classifiers only; a regressor's error cannot be estimated "
                "without labels here")
    if "score" not in mapping.columns:
        return f"not estimated: models.{mapping.name} maps no score column, and CBPE needs the model's probability"
    ref = profile.classification
    if ref is None or ref.labeled == 0:
        return "not estimated: the reference holds no labelled predictions to calibrate the scores on"
    c = ref.confusion
    if c.tp + c.fn == 0 or c.fp + c.tn == 0:
        return "not estimated: the reference's labels are all of one class, so no calibration can be fitted"
    if ref.scores is None or ref.scores.levels.size == 0:
        return "not estimated: the reference's labelled rows have no finite score"
    return None


def fit_calibration(scores: np.ndarray, positives: np.ndarray, counts: np.ndarray) -> CalibrationMap:
    """Isotonic regression of the label on the score, weighted by rows per distinct score.

    Fitting the distinct scores with their mean label and row count as weight is the fit on the
    rows themselves (scikit-learn merges tied scores that way before fitting).
    """
    from sklearn.isotonic import IsotonicRegression

    weights = np.asarray(counts, dtype=float)
    model = IsotonicRegression(out_of_bounds="clip", increasing=True, y_min=0.0, y_max=1.0)
    model.fit(np.asarray(scores, dtype=float), np.asarray(positives, dtype=float) / weights, sample_weight=weights)
    x, y = np.asarray(model.X_thresholds_, dtype=float), np.clip(np.asarray(model.y_thresholds_, dtype=float), 0, 1)
    return CalibrationMap(x=x, y=y, grid=score_grid(x, scores, weights))


def _payload(calibration: CalibrationMap, rows: int) -> dict[str, Any]:
    return {"format": FORMAT, "x": calibration.x.tolist(), "y": calibration.y.tolist(),
            "grid": calibration.grid.tolist(), "rows": rows}


def calibration_for(tower: Engine, warehouse: Engine, mapping: ModelMapping, profile: ReferenceProfile, *,
                    refresh: bool = False) -> CalibrationMap | None:
    """The model's calibration map on this reference (fitted and kept the first time), or None.

    None when the model gets no estimate (`unavailable_reason`). The reference's score/label counts
    are read once per reference definition; windows never are.
    """
    if unavailable_reason(mapping, profile) is not None:
        return None
    definition = profile.definition

    def fit() -> dict[str, Any]:
        log_range = definition.get("log_range")
        rows = reference_rows(mapping, *(datetime.fromisoformat(v) for v in log_range)) if log_range \
            else reference_rows(mapping)
        scores, positives, counts = reference_score_labels(warehouse, mapping, rows)
        return _payload(fit_calibration(scores, positives, counts), int(counts.sum()))

    return kept_fit(tower, profile.reference_id, KIND, mapping.name, fit, _map_of, refresh=refresh)


def _map_of(payload: dict[str, Any]) -> CalibrationMap | None:
    """The kept payload as a map, or None when it is not one this version wrote (never trusted half-way)."""
    if payload.get("format") != FORMAT:
        return None
    numbers = [payload.get(k) for k in ("x", "y", "grid")]
    if not all(isinstance(v, list) and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)
               for v in numbers):
        return None
    try:
        return CalibrationMap(x=np.asarray(payload["x"], dtype=float), y=np.asarray(payload["y"], dtype=float),
                              grid=np.asarray(payload["grid"], dtype=float))
    except (KeyError, TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# One window's estimate
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EstimatedPerformance:
    """CBPE estimates of one window, or why there are none (``reason``; then ``metrics`` is empty).

    ``rows``: scored predictions estimated over; ``excluded``: predictions without a finite score.
    ``limits`` per metric as the realised rule's (``max_drop`` below the reference's realised value);
    ``judged`` False with fewer than ``min_rows`` rows.
    """

    metrics: dict[str, Estimate]
    reference: dict[str, float | None]
    limits: dict[str, float | None]
    rows: int
    excluded: int
    judged: bool
    rule_metric: str
    reason: str | None = None

    def alert(self, metric: str) -> bool | None:
        """The rule's verdict: even the band's upper end is below the limit (None: not judged)."""
        estimate, limit = self.metrics.get(metric), self.limits.get(metric)
        if not self.judged or estimate is None or estimate.upper is None or limit is None:
            return None
        return bool(estimate.upper < limit)


def _reference_values(profile: ReferenceProfile) -> dict[str, float | None]:
    ref = profile.classification
    if ref is None:
        return {}
    m = classification_metrics(ref.confusion)
    return {"accuracy": m.accuracy, "precision": m.precision, "recall": m.recall, "f1": m.f1,
            "roc_auc": roc_auc(ref.scores) if ref.scores is not None else None}


def estimated_result(mapping: ModelMapping, profile: ReferenceProfile, cells: ExpectedCells | None,
                     rule: EstimatedPerformanceRule) -> EstimatedPerformance:
    """The window's estimate from its expected cells, or no metrics and the reason (regressors always)."""
    metric = rule.metric_for(mapping.task)
    if cells is None or mapping.task != "binary_classification":
        reason = unavailable_reason(mapping, profile) or NOT_HERE
        return EstimatedPerformance({}, {}, {}, 0, 0, False, metric, reason)
    reference = _reference_values(profile)
    limits = {m: None if reference.get(m) is None else float(reference[m] or 0.0) * (1 - rule.max_drop)
              for m in METRICS}
    rows = cells.rows
    return EstimatedPerformance(metrics=estimate_metrics(cells), reference=reference, limits=limits, rows=rows,
                                excluded=cells.excluded, judged=rows >= rule.min_rows, rule_metric=metric,
                                reason=None if rows else "no scored prediction in the window")


def estimated_json(estimated: EstimatedPerformance | None, num: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``estimated_performance`` ({metric: {value, lower, upper}} or null) and ``estimation`` (how, or why not)."""
    if estimated is None:
        return None, {"method": METHOD, "band": BAND, "rows": 0, "excluded_rows": 0, "reason": NOT_HERE}
    values = None if not estimated.metrics else {
        m: {"value": num(e.value), "lower": num(e.lower), "upper": num(e.upper)} for m, e in estimated.metrics.items()}
    return values, {"method": METHOD, "band": BAND, "rows": estimated.rows, "excluded_rows": estimated.excluded,
                    "reason": estimated.reason}


def estimated_result_rows(estimated: EstimatedPerformance | None) -> list[dict[str, Any]]:
    """Rows for ``monitoring_results`` (keyword arguments of ``WindowReport.result_rows``' ``add``).

    Per metric ``estimated_<m>`` (value, threshold = the limit, alert = the rule's verdict, method
    ``cbpe``), ``estimated_<m>_lower`` and ``estimated_<m>_upper``; then ``estimated_rows`` and
    ``estimated_excluded``. Nothing for a model without estimates: no row says "0" where nothing
    was estimated.
    """
    if estimated is None or not estimated.metrics:
        return []
    out: list[dict[str, Any]] = []
    for metric, e in estimated.metrics.items():
        out.append({"metric": metric_name(metric), "value": e.value, "threshold": estimated.limits.get(metric),
                    "alert": estimated.alert(metric), "method": METHOD})
        out.append({"metric": metric_name(metric) + "_lower", "value": e.lower, "method": METHOD})
        out.append({"metric": metric_name(metric) + "_upper", "value": e.upper, "method": METHOD})
    out.append({"metric": "estimated_rows", "value": estimated.rows, "method": METHOD})
    out.append({"metric": "estimated_excluded", "value": estimated.excluded, "method": METHOD})
    return out


# --------------------------------------------------------------------------------------------
# Read back for the performance page
# --------------------------------------------------------------------------------------------
def estimated_over_time(tower: Engine, model: str, start: datetime, end: datetime, *,
                        version: str = ALL_VERSIONS, segment: str = OVERALL) -> pd.DataFrame:
    """Per day and metric: columns day, metric (``roc_auc``, ...), value, lower, upper, threshold, alert."""
    from services.monitoring.tower_reads import read_rows

    columns = ["day", "metric", "value", "lower", "upper", "threshold", "alert"]
    if start >= end:
        return pd.DataFrame(columns=columns)
    r = monitoring_results.c
    names = [metric_name(m) + suffix for m in METRICS for suffix in ("", "_lower", "_upper")]
    rows = read_rows(tower, sa.select(r.window_start, r.metric, r.value, r.threshold, r.alert)
                     .where(r.model == model, r.segment == segment, r.version == version, r.column_name == "",
                            r.slice_key == "",
                            r.metric.in_(names), r.window_start >= start, r.window_start < end)
                     .order_by(r.window_start, r.metric))
    if not rows:
        return pd.DataFrame(columns=columns)
    raw = pd.DataFrame([tuple(x) for x in rows], columns=["day", "name", "value", "threshold", "alert"])
    raw["value"] = raw["value"].astype("float64")
    out = []
    for metric in METRICS:
        base = metric_name(metric)
        main = raw[raw["name"] == base].set_index("day")
        if main.empty:
            continue
        lower = raw[raw["name"] == base + "_lower"].set_index("day")["value"]
        upper = raw[raw["name"] == base + "_upper"].set_index("day")["value"]
        out.append(pd.DataFrame({"day": main.index, "metric": metric, "value": main["value"].to_numpy(),
                                 "lower": main.index.map(lower).astype("float64"),
                                 "upper": main.index.map(upper).astype("float64"),
                                 "threshold": main["threshold"].astype("float64").to_numpy(),
                                 "alert": main["alert"].astype("boolean").to_numpy()}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=columns)
