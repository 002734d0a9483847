"""Fairness figures from (group, prediction, label) counts, checked against fairlearn 0.15 to 1e-9.

fairlearn needs ``y_true`` for every row, so its oracle for label-based figures (TPR, FPR, equalized
odds, selection rate on labelled rows) runs on the labelled rows. Demographic parity on all rows is
checked with fairlearn on every prediction: its ``selection_rate`` ignores ``y_true``, so the unlabelled
rows get a placeholder label there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from fairlearn import metrics as fl
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate

from services.stats.fairness import (
    GroupCounts,
    demographic_parity_difference,
    demographic_parity_ratio,
    disparate_impact_ratio,
    equalized_odds_difference,
    fairness_summary,
    group_counts,
    group_counts_from_rows,
    group_metrics,
    passes_four_fifths,
)


def _population(seed: int = 11, n: int = 6_000):
    """Four groups with different selection and error rates.

    Labels arrive selectively, as in lending: half of the rejected rows but a tenth of the approved
    ones are still unlabelled.
    """
    rng = np.random.default_rng(seed)
    groups = rng.choice(np.array(["a", "b", "c", "d"]), n, p=[0.4, 0.3, 0.2, 0.1])
    base = {"a": 0.5, "b": 0.35, "c": 0.6, "d": 0.2}
    y_true = (rng.random(n) < np.vectorize(base.get)(groups)).astype(float)
    flip = {"a": 0.1, "b": 0.25, "c": 0.15, "d": 0.3}
    y_pred = np.where(rng.random(n) < np.vectorize(flip.get)(groups), 1 - y_true, y_true).astype(int)
    y_true[rng.random(n) < np.where(y_pred == 1, 0.1, 0.5)] = np.nan
    return groups, y_pred, y_true


def _labelled(groups, y_pred, y_true):
    keep = ~np.isnan(y_true)
    return groups[keep], y_pred[keep], y_true[keep].astype(int)


def test_per_group_rates_match_fairlearn_metricframe_on_labelled_rows():
    groups, y_pred, y_true = _population()
    metrics = {m.group: m for m in group_metrics(group_counts(groups, y_pred, y_true))}
    g, p, t = _labelled(groups, y_pred, y_true)
    frame = MetricFrame(metrics={"sr": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
                        y_true=t, y_pred=p, sensitive_features=g).by_group
    assert sorted(metrics) == sorted(frame.index) == ["a", "b", "c", "d"]
    for name, row in frame.iterrows():
        assert metrics[name].selection_rate_labeled == pytest.approx(row["sr"], abs=1e-9)
        assert metrics[name].tpr == pytest.approx(row["tpr"], abs=1e-9)
        assert metrics[name].fpr == pytest.approx(row["fpr"], abs=1e-9)
        assert metrics[name].labeled == int(np.sum(g == name))
        assert metrics[name].count == int(np.sum(groups == name))
        assert metrics[name].selection_rate == pytest.approx(np.mean(y_pred[groups == name]), abs=1e-12)


def test_parity_odds_and_ratio_match_fairlearn():
    groups, y_pred, y_true = _population()
    counts = group_counts(groups, y_pred, y_true)
    g, p, t = _labelled(groups, y_pred, y_true)
    assert demographic_parity_difference(counts, basis="labeled") == pytest.approx(
        fl.demographic_parity_difference(t, p, sensitive_features=g), abs=1e-9)
    assert demographic_parity_ratio(counts, basis="labeled") == pytest.approx(
        fl.demographic_parity_ratio(t, p, sensitive_features=g), abs=1e-9)
    assert equalized_odds_difference(counts) == pytest.approx(
        fl.equalized_odds_difference(t, p, sensitive_features=g), abs=1e-9)
    assert equalized_odds_difference(counts, agg="mean") == pytest.approx(
        fl.equalized_odds_difference(t, p, sensitive_features=g, agg="mean"), abs=1e-9)
    placeholder = np.nan_to_num(y_true).astype(int)  # ignored by selection_rate
    assert demographic_parity_difference(counts) == pytest.approx(
        fl.demographic_parity_difference(placeholder, y_pred, sensitive_features=groups), abs=1e-9)
    assert disparate_impact_ratio(counts) == pytest.approx(
        fl.demographic_parity_ratio(placeholder, y_pred, sensitive_features=groups), abs=1e-9)
    # labels missing mostly on rejected rows inflate every labelled-only selection rate
    for metrics in group_metrics(counts):
        assert metrics.selection_rate_labeled > metrics.selection_rate + 0.1


def test_a_group_without_positive_labels_has_no_tpr_and_counts_as_zero_like_fairlearn():
    groups = np.array(["a"] * 6 + ["b"] * 6 + ["c"] * 6)
    y_true = np.array([1, 1, 1, 0, 0, 0] + [1, 1, 0, 0, 0, 0] + [0, 0, 0, 0, 0, 0], dtype=float)
    y_pred = np.array([1, 1, 0, 0, 0, 1] + [1, 1, 0, 1, 0, 0] + [1, 0, 0, 0, 0, 0])
    counts = group_counts(groups, y_pred, y_true)
    by_group = {m.group: m for m in group_metrics(counts)}
    assert by_group["c"].tpr is None and by_group["c"].fpr == pytest.approx(1 / 6)
    fairlearn_value = fl.equalized_odds_difference(y_true.astype(int), y_pred, sensitive_features=groups)
    assert equalized_odds_difference(counts) == pytest.approx(fairlearn_value, abs=1e-9)
    assert fairlearn_value == pytest.approx(1.0)  # TPR of b (1.0) minus the 0 fairlearn gives c
    assert equalized_odds_difference(counts, undefined="skip") == pytest.approx(1.0 - 2 / 3)


def test_no_selected_rows_gives_a_none_ratio_where_fairlearn_gives_nan():
    groups = np.array(list("aabbcc"))
    y_true = np.array([1, 0, 1, 0, 1, 0])
    y_pred = np.zeros(6, dtype=int)
    counts = group_counts(groups, y_pred, y_true)
    assert math.isnan(fl.demographic_parity_ratio(y_true, y_pred, sensitive_features=groups))
    assert demographic_parity_ratio(counts) is None
    assert demographic_parity_difference(counts) == 0.0
    summary = fairness_summary(counts)
    assert summary.disparate_impact_ratio is None and summary.passes_four_fifths is None


def test_four_fifths_rule_passes_at_exactly_point_eight():
    assert passes_four_fifths(0.8) is True
    assert passes_four_fifths(0.7999) is False
    assert passes_four_fifths(None) is None


def test_groups_without_labels_count_for_selection_only():
    counts = group_counts_from_rows([("a", 1, 1, 30), ("a", 0, 0, 50), ("a", 1, None, 20),
                                     ("b", 1, None, 10), ("b", 0, None, 40)])
    by_group = {m.group: m for m in group_metrics(counts)}
    assert by_group["b"].selection_rate == pytest.approx(0.2) and by_group["b"].selection_rate_labeled is None
    assert by_group["b"].tpr is None and by_group["b"].fpr is None
    assert demographic_parity_difference(counts) == pytest.approx(0.5 - 0.2)
    assert demographic_parity_difference(counts, basis="labeled") == 0.0  # only a has labelled rows
    assert equalized_odds_difference(counts) == 0.0


def test_sql_rows_and_arrays_give_the_same_counts_with_null_groups_named_missing():
    groups = np.array(["a", "a", None, "b", None, "a"], dtype=object)
    y_pred = np.array([1, 0, 1, 1, 0, 1])
    y_true = np.array([1, None, 0, 1, np.nan, 0], dtype=object)
    from_arrays = group_counts(groups, y_pred, y_true)
    from_rows = group_counts_from_rows([("a", 1, 1, 1), ("a", 0, None, 1), (None, 1, 0, 1), ("b", 1, 1, 1),
                                        (None, 0, None, 1), ("a", 1, 0, 1)])
    assert from_arrays == from_rows
    assert from_rows == (GroupCounts("(missing)", 2, 1, 0, 1, 0, 0), GroupCounts("a", 3, 2, 1, 1, 0, 0),
                         GroupCounts("b", 1, 1, 1, 0, 0, 0))


def test_inconsistent_counts_are_rejected():
    with pytest.raises(ValueError, match="inconsistent"):
        GroupCounts("a", n=10, predicted_positive=2, tp=2, fp=1, fn=0, tn=0)
    with pytest.raises(ValueError, match="0 or 1"):
        group_counts_from_rows([("a", 2, 1, 5)])
