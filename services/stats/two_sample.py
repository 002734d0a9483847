"""Two-sample statistics from aggregates: the numbers `services.stats.drift` chooses among and judges.

Numerical samples come as two `BinnedSample`s on the same fine edges, categorical ones as count vectors
over the union of categories. Nothing here sees a row.

Definitions (fixed, so numbers are comparable across models and windows):

* **PSI** on 10 bins at the reference deciles (numerical) or over the union of categories
  (categorical): ``sum((p_ref - p_cur) * ln(p_ref / p_cur))``. Empty bins get Evidently's epsilon:
  a zero share becomes ``1e-4``, or ``min_nonzero_share / 1e6`` when the smallest non-zero share of
  that sample is itself ``<= 1e-4`` (``evidently.legacy.calculations.stattests.utils.get_binned_data``).
* **Jensen-Shannon distance** on the same bins/categories: ``scipy.spatial.distance.jensenshannon``
  with the natural logarithm (Evidently passes ``base=None``), so it lies in ``[0, sqrt(ln 2)]``; no
  epsilon (Evidently does not fill zeroes for JS either).
* **Wasserstein (normed)**: the 1-Wasserstein distance ``integral |F_ref - F_cur| dx`` divided by the
  reference's population standard deviation floored at ``0.001`` (Evidently's ``max(np.std(ref), 0.001)``).
  See `wasserstein_1` for how it is rebuilt from fine bins and tail sums.
* **KS statistic**: ``max |F_ref - F_cur|`` over the fine edges (exact at the edges, so a lower bound of
  the two-sample KS statistic off by at most the largest per-bin share; see `ks_resolution`). Its
  p-value follows ``scipy.stats.ks_2samp(method="auto")``: exact when both samples have at most
  10 000 rows, else Smirnov's asymptotic ``kstwo.sf(D, round(n*m/(n+m)))``.
* **Chi-square p-value** (categorical): current counts against the reference proportions scaled to
  the current size, over the union of categories. A category absent from the reference has expected
  count 0: observing it is impossible under the reference, so chi2 = inf and p = 0 (what Evidently /
  scipy give too, without the division warning).
* **Z-test p-value** (two categories): the two-proportion z-test Evidently uses, two-sided, via
  ``2 * norm.sf(|z|)``; 1.0 when both samples hold one and the same value.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.spatial import distance

from services.stats.histogram import BinnedSample

__all__ = [
    "KS_EXACT_MAX_N",
    "check_same_edges",
    "chi2_pvalue",
    "jensenshannon_distance",
    "ks_pvalue",
    "ks_resolution",
    "ks_statistic",
    "psi",
    "single_valued",
    "wasserstein_1",
    "z_pvalue",
]

KS_EXACT_MAX_N = 10_000
"""scipy's ks_2samp(method="auto") computes the exact p-value up to this sample size."""


# --- distances on count vectors -----------------------------------------------------------------


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    """Evidently's epsilon for empty bins (see module docstring)."""
    shares = shares.astype(float).copy()
    nonzero = shares[shares != 0]
    if nonzero.size == 0:
        return shares
    smallest = nonzero.min()
    shares[shares == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return shares


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float | None:
    """PSI of two count vectors over the same bins, with Evidently's epsilon; None if a side is empty."""
    ref = np.asarray(reference_counts, dtype=float)
    cur = np.asarray(current_counts, dtype=float)
    if ref.sum() <= 0 or cur.sum() <= 0:
        return None
    p = _fill_zeroes(ref / ref.sum())
    q = _fill_zeroes(cur / cur.sum())
    return float(np.sum((p - q) * np.log(p / q)))


def jensenshannon_distance(reference_counts: np.ndarray, current_counts: np.ndarray) -> float | None:
    """scipy's Jensen-Shannon distance (natural log) of two count vectors; None if a side is empty."""
    ref = np.asarray(reference_counts, dtype=float)
    cur = np.asarray(current_counts, dtype=float)
    if ref.sum() <= 0 or cur.sum() <= 0:
        return None
    return float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum()))


# --- Kolmogorov-Smirnov on fine bins ------------------------------------------------------------


def check_same_edges(reference: BinnedSample, current: BinnedSample) -> None:
    if reference.edges.shape != current.edges.shape or not np.array_equal(reference.edges, current.edges):
        raise ValueError("reference and current must be binned on the same edges")


