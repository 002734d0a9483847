"""The PCA reconstruction error from moments equals scikit-learn's imputer + scaler + PCA(0.65) on the rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from services.stats import reconstruction as rc


def correlated(rng: np.random.Generator, n: int, flip: bool = False) -> np.ndarray:
    a = rng.normal(10, 2, n)
    b = 10 + (-0.9 if flip else 0.9) * (a - 10) + rng.normal(0, 0.8, n)
    c = np.exp(rng.normal(1, 0.4, n))
    d = 3 * a + rng.normal(0, 1, n)
    return np.column_stack([a, b, c, d])


def with_missing(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = x.copy()
    r = rng.random(x.shape)
    x[r < 0.03] = np.nan
    x[(r >= 0.03) & (r < 0.04)] = np.inf
    x[(r >= 0.04) & (r < 0.045)] = -np.inf
    return x


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the warehouse computes: means of the finite values, centred mean-imputed cross products."""
    finite = np.where(np.isfinite(x), x, np.nan)
    means = np.nanmean(finite, axis=0)
    centred = np.nan_to_num(finite - means, nan=0.0)
    return means, centred.T @ centred


def sklearn_errors(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, int]:
    """The oracle: NannyML's pipeline (NaN and +-inf imputed by the mean, as ours treats them)."""
    clean = lambda x: np.where(np.isfinite(x), x, np.nan)  # noqa: E731
    imputer = SimpleImputer(strategy="mean").fit(clean(reference))
    scaler = StandardScaler().fit(imputer.transform(clean(reference)))
    pca = PCA(n_components=0.65, random_state=16).fit(scaler.transform(imputer.transform(clean(reference))))
    z = scaler.transform(imputer.transform(clean(current)))
    return np.linalg.norm(z - pca.inverse_transform(pca.transform(z)), axis=1), pca.n_components_


def test_row_errors_from_moments_match_scikit_learn_row_by_row() -> None:
    rng = np.random.default_rng(7)
    reference = with_missing(correlated(rng, 4000), rng)
    current = with_missing(correlated(rng, 1500, flip=True), rng)
    means, cross = moments(reference)
    fit = rc.fit_from_moments(["a", "b", "c", "d"], means, cross, len(reference))
    want, k = sklearn_errors(reference, current)
    assert fit.components.shape == (k, 4)
    np.testing.assert_allclose(rc.row_errors(current, fit), want, rtol=1e-9, atol=1e-9)


def test_the_number_of_components_is_the_fewest_reaching_65_percent() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5000, 6)) @ rng.normal(size=(6, 6))
    means, cross = moments(x)
    fit = rc.fit_from_moments(list("abcdef"), means, cross, len(x))
    pca = PCA(n_components=0.65).fit(StandardScaler().fit_transform(x))
    assert fit.components.shape[0] == pca.n_components_
    assert fit.explained == pytest.approx(pca.explained_variance_ratio_.sum(), rel=1e-9)
    assert fit.explained >= 0.65


def test_a_broken_correlation_raises_the_error_while_the_same_correlation_does_not() -> None:
    rng = np.random.default_rng(11)
    reference = correlated(rng, 5000)
    means, cross = moments(reference)
    fit = rc.fit_from_moments(["a", "b", "c", "d"], means, cross, len(reference))
    same, flipped = correlated(rng, 2000), correlated(rng, 2000, flip=True)
    assert rc.row_errors(flipped, fit).mean() > 1.5 * rc.row_errors(same, fit).mean()


def test_a_constant_feature_keeps_scale_one_as_scikit_learn_does() -> None:
    rng = np.random.default_rng(5)
    x = correlated(rng, 2000)
    x[:, 2] = 4.0
    means, cross = moments(x)
    fit = rc.fit_from_moments(["a", "b", "c", "d"], means, cross, len(x))
    assert fit.scales[2] == 1.0
    current = correlated(rng, 300)
    np.testing.assert_allclose(rc.row_errors(current, fit), sklearn_errors(x, current)[0], rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize(("columns", "x", "reason"), [
    (["a"], np.ones((10, 1)), "at least 2"),
    (["a", "b"], np.ones((10, 2)), "every numerical feature is constant"),
    (["a", "b"], np.random.default_rng(1).normal(size=(5000, 2)), "nothing is left to reconstruct"),
])
def test_a_reference_without_a_usable_pca_says_why(columns, x, reason) -> None:
    means, cross = moments(x)
    with pytest.raises(rc.NotFittable, match=reason):
        rc.fit_from_moments(columns, means, cross, len(x))


def test_the_band_is_mean_plus_minus_three_population_sigmas_without_a_negative_lower_bound() -> None:
    chunk_means = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.0, 1.1, 0.98, 1.02]
    band = rc.band(chunk_means)
    mean, sd = np.mean(chunk_means), np.std(chunk_means)
    assert (band.mean, band.lower, band.upper, band.chunks) == pytest.approx((mean, mean - 3 * sd, mean + 3 * sd, 10))
    wide = rc.band([0.1, 1.0, 0.2, 1.5])
    assert wide.lower is None and wide.upper == pytest.approx(np.mean([0.1, 1.0, 0.2, 1.5]) + 3 * np.std(
        [0.1, 1.0, 0.2, 1.5]))
    with pytest.raises(rc.NotFittable):
        rc.band([1.0])


@pytest.mark.parametrize(("value", "lower", "upper", "drifted"), [
    (1.0, 0.5, 1.5, False), (1.5, 0.5, 1.5, True), (0.5, 0.5, 1.5, True), (0.1, None, 1.5, False),
    (2.0, None, 1.5, True), (None, 0.5, 1.5, None), (1.0, None, None, None), (float("nan"), 0.5, 1.5, None),
])
def test_outside_the_open_band_is_drift_as_nannyml_alerts(value, lower, upper, drifted) -> None:
    assert rc.outside(value, lower, upper) is drifted
