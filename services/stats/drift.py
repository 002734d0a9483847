"""Data drift of one column, computed from warehouse aggregates, with Evidently 0.7's verdicts.

Numerical columns come as two `BinnedSample`s on the same fine edges (the reference's 1000-quantiles),
categorical columns as ``{category: count}`` maps (``GROUP BY column``). Nothing here sees a row.

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

**Missing values** (NULL/NaN/+-inf) are dropped before testing, as Evidently does, and reported as
``null_share`` beside the verdict. For categorical maps the key ``None`` (SQL NULL) is the null count.

**Default method, as Evidently 0.7 chooses it** (``legacy/calculations/stattests/registry.py``,
``_get_default_stattest``), from the non-null reference size and the number of distinct non-null values
in reference and current together:

================  =====================  ====================================
reference rows    numerical              categorical
================  =====================  ====================================
> 1000            <= 5 values: JS        jensenshannon (threshold 0.1)
                  else: wasserstein 0.1
<= 1000           <= 2 values: z         <= 2 values: z (p-value, 0.05)
                  3-5 values: chisquare  else: chisquare (p-value, 0.05)
                  else: ks (p, 0.05)
================  =====================  ====================================

A numerical column with at most 5 distinct values is tested like a categorical one (value counts).
Verdicts: distances drift when ``score >= threshold``; KS when ``p <= threshold``; chi-square and
z when ``p < threshold`` (Evidently's exact comparisons).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np
from scipy import stats
from scipy.spatial import distance

from services.stats.histogram import BinnedSample, coarsen

__all__ = [
    "DEFAULT_THRESHOLDS",
    "EVIDENTLY_DISPLAY_NAMES",
    "CategoricalDrift",
    "NumericalDrift",
    "categorical_drift",
    "categorical_method",
    "category_counts",
    "is_drifted",
    "jensenshannon_distance",
    "ks_pvalue",
    "ks_resolution",
    "ks_statistic",
    "null_share",
    "numerical_drift",
    "numerical_method",
    "psi",
    "psi_band",
    "wasserstein_1",
]

SMALL_SAMPLE_ROWS = 1000
"""Evidently switches from p-value tests to distances when the reference has more rows than this."""
LOW_CARDINALITY = 5
"""A numerical column with at most this many distinct values is tested on value counts."""
STD_FLOOR = 0.001
"""Evidently's floor on the reference std used to norm the Wasserstein distance."""
KS_EXACT_MAX_N = 10_000
"""scipy's ks_2samp(method="auto") computes the exact p-value up to this sample size."""

DEFAULT_THRESHOLDS: dict[str, float] = {
    "wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.1, "ks": 0.05, "chisquare": 0.05, "z": 0.05,
}
EVIDENTLY_DISPLAY_NAMES: dict[str, str] = {
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
    "psi": "PSI",
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
}
PSI_BANDS = ((0.1, "stable"), (0.25, "moderate"), (math.inf, "major"))
"""PSI < 0.1 stable, 0.1 <= PSI < 0.25 moderate, PSI >= 0.25 major (the usual credit-scoring bands)."""


@dataclass(frozen=True)
class NumericalDrift:
    """Drift of one numerical column. Statistics that cannot be computed (an empty side) are None.

    ``method``/``score``/``threshold``/``drifted`` are the verdict (Evidently's default method unless
    told); the other statistics are always shown beside it. ``drifted`` is None when a side is empty.
    """

    method: str
    score: float | None
    threshold: float
    drifted: bool | None
    psi: float | None
    psi_band: str | None
    js_distance: float | None
    wasserstein_normed: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    reference_n: int
    current_n: int
    reference_null_share: float | None
    current_null_share: float | None


