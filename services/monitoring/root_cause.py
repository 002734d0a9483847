"""Root cause of a performance drop or a drift alert: the "Why" panel's two rankings.

**Segments.** The change of a rate metric between a baseline (the model's configured reference, or
the days just before the window) and the alert window, split into one bar per segment so that the
bars add up to the change exactly (``services.stats.decomposition``). Declared segments may overlap
and need not cover every row, so the partition is built from ONE column at a time
(``services.stores.warehouse.partitions``): every value of each categorical feature and sensitive
attribute, and for a numerical column the model declares range segments on, those ranges (first
match wins) plus the rest. Only metrics that are means over rows decompose exactly: accuracy, error
rate, precision, recall, selection rate, MAE and MSE; ROC AUC, F1 and RMSE do not, and a drift score
or distance is no mean of per-segment values either, so the waterfall always shows one of the
former (a drift alert's panel shows the accuracy or MAE change beside the features ranked by drift).
A window without labels is split on CBPE's expected counts (each row's label counted as its
calibrated probability) for a classifier that logs a score, and says so; otherwise it needs labels.

**Features.** Each feature's stored daily drift in the window (``tower_reads.drift_heatmap``, for the
whole population and each declared segment), as the mean of score ÷ threshold over the days
(``stats.drift.drift_ratio``: above 1 drifts), weighted by the feature importances logged on the
run of the version that served most of the window, as ``feature_importance.<feature>`` run metrics
(absolute values, normalised to sum to 1). Without them the ranking is by drift alone, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from services.errors import ConfigError
from services.mapping import ModelMapping
from services.monitoring.estimated_performance import calibration_for
from services.monitoring.reference import load_or_compute
from services.monitoring.tower_reads import drift_heatmap
from services.segments import OVERALL, Segment
from services.stats.cbpe import CalibrationMap, ExpectedCells
from services.stats.decomposition import Decomposition, largest_rate_part, lump
from services.stats.fairness import GroupCounts
from services.stores.warehouse.outcomes import RegressionSums
from services.stores.warehouse.partitions import (
    Partition,
    classification_by_partition,
    expected_by_partition,
    regression_by_partition,
)
from services.stores.warehouse.rows import Rows

IMPORTANCE_PREFIX = "feature_importance."
MAX_BARS = 10  # bars per waterfall; the smaller segments are merged into "other (n)"
# The metrics that are means over rows, with what they are a mean of (numerator / denominator).
CLASSIFICATION_METRICS = {
    "accuracy": "correct predictions / labelled predictions",
    "error_rate": "wrong predictions / labelled predictions",
    "precision": "true positives / labelled positive predictions",
    "recall": "true positives / labelled positives",
    "selection_rate": "positive predictions / predictions",
}
REGRESSION_METRICS = {"mae": "absolute errors / labelled predictions",
                      "mse": "squared errors / labelled predictions"}
NOT_DECOMPOSABLE = {"roc_auc": "ROC AUC", "f1": "F1", "rmse": "RMSE"}
WHY_RULES = ("drift", "multivariate_drift", "performance", "estimated_performance_drop")


def metrics_for(task: str) -> dict[str, str]:
    """The metrics whose change splits exactly into segment bars, for a model's task."""
    return dict(CLASSIFICATION_METRICS) if task == "binary_classification" else dict(REGRESSION_METRICS)


def default_metric(task: str, requested: str | None) -> tuple[str, str | None]:
    """The metric to decompose, and a note when the one asked for cannot be (ROC AUC -> accuracy)."""
    allowed = metrics_for(task)
    wanted = (requested or "").removeprefix("estimated_")
    if wanted in allowed:
        return wanted, None
    fallback = "accuracy" if task == "binary_classification" else "mae"
    if wanted in NOT_DECOMPOSABLE:
        return fallback, (f"{NOT_DECOMPOSABLE[wanted]} is not a mean over rows, so its change has no exact "
                          f"split by segment; the bars split the {fallback.replace('_', ' ')} change instead.")
    return fallback, None


