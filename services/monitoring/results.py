"""What one window's monitoring report holds, and the two forms it leaves in.

`WindowReport` gathers the per-feature drift, per-attribute fairness, latency and performance results
of a window; `WindowReport.to_json` is the object the ``report`` command prints (a stable JSON
contract) and `WindowReport.result_rows` the long-format rows the job stores (docs/ARCHITECTURE.md,
contracts). ``services.monitoring.report`` builds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from services.monitoring import data_quality as dq  # issue 14: data quality per feature (its rows and JSON)
from services.monitoring.config import PERFORMANCE_METRICS
from services.monitoring.estimated_performance import EstimatedPerformance, estimated_json, estimated_result_rows
from services.monitoring.multivariate import METRIC as RECONSTRUCTION_METRIC
from services.monitoring.multivariate import MultivariateResult, unavailable
from services.monitoring.store import MODEL_LEVEL, NO_SLICE
from services.stats.fairness import FOUR_FIFTHS

DRIFT_SHARE_THRESHOLD = 0.5  # Evidently's dataset drift: at least half of the columns drifted
# The per-window metrics alert rules look at (the `alert` column of other rows is informational).
RULE_METRICS = {"drift_score": "drift", "p95_ms": "latency_p95", "error_rate": "error_rate",
                "demographic_parity_difference": "fairness", "equalized_odds_difference": "fairness",
                RECONSTRUCTION_METRIC: "multivariate_drift",
                **dict.fromkeys(dq.RULES, "data_quality")}


@dataclass(frozen=True)
class DriftResult:
    column: str
    kind: str  # "numerical" or "categorical"
    method: str
    score: float | None
    threshold: float
    drifted: bool | None
    psi: float | None
    psi_band: str | None
    js_distance: float | None
    wasserstein_normed: float | None  # numerical only
    ks_statistic: float | None  # numerical only
    ks_pvalue: float | None  # numerical only
    chi2_pvalue: float | None  # categorical only
    null_share: float | None  # current window
    reference_null_share: float | None
    unseen_categories: tuple[str, ...]  # categorical only: in the window, not in the reference
    unseen_share: float | None
    reference_n: int
    current_n: int
    # Issue 15 (services.stats.drift_intervals): the verdict mode, the distance it judges (the verdict
    # statistic, or the KS statistic / JS distance for a p-value method), its bootstrap interval, its
    # noise level at this window's size, the distance the window must resolve (the material threshold,
    # or the threshold of a distance method; None for a p-value test outside material mode) and whether
    # the noise level is at or above it (too small to tell). None where a side has no rows.
    verdict: str = "fixed"
    effect_statistic: str | None = None
    effect: float | None = None
    lower: float | None = None
    upper: float | None = None
    noise: float | None = None
    confidence: float | None = None
    deciding_threshold: float | None = None
    too_small: bool | None = None


EFFECT_METRIC = "drift_effect"
"""Per feature and window: value = the distance the verdict modes judge (method = which), lower/upper =
its bootstrap interval, noise = its noise level, threshold = the distance the window must resolve."""


@dataclass(frozen=True)
class GroupResult:
    group: str
    count: int
    labeled: int
    selection_rate: float | None
    tpr: float | None
    fpr: float | None


@dataclass(frozen=True)
class FairnessResult:
    sensitive: str
    groups: tuple[GroupResult, ...]
    demographic_parity_difference: float | None
    equalized_odds_difference: float | None
    disparate_impact_ratio: float | None
    passes_four_fifths: bool | None
    dpd_limit: float | None
    eod_limit: float | None


@dataclass(frozen=True)
class LatencyResult:
    count: int
    errors: int
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    slo_p95_ms: float | None
    slo_error_rate: float | None


@dataclass(frozen=True)
class PerformanceResult:
    """Live performance over the labelled rows; ``reference`` holds the same metrics on the reference.

    ``limits`` per metric: the value beyond which it counts as a drop (``max_drop`` relative to the
    reference); ``judged`` is False when the window is provisional or has too few labels.
    """

    task: str
    predictions: int
    labeled: int
    label_coverage: float | None
    provisional: bool
    metrics: dict[str, float | None]
    reference: dict[str, float | None]
    limits: dict[str, float | None]
    judged: bool
    rule_metric: str


@dataclass(frozen=True)
class WindowReport:
    model: str
    version: str  # "*" = all versions
    start: datetime
    end: datetime
    reference_id: str
    reference_description: str
    rows_reference: int
    rows_current: int
    drift: tuple[DriftResult, ...]
    drift_share: float | None
    fairness: tuple[FairnessResult, ...]
    latency: LatencyResult | None
    performance: PerformanceResult | None
    multivariate: MultivariateResult | None = None  # multivariate drift (services.monitoring.multivariate)
    estimated: EstimatedPerformance | None = None  # CBPE (services.monitoring.estimated_performance)
    data_quality: tuple[dq.QualityResult, ...] = ()  # per feature (services.monitoring.data_quality)

    def to_json(self) -> dict[str, Any]:
        """The report command's object (a stable JSON contract): only those keys, None as null."""
        perf = self.performance
        if perf is None:
            performance: dict[str, Any] | None = None
        else:
            names = ("accuracy", "precision", "recall", "f1", "roc_auc") if perf.task == "binary_classification" \
                else ("mae", "rmse")
            performance = {**{n: _num(perf.metrics.get(n)) for n in names}, "label_coverage": _num(perf.label_coverage)}
        lat = self.latency
        estimated, estimation = estimated_json(self.estimated, _num)  # CBPE
        return {
            "model": self.model,
            "rows": {"reference": self.rows_reference, "current": self.rows_current},
            "drift": [{
                "column": d.column, "kind": d.kind, "psi": _num(d.psi), "js_distance": _num(d.js_distance),
                "wasserstein_normed": _num(d.wasserstein_normed), "ks_statistic": _num(d.ks_statistic),
                "chi2_pvalue": _num(d.chi2_pvalue), "method": d.method, "score": _num(d.score),
                "threshold": _num(d.threshold), "drifted": d.drifted,
                "verdict": d.verdict,  # issue 15: the effect the verdict modes judge, with its interval
                "effect": {"statistic": d.effect_statistic, "value": _num(d.effect), "lower": _num(d.lower),
                           "upper": _num(d.upper), "noise": _num(d.noise), "confidence": _num(d.confidence)},
                "deciding_threshold": _num(d.deciding_threshold), "too_small": d.too_small,
            } for d in self.drift],
            "fairness": [{
                "sensitive": f.sensitive,
                "groups": [{"group": g.group, "count": g.count, "selection_rate": _num(g.selection_rate),
                            "tpr": _num(g.tpr), "fpr": _num(g.fpr)} for g in f.groups],
                "demographic_parity_difference": _num(f.demographic_parity_difference),
                "equalized_odds_difference": _num(f.equalized_odds_difference),
                "disparate_impact_ratio": _num(f.disparate_impact_ratio),
            } for f in self.fairness],
            "latency": None if lat is None else {"count": lat.count, "p50_ms": _num(lat.p50_ms),
                                                 "p95_ms": _num(lat.p95_ms), "p99_ms": _num(lat.p99_ms),
                                                 "error_rate": _num(lat.error_rate)},
            "performance": performance,
            "multivariate_drift": (self.multivariate or unavailable()).to_json(),
            "estimated_performance": estimated,
            "estimation": estimation,
            "data_quality": [q.to_json(_num) for q in self.data_quality],
        }

    def result_rows(self) -> list[dict[str, Any]]:
        """Long-format rows (without model, window and computed_at) for ``monitoring_results``."""
        out: list[dict[str, Any]] = []

        def add(metric: str, value: Any, *, column: str = MODEL_LEVEL, slice_key: str = NO_SLICE,
                slice_value: str = NO_SLICE, method: str = "", threshold: float | None = None,
                alert: bool | None = None, reference: bool = True, lower: float | None = None,
                upper: float | None = None, noise: float | None = None) -> None:
            out.append({"version": self.version, "slice_key": slice_key, "slice_value": slice_value,
                        "column_name": column, "metric": metric, "method": method, "value": _num(value),
                        "threshold": _num(threshold), "alert": alert,
                        "reference_id": self.reference_id if reference else None,
                        "lower": _num(lower), "upper": _num(upper), "noise": _num(noise)})

        add("rows", self.rows_current, reference=False)
        add("drift_share", self.drift_share, threshold=DRIFT_SHARE_THRESHOLD,
            alert=None if self.drift_share is None else self.drift_share >= DRIFT_SHARE_THRESHOLD)
        for d in self.drift:
            add("drift_score", d.score, column=d.column, method=d.method, threshold=d.threshold, alert=d.drifted)
            add("psi", d.psi, column=d.column, method="psi")
            add("js_distance", d.js_distance, column=d.column, method="jensenshannon")
            if d.kind == "numerical":
                add("wasserstein_normed", d.wasserstein_normed, column=d.column, method="wasserstein")
                add("ks_statistic", d.ks_statistic, column=d.column, method="ks")
                add("ks_pvalue", d.ks_pvalue, column=d.column, method="ks")
            else:
                add("chi2_pvalue", d.chi2_pvalue, column=d.column, method="chisquare")
            add("count", d.current_n, column=d.column)
            if d.effect_statistic is not None:  # issue 15: the distance the verdict modes judge, bounded
                add(EFFECT_METRIC, d.effect, column=d.column, method=d.effect_statistic,
                    threshold=d.deciding_threshold, lower=d.lower, upper=d.upper, noise=d.noise)
        dq.result_rows(self.drift, self.data_quality, add)  # null/unseen/out-of-range shares, verdicts
        for f in self.fairness:
            for g in f.groups:
                for metric in ("count", "labeled", "selection_rate", "tpr", "fpr"):
                    add(metric, getattr(g, metric), slice_key=f.sensitive, slice_value=g.group)
            dpd, eod = f.demographic_parity_difference, f.equalized_odds_difference
            add("demographic_parity_difference", dpd, slice_key=f.sensitive, threshold=f.dpd_limit,
                alert=_over(dpd, f.dpd_limit))
            add("equalized_odds_difference", eod, slice_key=f.sensitive, threshold=f.eod_limit,
                alert=_over(eod, f.eod_limit))
            ratio = f.disparate_impact_ratio
            add("disparate_impact_ratio", ratio, slice_key=f.sensitive, threshold=FOUR_FIFTHS,
                alert=None if ratio is None else ratio < FOUR_FIFTHS)
        lat = self.latency
        if lat is not None:
            add("requests", lat.count, reference=False)
            add("errors", lat.errors, reference=False)
            add("error_rate", lat.error_rate, threshold=lat.slo_error_rate,
                alert=_over(lat.error_rate, lat.slo_error_rate), reference=False)
            add("p50_ms", lat.p50_ms, reference=False)
            add("p95_ms", lat.p95_ms, threshold=lat.slo_p95_ms, alert=_over(lat.p95_ms, lat.slo_p95_ms),
                reference=False)
            add("p99_ms", lat.p99_ms, reference=False)
        perf = self.performance
        if perf is not None:
            add("predictions", perf.predictions)
            add("labeled", perf.labeled)
            add("label_coverage", perf.label_coverage)
            add("provisional", 1.0 if perf.provisional else 0.0)
            for metric, value in perf.metrics.items():
                limit = perf.limits.get(metric)
                alert = _worse(metric, value, limit) if perf.judged else None
                add(metric, value, threshold=limit, alert=alert,
                    method="rule" if metric == perf.rule_metric else "")
        if self.multivariate is not None:
            self.multivariate.result_rows(add)
        for row in estimated_result_rows(self.estimated):  # CBPE: estimated_<metric>, its band, rows
            add(**row)
        return out


def _num(value: Any) -> float | int | None:
    """A JSON-safe number: None for None, NaN and inf."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def _over(value: float | None, limit: float | None) -> bool | None:
    if value is None or limit is None:
        return None
    return bool(value > limit)


def _worse(metric: str, value: float | None, limit: float | None) -> bool | None:
    if value is None or limit is None:
        return None
    return bool(value < limit) if PERFORMANCE_METRICS[metric] else bool(value > limit)
