"""One window's monitoring report: the pure statistics of ``services.stats`` over warehouse aggregates.

`fetch_aggregates` asks the warehouse for a window's aggregates (optionally per day and version,
for backfills); `build_report` composes them with the reference profile into a `WindowReport`
(``services.monitoring.results``) without any I/O; `window_report` does both for one window.

Definitions are those of ``services.stats``: drift with Evidently 0.7's default test per column,
fairness as fairlearn defines it (selection rate over every prediction, TPR/FPR over labelled rows),
latency quantiles as numpy's linear percentiles, performance over the rows whose label has arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, cast

import numpy as np
from sqlalchemy.engine import Engine

from services.mapping import ModelMapping
from services.monitoring import (
    data_quality,  # issue 14: null/unseen/out-of-range shares per feature, hooks marked below
    estimated_performance,  # CBPE (issue 14): its own module, hooks marked below
    multivariate,
)
from services.monitoring.config import PERFORMANCE_METRICS, AlertRules, DriftRule, PerformanceRule
from services.monitoring.reference import NumericReference, ReferenceProfile
from services.monitoring.results import (
    DriftResult,
    FairnessResult,
    GroupResult,
    LatencyResult,
    PerformanceResult,
    WindowReport,
)
from services.monitoring.store import ALL_VERSIONS
from services.stats.cbpe import CalibrationMap, ExpectedCells
from services.stats.drift import (
    LOW_CARDINALITY,
    categorical_drift,
    is_drifted,
    numerical_drift,
)
from services.stats.drift_intervals import (
    EffectInterval,
    categorical_intervals,
    decide,
    deciding_threshold,
    effect_statistic,
    numerical_intervals,
    stable_seed,
    too_small_to_tell,
)
from services.stats.fairness import GroupCounts, fairness_summary
from services.stats.histogram import BinnedSample, bin_value_counts
from services.stats.performance import classification_metrics, regression_metrics, roc_auc
from services.stores.warehouse import (  # via the modules: the benchmark times each call
    calibrated,  # CBPE
    histograms,
    logs,
    outcomes,
)
from services.stores.warehouse.rows import Rows, log_rows
from services.stores.warehouse.sql import WHOLE, GroupKey

NUMERICAL_METHODS = ("wasserstein", "ks", "psi", "jensenshannon")
CATEGORICAL_METHODS = ("jensenshannon", "psi", "chisquare", "z")
DISTANCE_METHODS = ("wasserstein", "jensenshannon", "psi")


# --------------------------------------------------------------------------------------------
# Aggregates of one window
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowAggregates:
    """What the warehouse returns for one window (of one version, or of all).

    ``numerical`` holds fine histograms on the reference edges; ``numerical_values`` value counts of
    the few-valued numerical features; ``latency`` is None for samples without latency (references).
    """

    rows: int
    numerical: dict[str, BinnedSample] = field(default_factory=dict)
    numerical_values: dict[str, dict[float | None, int]] = field(default_factory=dict)
    categorical: dict[str, dict[str | None, int]] = field(default_factory=dict)
    fairness: dict[str, tuple[GroupCounts, ...]] = field(default_factory=dict)
    classification: outcomes.ClassificationCounts | None = None
    regression: outcomes.RegressionSums | None = None
    latency: logs.LatencySummary | None = None
    estimated: ExpectedCells | None = None  # CBPE: expected cells on the calibration map, when one was given


def _add_counts(parts: Iterable[Mapping[Any, int]]) -> dict[Any, int]:
    total: dict[Any, int] = {}
    for part in parts:
        for key, count in part.items():
            total[key] = total.get(key, 0) + count
    return total


def _add_samples(parts: Sequence[BinnedSample]) -> BinnedSample:
    first = parts[0]
    return BinnedSample(edges=first.edges, counts=cast(np.ndarray, sum(p.counts for p in parts)),
                        sums=cast(np.ndarray, sum(p.sums for p in parts)),
                        nulls=sum(p.nulls for p in parts), sum_sq=sum(p.sum_sq for p in parts), shift=first.shift)


def _add_groups(parts: Sequence[tuple[GroupCounts, ...]]) -> tuple[GroupCounts, ...]:
    acc: dict[str, list[int]] = {}
    for part in parts:
        for g in part:
            slot = acc.setdefault(g.group, [0] * 6)
            for i, value in enumerate((g.n, g.predicted_positive, g.tp, g.fp, g.fn, g.tn)):
                slot[i] += value
    return tuple(GroupCounts(name, *values) for name, values in sorted(acc.items()))


def combine(parts: Sequence[WindowAggregates], latency: logs.LatencySummary | None) -> WindowAggregates:
    """All versions of a window from its per-version aggregates (every count and sum adds up).

    Quantiles do not add up, so the window's ``latency`` is given (queried over all versions).
    """
    def merged(name: str, add: Any) -> dict[str, Any]:
        keys = dict.fromkeys(k for p in parts for k in getattr(p, name))
        return {k: add([getattr(p, name)[k] for p in parts if k in getattr(p, name)]) for k in keys}

    classifications = [p.classification for p in parts if p.classification is not None]
    regressions = [p.regression for p in parts if p.regression is not None]
    return WindowAggregates(
        rows=sum(p.rows for p in parts),
        numerical=merged("numerical", _add_samples),
        numerical_values=merged("numerical_values", _add_counts),
        categorical=merged("categorical", _add_counts),
        fairness=merged("fairness", _add_groups),
        classification=_sum(classifications),
        regression=_sum(regressions),
        latency=latency,
        estimated=_sum([p.estimated for p in parts if p.estimated is not None]),  # CBPE
    )


def _sum(parts: Sequence[Any]) -> Any:
    if not parts:
        return None
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def fetch_aggregates(engine: Engine, mapping: ModelMapping, profile: ReferenceProfile, start: datetime,
                     end: datetime, *, by_day: bool = False, by_version: bool = False,
                     calibration: CalibrationMap | None = None) -> dict[GroupKey, WindowAggregates]:
    """Aggregates of the log in ``[start, end)``, per (day, version) group as asked.

    With ``by_version`` the result also holds the all-versions group of each day (version None),
    combined from the versions' aggregates and the all-versions latency. Groups without rows are
    absent, except the whole window when nothing is grouped (an empty window gives ``rows == 0``).
    With a ``calibration`` map (a classifier with a score) the CBPE cells come too (one more statement).
    """
    rows = log_rows(mapping, start, end)
    grouping = {"by_day": by_day, "by_version": by_version}
    histogram_edges = {c: r.edges for c, r in profile.numerical.items() if not r.value_counted}
    shifts = {c: cast(BinnedSample, profile.numerical[c].histogram).shift for c in histogram_edges
              if profile.numerical[c].histogram is not None}
    few = [c for c, r in profile.numerical.items() if r.value_counted]
    numerical = histograms.numeric_histograms(engine, mapping, rows, histogram_edges, shifts=shifts, **grouping)
    values = histograms.value_counts(engine, mapping, rows, few, numeric=True, **grouping)
    categorical = histograms.value_counts(engine, mapping, rows, mapping.categorical, numeric=False, **grouping)
    labelled = _labelled_aggregates(engine, mapping, rows, **grouping)
    latency = logs.latency_summaries(engine, mapping, start, end, **grouping)
    if mapping.task != "binary_classification":  # CBPE: classifiers only
        calibration = None
    cells = calibrated.calibrated_cells(engine, mapping, rows, calibration, **grouping) if calibration else {}

    keys = set(latency) | set(numerical) | set(categorical) | set(values)
    if not by_day and not by_version:
        keys.add(WHOLE)
    result: dict[GroupKey, WindowAggregates] = {}
    for key in keys:
        lat = latency.get(key) or logs.LatencySummary(0, 0, None, None, None)
        result[key] = WindowAggregates(
            rows=lat.requests,
            numerical=numerical.get(key) or _empty_histograms(histogram_edges, shifts),
            numerical_values=values.get(key) or {c: {} for c in few},
            categorical=categorical.get(key) or {c: {} for c in mapping.categorical},
            **labelled.of(key),
            latency=lat,
            estimated=(cells.get(key) or ExpectedCells.empty(calibration.cells)) if calibration else None,
        )
    if by_version:
        days = sorted({day for day, _ in result}, key=lambda d: (d is None, d))
        all_latency = logs.latency_summaries(engine, mapping, start, end, by_day=by_day)
        for day in days:
            parts = [agg for (d, v), agg in result.items() if d == day and v is not None]
            result[(day, None)] = combine(parts, all_latency.get((day, None)))
    return result


class KeptAggregates(Protocol):
    """Where whole windows may be read from kept daily aggregates (``services.monitoring.kept_days.KeptDays``)."""

    def window(self, mapping: ModelMapping, profile: ReferenceProfile, start: datetime,
               end: datetime) -> WindowAggregates | None:
        """The window's aggregates without latency, or None: compute them from the log."""
        ...