@dataclass(frozen=True)
class CategoricalDrift:
    """Drift of one categorical column over the union of its categories (NULL excluded, see nulls).

    ``unseen_categories`` are in the current window but not in the reference; ``unseen_share`` is
    their share of the current non-null rows; ``missing_categories`` are in the reference only.
    """

    method: str
    score: float | None
    threshold: float
    drifted: bool | None
    psi: float | None
    psi_band: str | None
    js_distance: float | None
    chi2_pvalue: float | None
    z_pvalue: float | None
    unseen_categories: tuple[str, ...]
    unseen_share: float | None
    missing_categories: tuple[str, ...]
    reference_n: int
    current_n: int
    reference_null_share: float | None
    current_null_share: float | None


# --- small pieces -------------------------------------------------------------------------------


def null_share(nulls: int, rows: int) -> float | None:
    """``nulls / rows`` (rows counts every row, null or not); None when there are no rows."""
    if nulls < 0 or rows < nulls:
        raise ValueError("need 0 <= nulls <= rows")
    return nulls / rows if rows else None


def is_drifted(method: str, score: float | None, threshold: float) -> bool | None:
    """Evidently's comparison for ``method``: distances ``>=``, KS ``p <=``, chi-square/z ``p <``."""
    if score is None:
        return None
    if method in ("wasserstein", "jensenshannon", "psi"):
        return bool(score >= threshold)
    if method == "ks":
        return bool(score <= threshold)
    if method in ("chisquare", "z"):
        return bool(score < threshold)
    raise ValueError(f"unknown drift method {method!r}")


def psi_band(value: float | None) -> str | None:
    """'stable' (< 0.1), 'moderate' (< 0.25) or 'major'; None for None."""
    if value is None:
        return None
    return next(label for bound, label in PSI_BANDS if value < bound)


def numerical_method(n_reference: int, n_distinct: int | None) -> str:
    """Evidently 0.7's default test for a numerical column (``n_distinct`` None means "more than 5")."""
    few = n_distinct is not None and n_distinct <= LOW_CARDINALITY
    if n_reference > SMALL_SAMPLE_ROWS:
        return "jensenshannon" if few else "wasserstein"
    if few:
        assert n_distinct is not None  # few implies n_distinct is not None
        return "z" if n_distinct <= 2 else "chisquare"
    return "ks"


def categorical_method(n_reference: int, n_distinct: int) -> str:
    """Evidently 0.7's default test for a categorical column."""
    if n_reference > SMALL_SAMPLE_ROWS:
        return "jensenshannon"
    return "z" if n_distinct <= 2 else "chisquare"


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


def _check_same_edges(reference: BinnedSample, current: BinnedSample) -> None:
    if reference.edges.shape != current.edges.shape or not np.array_equal(reference.edges, current.edges):
        raise ValueError("reference and current must be binned on the same edges")


def ks_statistic(reference: BinnedSample, current: BinnedSample) -> float | None:
    """``max |F_ref - F_cur|`` over the edges (``F(e)`` = share of values ``< e``); None if a side is empty."""
    _check_same_edges(reference, current)
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
    single = _single_valued(reference) & _single_valued(current)
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
    _check_same_edges(reference, current)
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


# --- low-cardinality numerical columns -----------------------------------------------------------


def _single_valued(sample: BinnedSample) -> np.ndarray:
    """Per bin: True when every value in it equals its left edge (sum == count * edge); bin 0 unknown."""
    left = np.concatenate([[np.nan], sample.edges])
    expected = sample.counts * left
    same = np.isclose(sample.sums, expected, rtol=1e-9, atol=0.0)
    same[0] = sample.counts[0] == 0
    result: np.ndarray = same | (sample.counts == 0)
    return result


def _values_from_bins(reference: BinnedSample, current: BinnedSample) -> tuple[dict[str, int], dict[str, int]] | None:
    """Value counts, when each non-empty bin of both samples holds a single value at its left edge."""
    if not (_single_valued(reference).all() and _single_valued(current).all()):
        return None
    left = np.concatenate([[np.nan], reference.edges])

    def counts(sample: BinnedSample) -> dict[str, int]:
        return {repr(float(left[i])): int(c) for i, c in enumerate(sample.counts) if c > 0}

    return counts(reference), counts(current)