def single_valued(sample: BinnedSample) -> np.ndarray:
    """Per bin: True when every value in it equals its left edge (sum == count * edge); bin 0 unknown."""
    left = np.concatenate([[np.nan], sample.edges])
    expected = sample.counts * left
    same = np.isclose(sample.sums, expected, rtol=1e-9, atol=0.0)
    same[0] = sample.counts[0] == 0
    result: np.ndarray = same | (sample.counts == 0)
    return result


def ks_statistic(reference: BinnedSample, current: BinnedSample) -> float | None:
    """``max |F_ref - F_cur|`` over the edges (``F(e)`` = share of values ``< e``); None if a side is empty."""
    check_same_edges(reference, current)
    if reference.n == 0 or current.n == 0:
        return None
    if reference.edges.size == 0:
        return 0.0
    f_ref = np.cumsum(reference.counts)[:-1] / reference.n
    f_cur = np.cumsum(current.counts)[:-1] / current.n
    return float(np.max(np.abs(f_ref - f_cur)))


def ks_resolution(reference: BinnedSample, current: BinnedSample) -> float | None:
    """How much the true two-sample KS statistic can exceed `ks_statistic` (a rigorous bound).

    Inside bin ``i`` the CDF difference starts at its value ``d_left`` at the lower edge and ends at
    ``d_right`` at the upper edge; on the way the reference adds at most its share ``r_i`` and the
    current at most ``c_i``, so it stays in ``[max(d_left - c_i, d_right - r_i), min(d_left + r_i,
    d_right + c_i)]``; a bin holding one value at its lower edge in both samples adds nothing. The
    bound is the largest ``|difference|`` these intervals allow, minus the statistic at the edges.
    With 1000 reference-quantile bins it is about the larger of the two samples' shares in the bin
    where the maximum sits: ~1e-3 times the current/reference density ratio there.
    """
    d_edges = ks_statistic(reference, current)
    if d_edges is None:
        return None
    r = reference.counts / reference.n
    c = current.counts / current.n
    d = np.concatenate([[0.0], np.cumsum(r)[:-1] - np.cumsum(c)[:-1], [0.0]])
    d_left, d_right = d[:-1], d[1:]
    low = np.maximum(d_left - c, d_right - r)
    high = np.minimum(d_left + r, d_right + c)
    # A bin holding one value at its lower edge in both samples jumps there: nothing between edges.
    single = single_valued(reference) & single_valued(current)
    low, high = np.where(single, d_right, low), np.where(single, d_right, high)
    return float(max(np.max(np.maximum(np.abs(low), np.abs(high))) - d_edges, 0.0))


def ks_pvalue(reference: BinnedSample, current: BinnedSample) -> float | None:
    """Two-sided KS p-value of the binned statistic, as ``ks_2samp(method="auto")`` computes it.

    The p-value depends only on the statistic and the two sizes. Up to 10 000 rows per side scipy's
    exact algorithm is run on the bin-index representation of the samples (each value replaced by its
    bin number, which has exactly the binned statistic); above, Smirnov's asymptotic distribution.
    """
    d = ks_statistic(reference, current)
    if d is None:
        return None
    n1, n2 = reference.n, current.n
    if max(n1, n2) <= KS_EXACT_MAX_N:
        bins = np.arange(reference.counts.size)
        result = stats.ks_2samp(np.repeat(bins, reference.counts), np.repeat(bins, current.counts),
                                method="auto")
        return float(result.pvalue)
    m, n = sorted((float(n1), float(n2)), reverse=True)
    return float(np.clip(stats.distributions.kstwo.sf(d, np.round(m * n / (m + n))), 0.0, 1.0))




# --- Wasserstein from fine bins --------------------------------------------------------------------


def _in_bin_cdf(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, left_limit: bool) -> np.ndarray:
    """CDF of uniform[lo, hi] (a point mass when lo == hi) at x, or its left limit."""
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        ramp = np.clip((x - lo) / np.where(width > 0, width, 1.0), 0.0, 1.0)
    step = (x > lo) if left_limit else (x >= lo)
    return np.where(width > 0, ramp, step.astype(float))


