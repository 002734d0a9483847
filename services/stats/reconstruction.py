"""Multivariate drift as PCA reconstruction error, from moments the warehouse computes (numpy only).

The definition is NannyML's ``DataReconstructionDriftCalculator`` on numerical features:

1. a missing value (NULL, NaN, +-inf) is replaced by the reference mean of its feature;
2. each feature is standardised with the reference mean and population standard deviation
   (scikit-learn's ``StandardScaler``; a constant feature keeps scale 1);
3. PCA on the standardised reference keeps the fewest components whose explained variance reaches
   65 % (``PCA(n_components=0.65)``);
4. a row's error is the Euclidean distance between its standardised vector ``z`` and the
   reconstruction from those components: ``||z (I - PᵀP)||``; a window's value is the mean error;
5. the band is mean ± 3σ (population σ) of the chunk means of the reference split in 10 chunks by
   row order (``n // 10`` rows each, a remainder kept as an 11th chunk); a lower bound at or below 0
   is dropped, as NannyML does. A value outside the open band ``(lower, upper)`` has drifted.

The PCA is fitted from the mean-imputed, centred cross-product sums of the reference (one SQL
statement, ``services.stores.warehouse.reconstruction``), not from rows: PCA on standardised data is
the eigen-decomposition of their covariance, so the whole reference counts without a sample and no
row leaves the warehouse. :func:`row_errors` is the same definition over an array of rows (tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

VARIANCE_KEPT = 0.65
BAND_SIGMAS = 3.0
REFERENCE_CHUNKS = 10
Z_MAX = 1e12  # standard deviations: a value further out counts as this far (its square stays finite in SQL)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class PcaFit:
    """What a window's reconstruction error needs: per feature its mean and scale, and the kept
    components (``k × d``, orthonormal rows in the standardised space)."""

    columns: tuple[str, ...]
    means: FloatArray
    scales: FloatArray
    components: FloatArray
    explained: float  # share of the standardised variance the kept components explain

    @property
    def residual_matrix(self) -> FloatArray:
        """``M = I - PᵀP`` (symmetric): the residual of a standardised row ``z`` is ``z @ M``."""
        p = self.components
        return np.eye(p.shape[1]) - p.T @ p


class NotFittable(ValueError):
    """The reference gives no usable PCA (the reason is the message)."""


def _constant(variance: FloatArray, mean: FloatArray, n: int) -> npt.NDArray[np.bool_]:
    """scikit-learn's test for a constant feature (``_is_constant_feature``): variance within rounding."""
    eps = np.finfo(np.float64).eps
    upper_bound = n * eps * variance + (n * mean * eps) ** 2
    result: npt.NDArray[np.bool_] = variance <= upper_bound
    return result


def fit_from_moments(columns: Sequence[str], means: Sequence[float], cross: FloatArray, n: int,
                     variance_kept: float = VARIANCE_KEPT) -> PcaFit:
    """The PCA of the standardised reference from its moments.

    ``cross[i, j]`` is the sum over the ``n`` reference rows of ``(x_i - μ_i)(x_j - μ_j)`` with a missing
    value counted as its mean (so contributing 0). NotFittable when fewer than two features are given,
    every feature is constant, or the kept components span every feature (no residual is left).
    """
    d = len(columns)
    if d < 2:
        raise NotFittable(f"{d} usable numerical feature(s); a reconstruction error needs at least 2.")
    if n < 2:
        raise NotFittable("the reference has fewer than 2 rows.")
    mu = np.asarray(means, dtype=np.float64)
    s = np.asarray(cross, dtype=np.float64).reshape(d, d)
    s = (s + s.T) / 2
    variance = np.clip(np.diag(s) / n, 0.0, None)
    constant = _constant(variance, mu, n)
    if constant.all():
        raise NotFittable("every numerical feature is constant in the reference.")
    scales = np.where(constant, 1.0, np.sqrt(variance))
    covariance = s / np.outer(scales, scales) / (n - 1)  # of z; the scale cancels in the variance shares
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    ratio = values / values.sum()
    k = min(int(np.searchsorted(np.cumsum(ratio), variance_kept, side="right")) + 1, d)
    if k >= d:
        raise NotFittable(f"{variance_kept:.0%} of the variance needs all {d} components, so nothing is left to "
                          "reconstruct: the features are (nearly) uncorrelated.")
    return PcaFit(columns=tuple(columns), means=mu, scales=scales, components=vectors[:, :k].T.copy(),
                  explained=float(ratio[:k].sum()))


def standardised(x: FloatArray, fit: PcaFit) -> FloatArray:
    """Rows (``n × d`` in ``fit.columns`` order) standardised; NaN and +-inf count as missing (0), and a
    value more than ``Z_MAX`` standard deviations out counts as ``Z_MAX``."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.clip((x - fit.means) / fit.scales, -Z_MAX, Z_MAX)
    return np.where(np.isfinite(x), z, 0.0)


def row_errors(x: FloatArray, fit: PcaFit) -> FloatArray:
    """Each row's reconstruction error (the definition the warehouse SQL computes)."""
    result: FloatArray = np.linalg.norm(standardised(x, fit) @ fit.residual_matrix, axis=1)
    return result


def chunk_size(n: int, chunks: int = REFERENCE_CHUNKS) -> int:
    """Rows per reference chunk (NannyML's default chunker: ``n // 10``; 0 when too few rows)."""
    return n // chunks


@dataclass(frozen=True)
class Band:
    """mean ± 3σ of the reference chunk means; ``lower`` None when it would be at or below 0."""

    mean: float
    lower: float | None
    upper: float
    chunks: int


def band(chunk_means: Sequence[float], sigmas: float = BAND_SIGMAS) -> Band:
    """The band of the reference chunk means (at least two, all finite)."""
    values = np.asarray(chunk_means, dtype=np.float64)
    if values.size < 2 or not np.isfinite(values).all():
        raise NotFittable("a band needs the reconstruction error of at least two reference chunks.")
    mean, spread = float(values.mean()), float(values.std())
    lower = mean - sigmas * spread
    return Band(mean=mean, lower=lower if lower > 0 else None, upper=mean + sigmas * spread, chunks=int(values.size))


def outside(value: float | None, lower: float | None, upper: float | None) -> bool | None:
    """Drifted: the value is not strictly inside ``(lower, upper)`` (None: not judged)."""
    if value is None or upper is None or not math.isfinite(value):
        return None
    low = -math.inf if lower is None else lower
    return not (low < value < upper)