@dataclass(frozen=True)
class _Labelled:
    """The aggregates that change as labels arrive (fairness, performance), per group."""

    mapping: ModelMapping
    fairness: dict[GroupKey, dict[str, tuple[GroupCounts, ...]]]
    classification: dict[GroupKey, outcomes.ClassificationCounts]
    regression: dict[GroupKey, outcomes.RegressionSums]

    def of(self, key: GroupKey) -> dict[str, Any]:
        """The ``WindowAggregates`` fields of one group (empty ones for a group without rows)."""
        mapping = self.mapping
        classifier = mapping.task == "binary_classification"  # group fairness of 0/1 decisions only
        return {
            "fairness": self.fairness.get(key) or ({a: () for a in mapping.sensitive} if classifier else {}),
            "classification": (self.classification.get(key)
                               or outcomes.ClassificationCounts.empty("score" in mapping.columns))
            if classifier else None,
            "regression": (self.regression.get(key) or outcomes.RegressionSums(0, 0, 0.0, 0.0))
            if not classifier else None,
        }


def _labelled_aggregates(engine: Engine, mapping: ModelMapping, rows: Rows, *, by_day: bool = False,
                         by_version: bool = False) -> _Labelled:
    grouping = {"by_day": by_day, "by_version": by_version}
    classifier = mapping.task == "binary_classification"
    fairness = outcomes.fairness_counts(engine, mapping, rows, **grouping) if mapping.sensitive and classifier else {}
    if classifier:
        return _Labelled(mapping, fairness, outcomes.classification_counts(engine, mapping, rows, **grouping), {})
    return _Labelled(mapping, fairness, {}, outcomes.regression_sums(engine, mapping, rows, **grouping))