# --------------------------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------------------------
def partitions_of(mapping: ModelMapping) -> tuple[Partition, ...]:
    """Categorical features and sensitive attributes by value; numerical columns by their declared ranges."""
    ranged: dict[str, list[Segment]] = {}
    for segment in mapping.segments:
        if segment.is_range:
            ranged.setdefault(segment.column, []).append(segment)
    by_value = [Partition(c) for c in dict.fromkeys(mapping.categorical + mapping.sensitive)]
    return tuple(by_value + [Partition(c, tuple(s)) for c, s in ranged.items() if c not in mapping.categorical])


def segment_of_group(mapping: ModelMapping, column: str, group: str) -> str | None:
    """The declared segment a group of a partition is exactly (its link filters the drift page on it)."""
    for s in mapping.segments:
        if s.column != column:
            continue
        if s.is_range and s.name == group:
            return s.name
        if s.values is not None and len(s.values) == 1 and str(s.values[0]) == group:
            return s.name
    return None


def ratio_parts(metric: str, counts: GroupCounts | RegressionSums) -> tuple[float, float]:
    """(numerator, denominator) of a metric over one group's counts."""
    if isinstance(counts, RegressionSums):
        return {"mae": (counts.sum_abs_error, counts.labeled),
                "mse": (counts.sum_squared_error, counts.labeled)}[metric]
    c = counts
    return {"accuracy": (c.tp + c.tn, c.labeled), "error_rate": (c.fp + c.fn, c.labeled),
            "precision": (c.tp, c.tp + c.fp), "recall": (c.tp, c.tp + c.fn),
            "selection_rate": (c.predicted_positive, c.n)}[metric]


@dataclass(frozen=True)
class SegmentBars:
    """One partition's waterfall: the decomposition (None with ``reason``) and each group's declared segment."""

    column: str
    ranged: bool
    decomposition: Decomposition | None
    segments: Mapping[str, str | None]
    reason: str | None = None


@dataclass(frozen=True)
class SegmentExplanation:
    """Every partition's bars for ``metric``, the one with the largest rate part first (the split that best
    isolates a segment whose own metric moved); ``reason`` when none can be drawn."""

    metric: str
    partitions: tuple[SegmentBars, ...]
    rows_before: int
    rows_after: int
    reason: str | None = None
    estimated: tuple[bool, bool] = (False, False)  # (baseline, window) from CBPE's expected counts, not labels


def _per_group(metric: str, found: tuple[GroupCounts, ...] | dict[str, RegressionSums]
               ) -> dict[str, tuple[float, float]]:
    if isinstance(found, dict):
        return {name: ratio_parts(metric, sums) for name, sums in found.items()}
    return {g.group: ratio_parts(metric, g) for g in found}


def decompose_partition(metric: str, before: Mapping[str, tuple[float, float]],
                        after: Mapping[str, tuple[float, float]], keep: int = MAX_BARS) -> Decomposition:
    """The bars of one partition from each group's (numerator, denominator) in both windows."""
    names = sorted(set(before) | set(after))
    arrays = [np.array([side.get(n, (0.0, 0.0))[i] for n in names], dtype=float)
              for side in (before, after) for i in (0, 1)]
    return lump(names, arrays[0], arrays[1], arrays[2], arrays[3], keep)


def expected_parts(metric: str, cells: ExpectedCells) -> tuple[float, float]:
    """(numerator, denominator) of a classifier metric from CBPE's expected cells: what the labels would
    give, each row's label counted as its calibrated probability (``services.stats.cbpe``)."""
    n0, n1 = float(cells.n[0].sum()), float(cells.n[1].sum())
    tp, fn = float(cells.sum_p[1].sum()), float(cells.sum_p[0].sum())
    tn, fp = n0 - fn, n1 - tp
    return {"accuracy": (tp + tn, n0 + n1), "error_rate": (fp + fn, n0 + n1), "precision": (tp, n1),
            "recall": (tp, tp + fn), "selection_rate": (n1, n0 + n1)}[metric]