def _bin_model(sample: BinnedSample, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per interior bin: share before it, its share, and the interval its mass is spread on."""
    counts = sample.counts[1:-1].astype(float)
    sums = sample.sums[1:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), a)
    mean = np.clip(mean, a, b)
    half = np.minimum(mean - a, b - mean)
    before = np.cumsum(sample.counts)[:-2] / sample.n
    return before, counts / sample.n, mean - half, mean + half


def _abs_linear_integral(d0: np.ndarray, d1: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Integral of |d| over a segment where d goes linearly from d0 to d1."""
    same_sign = d0 * d1 >= 0
    total = np.abs(d0) + np.abs(d1)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = np.where(total > 0, (d0 * d0 + d1 * d1) / (2 * np.where(total > 0, total, 1.0)), 0.0)
    return length * np.where(same_sign, total / 2, crossing)


def wasserstein_1(reference: BinnedSample, current: BinnedSample) -> float | None:
    """The 1-Wasserstein distance ``integral |F_ref - F_cur| dx`` rebuilt from fine bins and sums.

    * Interior bin ``[a, b)``: each sample's share of the bin is spread uniformly on the widest interval
      ``[m - h, m + h]`` inside the bin that is centred on that sample's mean ``m`` of the bin (its sum /
      count), so the model has the right share *and* the right mean in every bin. This is the
      piecewise-linear CDF inside the bin when values are spread evenly (``m`` near the middle), and a
      step at the value when the bin holds a single value (``m == a``: integer-valued features, value
      -count aggregates), where it is exact. ``|F_ref - F_cur|`` is then integrated exactly.
    * Open tails: only the integrals ``integral_{-inf}^{e_0} F = (count_0 * e_0 - sum_0) / n`` and
      ``integral_{e_last}^{inf} (1 - F) = (sum_k - count_k * e_last) / n`` are known; the tail
      contributes ``|tail_ref - tail_cur|``. That is exact when one distribution's tail dominates the
      other's (a shift, a wider or a heavier tail) and a lower bound otherwise.

    None when a side is empty.
    """
    check_same_edges(reference, current)
    if reference.n == 0 or current.n == 0:
        return None
    edges = reference.edges
    if edges.size == 0:
        w1: float = abs(reference.sums[0] / reference.n - current.sums[0] / current.n)
        return w1

    def tails(sample: BinnedSample) -> tuple[float, float]:
        low = (sample.counts[0] * edges[0] - sample.sums[0]) / sample.n
        high = (sample.sums[-1] - sample.counts[-1] * edges[-1]) / sample.n
        return max(float(low), 0.0), max(float(high), 0.0)

    (ref_low, ref_high), (cur_low, cur_high) = tails(reference), tails(current)
    total = abs(ref_low - cur_low) + abs(ref_high - cur_high)
    if edges.size == 1:
        return total

    a, b = edges[:-1], edges[1:]
    r_before, r_share, r_lo, r_hi = _bin_model(reference, a, b)
    c_before, c_share, c_lo, c_hi = _bin_model(current, a, b)
    points = np.sort(np.stack([a, r_lo, r_hi, c_lo, c_hi, b], axis=1), axis=1)
    start, end = points[:, :-1], points[:, 1:]

    def cdf(before: np.ndarray, share: np.ndarray, lo: np.ndarray, hi: np.ndarray, x: np.ndarray,
            left_limit: bool) -> np.ndarray:
        value: np.ndarray = before[:, None] + share[:, None] * _in_bin_cdf(x, lo[:, None], hi[:, None],
                                                                          left_limit=left_limit)
        return value

    d0 = cdf(r_before, r_share, r_lo, r_hi, start, False) - cdf(c_before, c_share, c_lo, c_hi, start, False)
    d1 = cdf(r_before, r_share, r_lo, r_hi, end, True) - cdf(c_before, c_share, c_lo, c_hi, end, True)
    total += float(np.sum(_abs_linear_integral(d0, d1, end - start)))
    return total


# --- p-values on category counts ----------------------------------------------------------------


def chi2_pvalue(ref: np.ndarray, cur: np.ndarray) -> float | None:
    if ref.sum() == 0 or cur.sum() == 0:
        return None
    if np.any((ref == 0) & (cur > 0)):
        return 0.0
    seen = ref > 0
    if seen.sum() < 2:
        return None
    expected = ref[seen] * (cur.sum() / ref.sum())
    return float(stats.chisquare(cur[seen], expected).pvalue)


def z_pvalue(ref: np.ndarray, cur: np.ndarray) -> float | None:
    """Evidently's two-proportion z-test on the first category (sorted) against the rest."""
    n1, n2 = ref.sum(), cur.sum()
    if n1 == 0 or n2 == 0 or ref.size > 2:
        return None
    if (ref > 0).sum() == 1 and (cur > 0).sum() == 1 and np.array_equal(ref > 0, cur > 0):
        return 1.0
    p1, p2 = 1 - ref[0] / n1, 1 - cur[0] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(2 * stats.norm.sf(abs(z)))