def _empty_histograms(edges: Mapping[str, np.ndarray], shifts: Mapping[str, float]) -> dict[str, BinnedSample]:
    return {c: BinnedSample(edges=e, counts=np.zeros(e.size + 1, dtype=np.int64), sums=np.zeros(e.size + 1),
                            shift=shifts.get(c, 0.0)) for c, e in edges.items()}


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------
# --- drift ------------------------------------------------------------------------------------
def _method(rule: DriftRule, allowed: Sequence[str]) -> str | None:
    return rule.method if rule.method in allowed else None


def _with_threshold(result: Any, rule: DriftRule) -> Any:
    """The verdict against the rule's threshold, which applies to distance methods only (p-values keep 0.05)."""
    if rule.threshold is None or result.method not in DISTANCE_METHODS:
        return result
    return replace(result, threshold=rule.threshold, drifted=is_drifted(result.method, result.score, rule.threshold))


@dataclass(frozen=True)
class DriftSeeds:
    """Seeds of one feature's bootstrap (issue 15): the reference draws depend on the reference and the
    column only (every window of a backfill shares them), the window's on the window too. Derived from
    stable inputs, so the same report gives the same interval in any order of computation."""

    reference: int
    window: int

    @staticmethod
    def of(reference_id: str, column: str, *window: object) -> DriftSeeds:
        return DriftSeeds(stable_seed(reference_id, column), stable_seed(reference_id, column, *window))


def _judged(result: DriftResult, effect: EffectInterval | None, rule: DriftRule) -> DriftResult:
    """The result with its effect interval, and the verdict of the rule's mode (fixed keeps today's)."""
    deciding = deciding_threshold(rule.verdict, result.method, result.threshold, rule.material)
    return replace(
        result, verdict=rule.verdict, drifted=decide(rule.verdict, fixed=result.drifted, effect=effect,
                                                      material=rule.material),
        effect_statistic=None if effect is None else effect.statistic,
        effect=None if effect is None else effect.value, lower=None if effect is None else effect.lower,
        upper=None if effect is None else effect.upper, noise=None if effect is None else effect.noise,
        confidence=rule.confidence, deciding_threshold=deciding, too_small=too_small_to_tell(effect, deciding))


