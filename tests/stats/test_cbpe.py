"""CBPE from per-cell aggregates (services.stats.cbpe) against the row-level numpy oracle and a simulation.

The oracle (tests/support/cbpe_oracle.py) fits scikit-learn's isotonic regression on the reference
rows and sums calibrated probabilities row by row, as NannyML does; it shares no code with the
aggregates. The band is checked by drawing the labels it assumes (Bernoulli(p)) many times.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from services.stats.cbpe import (
    CalibrationMap,
    ExpectedCells,
    estimate_metrics,
    expected_cells,
    expected_cells_of_rows,
    roc_auc_grid_bound,
    score_grid,
)
from tests.support import cbpe_oracle

REFERENCE = cbpe_oracle.make_rows(1, 3000)
WINDOW = cbpe_oracle.make_rows(2, 2500, shift=0.7)


def fitted_map(reference=REFERENCE) -> CalibrationMap:
    model = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(reference["score"], reference["label"])
    x, y = model.X_thresholds_, model.y_thresholds_
    values, counts = np.unique(reference["score"], return_counts=True)
    return CalibrationMap(x=x, y=y, grid=score_grid(x, values, counts))


def moments(calibration: CalibrationMap, scores: np.ndarray, predictions: np.ndarray):
    """COUNT, SUM(score), SUM(score^2) per (prediction, cell): what the warehouse returns."""
    cell = np.searchsorted(calibration.grid, scores, side="right")
    shape = (2, calibration.cells)
    n, s, s2 = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    np.add.at(n, (predictions, cell), 1)
    np.add.at(s, (predictions, cell), scores)
    np.add.at(s2, (predictions, cell), scores * scores)
    return n, s, s2


def test_the_map_predicts_what_sklearns_isotonic_regression_predicts_inside_and_outside_the_reference():
    model = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(REFERENCE["score"], REFERENCE["label"])
    calibration = fitted_map()
    probes = np.concatenate([WINDOW["score"].to_numpy(), [-5.0, 0.0, 1.0, 7.0]])
    np.testing.assert_allclose(calibration.predict(probes), model.predict(probes), atol=1e-12)


def test_expected_sums_from_cell_moments_equal_the_row_by_row_sums():
    calibration = fitted_map()
    scores, predictions = WINDOW["score"].to_numpy(), WINDOW["prediction"].to_numpy()
    got = expected_cells(calibration, *moments(calibration, scores, predictions))
    want = expected_cells_of_rows(calibration, scores, predictions)
    np.testing.assert_allclose(got.sum_p, want.sum_p, atol=1e-9)
    np.testing.assert_allclose(got.sum_p2, want.sum_p2, atol=1e-9)
    assert got.n.sum() == len(WINDOW)


def test_estimates_equal_the_row_level_oracle_and_roc_auc_stays_within_its_grid_bound():
    calibration = fitted_map()
    scores, predictions = WINDOW["score"].to_numpy(), WINDOW["prediction"].to_numpy()
    cells = expected_cells(calibration, *moments(calibration, scores, predictions))
    got = estimate_metrics(cells)
    want = cbpe_oracle.cbpe(REFERENCE["score"], REFERENCE["label"], scores, predictions)
    for metric in ("accuracy", "precision", "recall", "f1"):
        assert got[metric].value == pytest.approx(want[metric], abs=1e-9), metric
    bound = roc_auc_grid_bound(cells, calibration)
    assert bound is not None and bound < 0.005
    assert abs(got["roc_auc"].value - want["roc_auc"]) <= bound + 1e-12
    assert got["roc_auc"].value == pytest.approx(want["roc_auc"], abs=0.005)


def test_the_band_holds_the_realised_metric_when_labels_follow_the_calibrated_probabilities():
    """Draw the labels CBPE assumes; the band's 1/3 width must match the realised metric's spread."""
    calibration = fitted_map()
    scores, predictions = WINDOW["score"].to_numpy(), WINDOW["prediction"].to_numpy()
    estimate = estimate_metrics(expected_cells_of_rows(calibration, scores, predictions))
    p = calibration.predict(scores)
    rng = np.random.default_rng(7)
    realised: dict[str, list[float]] = {m: [] for m in estimate}
    for _ in range(400):
        y = (rng.random(p.size) < p).astype(int)
        tp = np.sum((predictions == 1) & (y == 1))
        fp = np.sum((predictions == 1) & (y == 0))
        fn = np.sum((predictions == 0) & (y == 1))
        realised["accuracy"].append(np.mean(predictions == y))
        realised["precision"].append(tp / (tp + fp))
        realised["recall"].append(tp / (tp + fn))
        realised["f1"].append(2 * tp / (2 * tp + fp + fn))
        order = np.argsort(scores)  # Mann-Whitney AUC of the drawn labels against the raw scores
        ranks = np.empty(p.size)
        ranks[order] = np.arange(1, p.size + 1)
        n_pos = y.sum()
        realised["roc_auc"].append((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (p.size - n_pos)))
    for metric, e in estimate.items():
        values = np.asarray(realised[metric])
        se = (e.upper - e.lower) / 6
        assert abs(values.mean() - e.value) < 0.25 * se + 0.002, metric  # the estimate is the mean
        assert 0.75 < se / values.std() < 1.35, (metric, se, values.std())
        assert np.mean((values >= e.lower) & (values <= e.upper)) >= 0.99, metric


def test_an_empty_window_and_one_sided_windows_give_none_not_nan():
    calibration = fitted_map()
    empty = estimate_metrics(ExpectedCells.empty(calibration.cells))
    assert all(e.value is None and e.lower is None and e.upper is None for e in empty.values())
    only_zero = estimate_metrics(expected_cells_of_rows(calibration, np.array([0.1, 0.2]), np.array([0, 0])))
    assert only_zero["precision"].value is None and only_zero["accuracy"].value is not None


def test_the_bounds_stay_within_zero_and_one():
    calibration = fitted_map()
    few = expected_cells_of_rows(calibration, np.array([0.05, 0.4, 0.6, 0.97]), np.array([0, 0, 1, 1]))
    for e in estimate_metrics(few).values():
        assert e.value is None or 0.0 <= e.lower <= e.value <= e.upper <= 1.0


def test_huge_scores_give_finite_estimates_not_nan():
    """Attack: a score of 1e200 overflows SUM(score^2) to inf; a flat cell (slope 0) must not turn it into NaN."""
    calibration = fitted_map()
    scores = np.array([0.2, 0.7, 1e200, 1e200])
    predictions = np.array([0, 1, 1, 1])
    n, s, s2 = moments(calibration, scores, predictions)
    assert np.isinf(s2).any()
    got = estimate_metrics(expected_cells(calibration, n, s, s2))
    want = estimate_metrics(expected_cells_of_rows(calibration, scores, predictions))
    for metric, e in got.items():
        assert e.value == pytest.approx(want[metric].value), metric
        assert e.lower is not None and np.isfinite(e.lower), metric


@pytest.mark.parametrize(("x", "y", "grid", "message"), [
    ([0.1, 0.5], [0.2, 0.1], [0.1, 0.5], "must not decrease"),
    ([0.5, 0.1], [0.1, 0.2], [0.1, 0.5], "must increase"),
    ([0.1, np.nan], [0.1, 0.2], [0.1], "finite"),
    ([0.1, 0.5], [0.1, 1.5], [0.1, 0.5], "within"),
    ([0.1, 0.5], [0.1, 0.2], [0.1], "hold every breakpoint"),
    ([], [], [], "at least one"),
])
def test_a_map_that_is_not_a_calibration_is_refused(x, y, grid, message):
    with pytest.raises(ValueError, match=message):
        CalibrationMap(x=np.array(x, dtype=float), y=np.array(y, dtype=float), grid=np.array(grid, dtype=float))