def _distinct_lower_bound(reference: BinnedSample, current: BinnedSample) -> int:
    """At least this many distinct values are in reference and current together.

    An occupied bin holding one value at its left edge in both samples counts 1; the lower tail bin
    counts 1 (its values are unknown); any other occupied bin holds at least 2 values.
    """
    occupied = (reference.counts > 0) | (current.counts > 0)
    per_bin = np.where(_single_valued(reference) & _single_valued(current), 1, 2)
    per_bin[0] = 1
    return int(np.sum(per_bin[occupied]))


# --- column verdicts -----------------------------------------------------------------------------


def numerical_drift(reference: BinnedSample, current: BinnedSample, *, deciles: np.ndarray,
                    threshold: float | None = None, method: str | None = None,
                    n_distinct: int | None = None, every_pvalue: bool = True) -> NumericalDrift:
    """Drift of a numerical column from two fine histograms on the reference's edges.

    Args:
        reference, current: `BinnedSample`s on the same edges (the reference's 1000-quantiles).
        deciles: the reference deciles (``decile_edges(ref)`` / SQL quantiles at 0.1 .. 0.9), a subset
            of the edges; PSI and JS use these 10 bins.
        threshold: None for the method's default (0.1 for distances, 0.05 for p-values).
        method: None for Evidently 0.7's default choice (module docstring), or one of "wasserstein",
            "ks", "psi", "jensenshannon" (JS on the decile bins).
        n_distinct: distinct non-null values in reference and current together (``COUNT(DISTINCT)``;
            capped at 6 is enough). None: inferred from the bins when that is certain (every bin holds
            one value, or more than 5 values are certain), otherwise ValueError asking for it.
        every_pvalue: False computes the KS p-value only where it is the verdict (method "ks"), else
            leaves ``ks_pvalue`` None: scipy's exact p-value costs ~10 ms per column and window, which
            a backfill of every version and feature pays thousands of times for a number nobody reads.

    A column with at most 5 distinct values is tested on value counts, like Evidently; the bins
    must then isolate each value (``bin_value_counts`` at the distinct values), else ValueError.
    """
    _check_same_edges(reference, current)
    coarse_ref, coarse_cur = coarsen(reference, deciles), coarsen(current, deciles)
    psi_value = psi(coarse_ref.counts, coarse_cur.counts)
    js_value = jensenshannon_distance(coarse_ref.counts, coarse_cur.counts)
    w1 = wasserstein_1(reference, current)
    std = reference.std
    w_normed = None if w1 is None or std is None else w1 / max(std, STD_FLOOR)
    d = ks_statistic(reference, current)

    value_counts = None
    low_cardinality = False
    if method is None:
        if n_distinct is None and reference.n and current.n:
            value_counts = _values_from_bins(reference, current)
            if value_counts is not None:
                n_distinct = len(set(value_counts[0]) | set(value_counts[1]))
            elif _distinct_lower_bound(reference, current) <= LOW_CARDINALITY:
                raise ValueError("cannot tell from the bins whether the column has more than 5 distinct values; "
                                 "pass n_distinct (COUNT(DISTINCT x) over reference and current)")
        method = numerical_method(reference.n, n_distinct)
        low_cardinality = n_distinct is not None and n_distinct <= LOW_CARDINALITY
    p_ks = ks_pvalue(reference, current) if every_pvalue or method == "ks" else None

    if low_cardinality:
        if value_counts is None and reference.n and current.n:
            value_counts = _values_from_bins(reference, current)
            if value_counts is None:
                raise ValueError("a numerical column with at most 5 distinct values is tested on value counts: bin "
                                 "both samples at their distinct values (bin_value_counts) or use categorical_drift")
        pair = cast("tuple[Mapping[str | None, int], Mapping[str | None, int]]", value_counts or ({}, {}))
        score = categorical_drift(*pair, method=method).score
    else:
        scores = {"wasserstein": w_normed, "ks": p_ks, "psi": psi_value, "jensenshannon": js_value}
        if method not in scores:
            raise ValueError(f"unknown numerical drift method {method!r}")
        score = scores[method]
    threshold = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
    return NumericalDrift(
        method=method, score=score, threshold=threshold, drifted=is_drifted(method, score, threshold),
        psi=psi_value, psi_band=psi_band(psi_value), js_distance=js_value, wasserstein_normed=w_normed,
        ks_statistic=d, ks_pvalue=p_ks, reference_n=reference.n, current_n=current.n,
        reference_null_share=reference.null_share, current_null_share=current.null_share,
    )