def numerical_column_drift(ref: NumericReference, current: BinnedSample | None,
                           current_values: Mapping[float | None, int] | None, rule: DriftRule,
                           seeds: DriftSeeds | None = None, *, intervals: bool = True) -> DriftResult:
    """Drift of one numerical feature (fine histogram, or value counts for few-valued features), with the
    bootstrap interval and noise level of the distance the verdict modes judge (issue 15; ``intervals``
    False skips them in the fixed mode, whose verdict does not need them)."""
    method = _method(rule, NUMERICAL_METHODS)
    if ref.value_counted:
        ref_values = {k: v for k, v in (ref.values or {}).items() if k is not None}
        cur_values = {k: v for k, v in (current_values or {}).items() if k is not None}
        distinct = np.union1d(np.array(list(ref_values), dtype=float), np.array(list(cur_values), dtype=float))
        edges = np.union1d(ref.edges, distinct)
        reference = bin_value_counts(np.array(list(ref_values), dtype=float),
                                     np.array(list(ref_values.values()), dtype=np.int64), edges,
                                     nulls=(ref.values or {}).get(None, 0))
        current_sample = bin_value_counts(np.array(list(cur_values), dtype=float),
                                          np.array(list(cur_values.values()), dtype=np.int64), edges,
                                          nulls=(current_values or {}).get(None, 0))
        n_distinct = int(distinct.size)
    else:
        reference = cast(BinnedSample, ref.histogram)  # a histogram-binned feature has its fine histogram
        current_sample = current if current is not None else BinnedSample(
            edges=ref.edges, counts=np.zeros(ref.edges.size + 1, dtype=np.int64), sums=np.zeros(ref.edges.size + 1),
            shift=reference.shift)
        n_distinct = max(ref.distinct, LOW_CARDINALITY + 1)  # more than 5: all the method choice needs
    result = _with_threshold(numerical_drift(reference, current_sample, deciles=ref.deciles, method=method,
                                             n_distinct=n_distinct, every_pvalue=False), rule)
    drift = DriftResult(
        column=ref.column, kind="numerical", method=result.method, score=result.score, threshold=result.threshold,
        drifted=result.drifted, psi=result.psi, psi_band=result.psi_band, js_distance=result.js_distance,
        wasserstein_normed=result.wasserstein_normed, ks_statistic=result.ks_statistic, ks_pvalue=result.ks_pvalue,
        chi2_pvalue=None, null_share=result.current_null_share, reference_null_share=result.reference_null_share,
        unseen_categories=(), unseen_share=None, reference_n=result.reference_n, current_n=result.current_n)
    if not intervals and rule.verdict == "fixed":
        return _judged(drift, None, rule)
    seeds = seeds or DriftSeeds.of("", ref.column)
    statistic = effect_statistic(result.method)
    bootstrap = {"reference_seed": seeds.reference, "window_seed": seeds.window, "replicates": rule.replicates,
                 "confidence": rule.confidence, "statistics": (statistic,)}
    if method is None and n_distinct <= LOW_CARDINALITY:
        # Tested on value counts like a categorical column (services.stats.drift): so is its effect.
        effect = categorical_intervals({k: v for k, v in (ref.values or {}).items() if k is not None},
                                       {k: v for k, v in (current_values or {}).items() if k is not None},
                                       **bootstrap)[statistic]  # type: ignore[arg-type]
    else:
        effect = numerical_intervals(reference, current_sample, deciles=ref.deciles,
                                     **bootstrap)[statistic]  # type: ignore[arg-type]
    return _judged(drift, effect, rule)


def categorical_column_drift(column: str, reference: Mapping[str | None, int], current: Mapping[str | None, int],
                             rule: DriftRule, seeds: DriftSeeds | None = None, *, intervals: bool = True
                             ) -> DriftResult:
    method = _method(rule, CATEGORICAL_METHODS)
    result = _with_threshold(categorical_drift(reference, current, method=method), rule)
    drift = DriftResult(
        column=column, kind="categorical", method=result.method, score=result.score, threshold=result.threshold,
        drifted=result.drifted, psi=result.psi, psi_band=result.psi_band, js_distance=result.js_distance,
        wasserstein_normed=None, ks_statistic=None, ks_pvalue=None, chi2_pvalue=result.chi2_pvalue,
        null_share=result.current_null_share, reference_null_share=result.reference_null_share,
        unseen_categories=result.unseen_categories, unseen_share=result.unseen_share,
        reference_n=result.reference_n, current_n=result.current_n)
    if not intervals and rule.verdict == "fixed":
        return _judged(drift, None, rule)
    seeds = seeds or DriftSeeds.of("", column)
    statistic = effect_statistic(result.method)
    effect = categorical_intervals(reference, current, reference_seed=seeds.reference, window_seed=seeds.window,
                                   replicates=rule.replicates, confidence=rule.confidence,
                                   statistics=(statistic,))[statistic]
    return _judged(drift, effect, rule)


