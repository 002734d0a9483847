"""Live performance and latency quantiles from counts, checked against scikit-learn and numpy.

Confusion metrics use the same divisions as scikit-learn, so they are compared for equality. ROC AUC
from per-level counts is exact for the rounded scores (1e-9); against the raw scores it can differ
only through pairs that share a rounded level, bounded by ``roc_auc_tie_bound`` (~1e-4 here) and
asserted below 1e-3. Histogram quantiles are within one bin of numpy's exact quantile.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from services.stats.histogram import bin_sample
from services.stats.performance import (
    ClassificationMetrics,
    ConfusionCounts,
    RegressionMetrics,
    ScoreCounts,
    classification_metrics,
    confusion_counts,
    label_coverage,
    regression_aggregates,
    regression_metrics,
    roc_auc,
    roc_auc_tie_bound,
    score_counts,
)
from services.stats.quantiles import (
    exact_quantiles,
    histogram_quantiles,
    latency_percentiles,
    log_edges,
    quantile_positions,
)


def _scored(seed: int, n: int = 20_000):
    rng = np.random.default_rng(seed)
    y_true = (rng.random(n) < 0.3).astype(int)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y_true)))
    return y_true, scores


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_confusion_metrics_equal_scikit_learn(seed):
    y_true, scores = _scored(seed)
    y_pred = (scores >= 0.5 + 0.1 * (seed - 2)).astype(int)
    result = classification_metrics(confusion_counts(y_true, y_pred))
    assert result.n == y_true.size
    assert result.accuracy == skm.accuracy_score(y_true, y_pred)
    assert result.precision == skm.precision_score(y_true, y_pred)
    assert result.recall == skm.recall_score(y_true, y_pred)
    assert result.f1 == skm.f1_score(y_true, y_pred)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_roc_auc_from_level_counts_is_exact_for_rounded_scores_and_close_for_raw_ones(seed):
    y_true, scores = _scored(seed)
    counts = score_counts(scores, y_true)
    assert roc_auc(counts) == pytest.approx(skm.roc_auc_score(y_true, np.round(scores, 4)), abs=1e-9)
    raw = skm.roc_auc_score(y_true, scores)
    assert abs(roc_auc(counts) - raw) <= roc_auc_tie_bound(counts) + 1e-12
    assert abs(roc_auc(counts) - raw) < 1e-3


def test_roc_auc_counts_ties_as_half_on_heavily_tied_scores():
    rng = np.random.default_rng(4)
    y_true = (rng.random(5_000) < 0.4).astype(int)
    scores = rng.integers(0, 5, 5_000) / 4 + 0.2 * y_true  # few distinct levels, many ties
    counts = score_counts(scores, y_true, decimals=2)
    assert counts.levels.size <= 10
    assert roc_auc(counts) == pytest.approx(skm.roc_auc_score(y_true, scores), abs=1e-12)


def test_score_counts_rows_can_arrive_in_any_order():
    shuffled = ScoreCounts(levels=np.array([0.9, 0.1, 0.5]), positives=np.array([5, 1, 2]),
                           negatives=np.array([1, 6, 2]))
    ordered = ScoreCounts(levels=np.array([0.1, 0.5, 0.9]), positives=np.array([1, 2, 5]),
                          negatives=np.array([6, 2, 1]))
    assert roc_auc(shuffled) == roc_auc(ordered)
    with pytest.raises(ValueError, match="distinct"):
        ScoreCounts(levels=np.array([0.1, 0.1]), positives=np.array([1, 1]), negatives=np.array([1, 1]))


def test_regression_errors_match_scikit_learn():
    rng = np.random.default_rng(5)
    y_true = rng.lognormal(3, 1, 10_000)
    y_pred = y_true * rng.normal(1, 0.1, 10_000) + rng.normal(0, 2, 10_000)
    result = regression_metrics(*regression_aggregates(y_true, y_pred))
    assert result.n == 10_000
    assert result.mae == pytest.approx(skm.mean_absolute_error(y_true, y_pred), rel=1e-9)
    assert result.rmse == pytest.approx(skm.root_mean_squared_error(y_true, y_pred), rel=1e-9)


def test_regression_aggregates_skip_rows_without_a_label():
    n, sum_abs, sum_sq = regression_aggregates(np.array([1.0, np.nan, 3.0]), np.array([2.0, 5.0, 1.0]))
    assert (n, sum_abs, sum_sq) == (2, 3.0, 5.0)


def test_zero_denominators_give_none_never_nan():
    assert classification_metrics(ConfusionCounts(0, 0, 0, 0)) == ClassificationMetrics(0, None, None, None, None)
    only_negatives = classification_metrics(ConfusionCounts(tp=0, fp=0, fn=0, tn=10))
    assert (only_negatives.accuracy, only_negatives.precision, only_negatives.recall, only_negatives.f1) == (
        1.0, None, None, None)
    no_predicted_positive = classification_metrics(ConfusionCounts(tp=0, fp=0, fn=4, tn=6))
    assert no_predicted_positive.precision is None and no_predicted_positive.f1 == 0.0
    assert roc_auc(score_counts(np.array([0.2, 0.7]), np.array([1, 1]))) is None
    assert roc_auc_tie_bound(score_counts(np.array([0.2]), np.array([0]))) is None
    assert regression_metrics(0, 0.0, 0.0) == RegressionMetrics(0, None, None)
    assert label_coverage(0, 0) is None and label_coverage(30, 120) == 0.25
    with pytest.raises(ValueError):
        label_coverage(5, 4)


# --- latency quantiles -------------------------------------------------------------------------------


def test_histogram_percentiles_are_within_one_log_bin_of_numpy():
    rng = np.random.default_rng(6)
    latency = np.concatenate([rng.lognormal(np.log(40), 0.5, 200_000), rng.lognormal(np.log(900), 0.3, 3_000)])
    edges = log_edges(ratio=1.02)
    sample = bin_sample(latency, edges)
    result = latency_percentiles(sample, lower=latency.min(), upper=latency.max())
    assert result.n == latency.size
    for p, value in ((0.5, result.p50), (0.95, result.p95), (0.99, result.p99)):
        assert value == pytest.approx(np.quantile(latency, p), rel=0.02)


def test_open_tails_are_closed_by_the_observed_extremes_or_clamped():
    edges, counts = np.array([10.0, 20.0]), np.array([0, 0, 4])  # everything above the last edge
    assert histogram_quantiles(edges, counts, [0.5], upper=60.0) == [40.0]
    assert histogram_quantiles(edges, counts, [0.5]) == [20.0]
    assert histogram_quantiles(edges, np.array([2, 2, 0]), [0.0, 0.25, 1.0], lower=0.0) == [0.0, 5.0, 20.0]
    assert histogram_quantiles(edges, np.zeros(3), [0.5]) == [None]


def test_exact_quantiles_from_fetched_neighbours_equal_numpy_bit_for_bit():
    values = np.sort(np.random.default_rng(7).lognormal(size=12_345))
    probabilities = np.arange(1, 1000) / 1000
    lower, upper, fraction = quantile_positions(values.size, probabilities)
    assert np.array_equal(exact_quantiles(values[lower], values[upper], fraction), np.quantile(values, probabilities))


def test_log_edges_cover_the_range_geometrically():
    edges = log_edges(1.0, 1000.0, 1.1)
    assert edges[0] == 1.0 and edges[-1] >= 1000.0 > edges[-2]
    assert np.allclose(edges[1:] / edges[:-1], 1.1)
    assert not any(math.isnan(v) for v in edges)