def category_counts(values: np.ndarray) -> dict[str | None, int]:
    """The categorical aggregate from an array (``GROUP BY column``): None/NaN become the key None."""
    counts: dict[str | None, int] = {}
    for value in np.asarray(values, dtype=object).reshape(-1):
        key = None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _split_nulls(counts: Mapping[str | None, int]) -> tuple[dict[str, int], int]:
    nulls = 0
    kept: dict[str, int] = {}
    for key, value in counts.items():
        if value < 0:
            raise ValueError("category counts must be non-negative")
        if key is None:
            nulls += int(value)
        elif value:
            kept[str(key)] = kept.get(str(key), 0) + int(value)
    return kept, nulls


def _chi2_pvalue(ref: np.ndarray, cur: np.ndarray) -> float | None:
    if ref.sum() == 0 or cur.sum() == 0:
        return None
    if np.any((ref == 0) & (cur > 0)):
        return 0.0
    seen = ref > 0
    if seen.sum() < 2:
        return None
    expected = ref[seen] * (cur.sum() / ref.sum())
    return float(stats.chisquare(cur[seen], expected).pvalue)


def _z_pvalue(ref: np.ndarray, cur: np.ndarray) -> float | None:
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


def categorical_drift(reference_counts: Mapping[str | None, int], current_counts: Mapping[str | None, int], *,
                      threshold: float | None = None, method: str | None = None) -> CategoricalDrift:
    """Drift of a categorical column from ``{category: count}`` maps (``GROUP BY column``).

    The key None (SQL NULL) is the null count, not a category. Categories are compared over the union
    of both maps (keys are compared as strings). ``method`` None picks Evidently 0.7's default; else one
    of "jensenshannon", "psi", "chisquare", "z". ``threshold`` None: the method's default.
    """
    ref_map, ref_nulls = _split_nulls(reference_counts)
    cur_map, cur_nulls = _split_nulls(current_counts)
    keys = sorted(set(ref_map) | set(cur_map))
    ref = np.array([ref_map.get(k, 0) for k in keys], dtype=float)
    cur = np.array([cur_map.get(k, 0) for k in keys], dtype=float)
    n_ref, n_cur = int(ref.sum()), int(cur.sum())
    unseen = tuple(k for k in keys if k not in ref_map)
    missing = tuple(k for k in keys if k not in cur_map)

    psi_value = psi(ref, cur)
    js_value = jensenshannon_distance(ref, cur)
    chi2_p = _chi2_pvalue(ref, cur)
    z_p = _z_pvalue(ref, cur)
    if method is None:
        method = categorical_method(n_ref, len(keys))
    scores = {"jensenshannon": js_value, "psi": psi_value, "chisquare": chi2_p, "z": z_p}
    if method not in scores:
        raise ValueError(f"unknown categorical drift method {method!r}")
    if method == "z" and len(keys) > 2:
        raise ValueError("the z-test compares two categories; this column has more")
    score = scores[method]
    threshold = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
    return CategoricalDrift(
        method=method, score=score, threshold=threshold, drifted=is_drifted(method, score, threshold),
        psi=psi_value, psi_band=psi_band(psi_value), js_distance=js_value, chi2_pvalue=chi2_p, z_pvalue=z_p,
        unseen_categories=unseen,
        unseen_share=(sum(cur_map[k] for k in unseen) / n_cur) if n_cur else None,
        missing_categories=missing, reference_n=n_ref, current_n=n_cur,
        reference_null_share=null_share(ref_nulls, n_ref + ref_nulls),
        current_null_share=null_share(cur_nulls, n_cur + cur_nulls),
    )