# --- performance ------------------------------------------------------------------------------
def _classification_values(counts: outcomes.ClassificationCounts | None) -> dict[str, float | None]:
    if counts is None:
        return {}
    m = classification_metrics(counts.confusion)
    return {"accuracy": m.accuracy, "precision": m.precision, "recall": m.recall, "f1": m.f1,
            "roc_auc": roc_auc(counts.scores) if counts.scores is not None else None}


def _regression_values(sums: outcomes.RegressionSums | None) -> dict[str, float | None]:
    if sums is None:
        return {}
    m = regression_metrics(sums.labeled, sums.sum_abs_error, sums.sum_squared_error)
    return {"mae": m.mae, "rmse": m.rmse}


def _limit(metric: str, reference: float | None, max_drop: float) -> float | None:
    if reference is None:
        return None
    return reference * (1 - max_drop) if PERFORMANCE_METRICS[metric] else reference * (1 + max_drop)


def performance_result(mapping: ModelMapping, profile: ReferenceProfile, aggregates: WindowAggregates,
                       rule: PerformanceRule) -> PerformanceResult:
    if mapping.task == "binary_classification":
        counts = aggregates.classification or outcomes.ClassificationCounts.empty()
        predictions, labeled = counts.predictions, counts.labeled
        metrics, reference = _classification_values(counts), _classification_values(profile.classification)
    else:
        sums = aggregates.regression or outcomes.RegressionSums(0, 0, 0.0, 0.0)
        predictions, labeled = sums.predictions, sums.labeled
        metrics, reference = _regression_values(sums), _regression_values(profile.regression)
    coverage = labeled / predictions if predictions else None
    provisional = coverage is None or coverage < rule.min_label_coverage
    return PerformanceResult(
        task=mapping.task, predictions=predictions, labeled=labeled, label_coverage=coverage, provisional=provisional,
        metrics=metrics, reference=reference,
        limits={m: _limit(m, reference.get(m), rule.max_drop) for m in metrics},
        judged=not provisional and labeled >= rule.min_labels, rule_metric=rule.metric_for(mapping.task))


# --- composition ------------------------------------------------------------------------------
def build_report(mapping: ModelMapping, profile: ReferenceProfile, aggregates: WindowAggregates, *,
                 start: datetime, end: datetime, version: str | None = None,
                 rules: AlertRules | None = None, ranges: data_quality.Ranges | None = None,
                 outside: Mapping[str, int] | None = None, intervals: bool = True) -> WindowReport:
    """Compose a window's report from its aggregates and the reference profile (no I/O); with the
    reference ``ranges`` and the window's counts ``outside`` them, the out-of-range shares too.
    ``intervals`` False leaves out the drift intervals where the verdict does not need them (fixed mode)."""
    rules = rules or AlertRules()
    drift: list[DriftResult] = []
    segment = "" if mapping.segment is None else mapping.segment.name
    window = (segment, version or ALL_VERSIONS, start.isoformat(), end.isoformat())  # issue 15: stable seeds
    for column in mapping.numerical:
        ref = profile.numerical[column]
        drift.append(numerical_column_drift(ref, aggregates.numerical.get(column),
                                            aggregates.numerical_values.get(column), rules.drift,
                                            DriftSeeds.of(profile.reference_id, column, *window), intervals=intervals))
    for column in mapping.categorical:
        drift.append(categorical_column_drift(column, profile.categorical.get(column, {}),
                                              aggregates.categorical.get(column, {}), rules.drift,
                                              DriftSeeds.of(profile.reference_id, column, *window),
                                              intervals=intervals))
    judged = [d.drifted for d in drift if d.drifted is not None]
    fairness = []
    for attribute in mapping.sensitive if mapping.task == "binary_classification" else ():
        summary = fairness_summary(aggregates.fairness.get(attribute, ()))
        fairness.append(FairnessResult(
            sensitive=attribute,
            groups=tuple(GroupResult(g.group, g.count, g.labeled, g.selection_rate, g.tpr, g.fpr)
                         for g in summary.groups),
            demographic_parity_difference=summary.demographic_parity_difference,
            equalized_odds_difference=summary.equalized_odds_difference,
            disparate_impact_ratio=summary.disparate_impact_ratio, passes_four_fifths=summary.passes_four_fifths,
            dpd_limit=rules.fairness.demographic_parity_difference, eod_limit=rules.fairness.equalized_odds_difference,
        ))
    lat = aggregates.latency
    latency = None if lat is None else LatencyResult(
        count=lat.requests, errors=lat.errors, error_rate=lat.error_rate, p50_ms=lat.p50_ms, p95_ms=lat.p95_ms,
        p99_ms=lat.p99_ms, slo_p95_ms=mapping.slo.latency_p95_ms, slo_error_rate=mapping.slo.error_rate)
    return WindowReport(
        model=mapping.name, version=version or ALL_VERSIONS, start=start, end=end, reference_id=profile.reference_id,
        reference_description=profile.description, rows_reference=profile.rows, rows_current=aggregates.rows,
        drift=tuple(drift), drift_share=(sum(judged) / len(judged)) if judged else None, fairness=tuple(fairness),
        latency=latency, performance=performance_result(mapping, profile, aggregates, rules.performance),
        estimated=estimated_performance.estimated_result(mapping, profile, aggregates.estimated,  # CBPE
                                                         rules.estimated_performance_drop),
        data_quality=data_quality.column_results(drift, aggregates.rows, rules.data_quality, outside, ranges),
    )