def calibration_of(tower: Engine, engine: Engine, mapping: ModelMapping) -> CalibrationMap | None:
    """The model's kept CBPE calibration on its configured reference (None: it gets no estimate)."""
    return calibration_for(tower, engine, mapping, load_or_compute(tower, engine, mapping))


def explain_segments(engine: Engine, mapping: ModelMapping, metric: str, baseline: Rows, window: Rows,
                     keep: int = MAX_BARS, calibration: CalibrationMap | None = None) -> SegmentExplanation:
    """Each partition's segment bars of ``metric`` from ``baseline`` to ``window``: one statement per side.

    A side with no labelled prediction is split on its CBPE expected counts when the model has a
    ``calibration`` (performance before labels); without one it needs labels."""
    if metric not in metrics_for(mapping.task):
        raise ConfigError(f"{metric!r} cannot be split by segment for a {mapping.task.replace('_', ' ')} model.",
                          "Pick one of: " + ", ".join(metrics_for(mapping.task)) + ".")
    partitions = partitions_of(mapping)
    if not partitions:
        return SegmentExplanation(metric, (), 0, 0, f"models.{mapping.name} maps no categorical feature, sensitive "
                                  "attribute or ranged segment to split its rows by.")
    if "label" not in mapping.columns:
        return SegmentExplanation(metric, (), 0, 0, f"needs labels: models.{mapping.name} maps no label column.")
    fetch = classification_by_partition if mapping.task == "binary_classification" else regression_by_partition
    sides: list[Mapping[str, Any]] = [fetch(engine, mapping, rows, partitions) for rows in (baseline, window)]
    parts = [{p.column: _per_group(metric, side.get(p.column, {})) for p in partitions} for side in sides]
    # Every partition covers every row, so the first one's denominators add up to the window's.
    totals = [int(sum(n for _, n in side[partitions[0].column].values())) for side in parts]
    estimated = [False, False]
    if calibration is not None and mapping.task == "binary_classification":
        for i, rows in enumerate((baseline, window)):
            if totals[i] == 0:
                cells = expected_by_partition(engine, mapping, rows, partitions, calibration)
                parts[i] = {p.column: {g: expected_parts(metric, c) for g, c in cells.get(p.column, {}).items()}
                            for p in partitions}
                totals[i] = int(round(sum(n for _, n in parts[i][partitions[0].column].values())))
                estimated[i] = True
    if totals[1] == 0 or totals[0] == 0:
        which = "the alert window" if totals[1] == 0 else "the baseline"
        return SegmentExplanation(metric, (), totals[0], totals[1],
                                  f"needs labels: {which} holds no labelled prediction for "
                                  f"{metric.replace('_', ' ')} yet, so its change cannot be split by segment "
                                  "(the estimate before labels is on the Performance page).")
    bars = []
    for p in partitions:
        decomposition = decompose_partition(metric, parts[0][p.column], parts[1][p.column], keep)
        bars.append(SegmentBars(p.column, bool(p.ranges), decomposition,
                                {g: segment_of_group(mapping, p.column, g) for g in decomposition.groups}))
    bars.sort(key=lambda b: (-largest_rate_part(b.decomposition) if b.decomposition else 0.0, b.column))
    return SegmentExplanation(metric, tuple(bars), totals[0], totals[1], estimated=(estimated[0], estimated[1]))


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------
def feature_importances(metrics: Mapping[str, float], features: Sequence[str]) -> dict[str, float] | None:
    """The model's features' ``feature_importance.<feature>`` run metrics, absolute, normalised to sum
    to 1; None when the run logged none for any of them (or only zeros, NaN or infinities)."""
    raw = {f: abs(float(metrics[IMPORTANCE_PREFIX + f])) for f in features if IMPORTANCE_PREFIX + f in metrics}
    raw = {f: v for f, v in raw.items() if math.isfinite(v)}
    total = sum(raw.values())
    if not raw or total <= 0:
        return None
    return {f: raw.get(f, 0.0) / total for f in features}