def window_report(engine: Engine, mapping: ModelMapping, profile: ReferenceProfile, start: datetime,
                  end: datetime, *, rules: AlertRules | None = None,
                  pca: multivariate.ReconstructionModel | None = None,
                  calibration: CalibrationMap | None = None,
                  ranges: data_quality.Ranges | None = None, kept: KeptAggregates | None = None) -> WindowReport:
    """The report of ``[start, end)``, all versions together (at most six warehouse statements; one more
    for the multivariate drift when the reference's ``pca`` is given, one more with a CBPE ``calibration``,
    one more for the out-of-range shares with the reference's value ``ranges``).

    With ``kept`` daily aggregates (issue 16) and no ``calibration`` (CBPE cells are not kept), a window of
    whole days that are all kept is their sum plus one latency statement; otherwise the six statements."""
    rows = log_rows(mapping, start, end)
    assert rows.start is not None and rows.end is not None  # log_rows always bounds the window
    aggregates = None
    if kept is not None and calibration is None:
        aggregates = _from_kept(engine, mapping, profile, kept, rows.start, rows.end)
    if aggregates is None:
        aggregates = fetch_aggregates(engine, mapping, profile, rows.start, rows.end, calibration=calibration)[WHOLE]
    outside = None if ranges is None else \
        data_quality.window_outside(engine, mapping, ranges, rows.start, rows.end)[WHOLE]  # data quality
    report = build_report(mapping, profile, aggregates, start=rows.start, end=rows.end, rules=rules,
                          ranges=ranges, outside=outside)
    if pca is not None:  # multivariate drift (services/monitoring/multivariate.py)
        report = replace(report, multivariate=multivariate.window_result(engine, mapping, pca, rows.start, rows.end))
    return report


def _from_kept(engine: Engine, mapping: ModelMapping, profile: ReferenceProfile, kept: KeptAggregates,
               start: datetime, end: datetime) -> WindowAggregates | None:
    """The window's distributions from its kept days; its latency, fairness and performance queried (three
    statements instead of six, without the fine histograms: the dear one). None (compute from SQL) when a
    day is not kept, or when the log now holds another number of rows in the window than the kept days
    counted (rows logged after the job kept their day).

    Fairness and performance are read again rather than summed because labels keep arriving after a day is
    over (a provisional day); the distributions of a day's rows do not change once the day is over."""
    summed = kept.window(mapping, profile, start, end)
    if summed is None:
        return None
    latency = logs.latency_summaries(engine, mapping, start, end).get(WHOLE) or logs.LatencySummary(0, 0, None, None,
                                                                                                    None)
    if latency.requests != summed.rows:
        return None
    labelled = _labelled_aggregates(engine, mapping, log_rows(mapping, start, end))
    return replace(summed, latency=latency, **labelled.of(WHOLE))