@dataclass(frozen=True)
class FeatureDrift:
    """A feature's drift in one population over the window; ``weighted`` = ratio × importance (or the ratio)."""

    feature: str
    segment: str  # '' for the whole population
    ratio: float | None  # mean over the days of score ÷ threshold
    days: int
    drifted_days: int
    importance: float | None
    weighted: float | None


def rank_features(heatmaps: Mapping[str, pd.DataFrame], importances: Mapping[str, float] | None
                  ) -> tuple[FeatureDrift, ...]:
    """Every (feature, population) of the stored heat maps, by ``weighted`` descending (missing last)."""
    out = []
    for segment, frame in heatmaps.items():
        if frame.empty:
            continue
        for feature, rows in frame.groupby("column", sort=True):
            ratios = rows["ratio"].astype("float64")
            finite = ratios[np.isfinite(ratios)]
            ratio = float(finite.mean()) if len(finite) else None
            importance = None if importances is None else float(importances.get(str(feature), 0.0))
            weighted = None if ratio is None else ratio * (1.0 if importance is None else importance)
            out.append(FeatureDrift(str(feature), segment, ratio, int(rows["day"].nunique()),
                                    int(rows["drifted"].fillna(False).astype(bool).sum()), importance, weighted))
    out.sort(key=lambda f: (f.weighted is None, -(f.weighted or 0.0), f.segment, f.feature))
    return tuple(out)


def feature_heatmaps(tower: Engine, mapping: ModelMapping, start: datetime, end: datetime) -> dict[str, pd.DataFrame]:
    """The stored daily drift of the window, for the whole population and each declared segment."""
    return {name: drift_heatmap(tower, mapping.name, start, end, segment=name)
            for name in (OVERALL, *(s.name for s in mapping.segments))}


def serving_version(by_version: pd.DataFrame) -> str | None:
    """The version that served most requests (``logs.latency_by_version``'s frame), None for none."""
    if by_version.empty or "requests" not in by_version:
        return None
    frame = by_version[by_version["requests"].fillna(0) > 0]
    if frame.empty:
        return None
    top = frame.sort_values(["requests", "version"], ascending=[False, True], kind="stable").iloc[0]
    return str(top["version"])


# --------------------------------------------------------------------------------------------
# Links
# --------------------------------------------------------------------------------------------
def why_params(model: str, rule: str, opened: Any, last: Any, metric: str | None = None) -> dict[str, str] | None:
    """The Why page's query of an alert episode (None for a rule it does not explain): the episode's
    days, first to last (both included), and its metric when it is a performance rule's."""
    if rule not in WHY_RULES:
        return None
    first, final = _day(opened), _day(last) or _day(opened)
    if first is None or final is None:
        return None
    params = {"model": model, "start": first.isoformat(), "end": max(first, final).isoformat()}
    if rule in ("performance", "estimated_performance_drop") and metric:
        params["metric"] = metric.removeprefix("estimated_")
    return params


def drift_params(model: str, feature: str, segment: str | None, start: date) -> dict[str, str]:
    """The drift explorer's query of one ranked row: the model, the feature, its segment and the window's start."""
    params = {"model": model, "feature": feature}
    if segment:
        params["segment"] = segment
    params["start"] = start.isoformat()
    return params


def _day(value: Any) -> date | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if pd.isna(stamp):
        return None
    day: date = stamp.date()
    return day


def days_window(start: date, last: date) -> tuple[datetime, datetime]:
    """``[start, last + 1 day)`` in naive UTC; ConfigError when the last day is before the first."""
    if last < start:
        raise ConfigError(f"The window's last day {last:%Y-%m-%d} is before its first day {start:%Y-%m-%d}.")
    return datetime.combine(start, datetime.min.time()), datetime.combine(last + timedelta(days=1),
                                                                          datetime.min.time())

