"""Fine histograms with per-bin sums: the aggregate every numerical statistic is computed from.

The warehouse never ships raw rows. For a numerical column it ships, per sample (the reference or
one window of the prediction log), one row per non-empty bin and three totals::

    SELECT bin, COUNT(*) AS count, SUM(x) AS sum FROM t WHERE x IS NOT NULL GROUP BY bin
    SELECT COUNT(*) - COUNT(x) AS nulls, SUM((x - :shift) * (x - :shift)) AS sum_sq FROM t

**Bin rule** (identical in SQL and here): with ``k`` sorted, distinct interior edges
``e_0 < ... < e_{k-1}``, the bin of ``x`` is *the number of edges ``<= x``*. So bin 0 is the open
lower tail ``(-inf, e_0)``, bin ``i`` is ``[e_{i-1}, e_i)`` and bin ``k`` is the open upper tail
``[e_{k-1}, +inf)``. In SQL that is ``(x >= e_0) + (x >= e_1) + ...`` (a sum of comparisons),
``CASE WHEN`` chains, a range join against an edges table, or PostgreSQL's
``width_bucket(x, ARRAY[e_0, ...])`` which returns exactly this number.

**Edges** are quantiles of the reference at probabilities ``i / n_bins`` (``i = 1 .. n_bins-1``) with
linear interpolation (numpy's default ``method="linear"``, DuckDB ``quantile_cont``, PostgreSQL
``percentile_cont``), duplicates collapsed. Because ``j / 10 == (100 * j) / 1000`` exactly in IEEE
arithmetic, the reference deciles are bit-for-bit a subset of the 1000-quantile edges, so the
10-bin statistics (PSI, Jensen-Shannon) come from the same fine histogram through `coarsen`.

**Sums per bin** make the open tail bins usable: ``E[(e_0 - X)+] = (count_0 * e_0 - sum_0) / n`` and
``E[(X - e_{k-1})+] = (sum_k - count_k * e_{k-1}) / n`` are exact, which is what keeps the
Wasserstein distance right on skewed features with long tails.

**sum_sq is shifted**: it is ``sum((x - shift)^2)`` with ``shift = default_shift(edges)`` (the middle
edge), so that the variance ``sum_sq / n - (mean - shift)^2`` does not cancel catastrophically for
columns whose mean is large compared with their spread (prices in cents, epoch timestamps).

Non-finite values (NULL, NaN, +-inf) are not binned: they are counted in ``nulls``, as Evidently
drops them before testing. On dialects with IEEE NaN/inf (DuckDB, PostgreSQL) the SQL should
filter them into ``nulls`` too (``isfinite(x)`` / ``x NOT IN ('NaN', 'Infinity', '-Infinity')``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "BinnedSample",
    "bin_sample",
    "bin_value_counts",
    "coarsen",
    "decile_edges",
    "default_shift",
    "quantile_probabilities",
    "reference_edges",
]


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class BinnedSample:
    """One sample of a numerical column as the warehouse aggregates it.

    Fields:
        edges: the ``k`` interior edges, strictly increasing (duplicate quantiles already collapsed).
        counts: ``k + 1`` non-negative integer counts, bin ``i`` = number of edges ``<= x``.
        sums: ``k + 1`` sums of the values in each bin.
        nulls: rows whose value is NULL/NaN/+-inf (not in any bin).
        sum_sq: ``sum((x - shift)^2)`` over the binned values.
        shift: the constant subtracted before squaring (``default_shift(edges)`` unless told).
        n: number of binned (finite) values, ``counts.sum()``; derived.
        mean: ``sum(sums) / n``; None when ``n == 0``; derived.
        std: **population** standard deviation (``ddof=0``, as ``np.std`` and Evidently's Wasserstein
            normalisation use); None when ``n == 0``; derived.
    """

    edges: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    nulls: int = 0
    sum_sq: float = 0.0
    shift: float = 0.0
    n: int = field(init=False)
    mean: float | None = field(init=False)
    std: float | None = field(init=False)

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges, dtype=float).reshape(-1)
        counts = np.asarray(self.counts).reshape(-1)
        sums = np.asarray(self.sums, dtype=float).reshape(-1)
        if not np.all(np.isfinite(edges)):
            raise ValueError("edges must be finite")
        if edges.size > 1 and not np.all(np.diff(edges) > 0):
            raise ValueError("edges must be strictly increasing (collapse duplicate quantiles first)")
        if counts.shape != (edges.size + 1,) or sums.shape != (edges.size + 1,):
            raise ValueError(f"{edges.size} edges need {edges.size + 1} counts and sums, "
                             f"got {counts.size} counts and {sums.size} sums")
        if np.any(counts < 0) or not np.all(np.equal(np.round(counts), counts)):
            raise ValueError("counts must be non-negative integers")
        if self.nulls < 0:
            raise ValueError("nulls must be non-negative")
        counts = counts.astype(np.int64)
        n = int(counts.sum())
        object.__setattr__(self, "edges", _frozen(edges))
        object.__setattr__(self, "counts", _frozen(counts))
        object.__setattr__(self, "sums", _frozen(sums))
        object.__setattr__(self, "nulls", int(self.nulls))
        object.__setattr__(self, "sum_sq", float(self.sum_sq))
        object.__setattr__(self, "shift", float(self.shift))
        object.__setattr__(self, "n", n)
        if n == 0:
            object.__setattr__(self, "mean", None)
            object.__setattr__(self, "std", None)
            return
        mean = float(sums.sum()) / n
        variance = self.sum_sq / n - (mean - self.shift) ** 2
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", math.sqrt(max(variance, 0.0)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BinnedSample):
            return NotImplemented
        return (np.array_equal(self.edges, other.edges) and np.array_equal(self.counts, other.counts)
                and np.array_equal(self.sums, other.sums)
                and (self.nulls, self.sum_sq, self.shift) == (other.nulls, other.sum_sq, other.shift))

    def __hash__(self) -> int:
        return hash((self.edges.tobytes(), self.counts.tobytes(), self.sums.tobytes(), self.nulls, self.sum_sq,
                     self.shift))

    @property
    def null_share(self) -> float | None:
        """Share of rows without a finite value; None for a sample without rows."""
        total = self.n + self.nulls
        return self.nulls / total if total else None


def quantile_probabilities(n_bins: int = 1000) -> np.ndarray:
    """The probabilities ``i / n_bins`` for ``i = 1 .. n_bins - 1`` at which edges are taken."""
    if n_bins < 2:
        raise ValueError("n_bins must be at least 2")
    return np.arange(1, n_bins) / n_bins


def reference_edges(values: np.ndarray, n_bins: int = 1000) -> np.ndarray:
    """Interior edges of ``n_bins`` equal-mass bins of the reference: its quantiles at ``i / n_bins``.

    Linear interpolation between order statistics (numpy's default), NaN/+-inf ignored, duplicates
    collapsed (a feature with ties gets fewer, wider bins). Empty input gives no edges.
    """
    values = np.asarray(values, dtype=float).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(values, quantile_probabilities(n_bins)))


def decile_edges(values: np.ndarray) -> np.ndarray:
    """The reference deciles (duplicates collapsed): a subset of ``reference_edges(values, 1000)``."""
    return reference_edges(values, n_bins=10)


def default_shift(edges: np.ndarray) -> float:
    """The constant subtracted before squaring: the middle edge (the reference median), or 0."""
    edges = np.asarray(edges, dtype=float).reshape(-1)
    return float(edges[(edges.size - 1) // 2]) if edges.size else 0.0


def bin_sample(values: np.ndarray, edges: np.ndarray, *, shift: float | None = None) -> BinnedSample:
    """Aggregate raw values exactly as the warehouse SQL does (the in-memory twin of that query).

    Bin = number of edges ``<= x``; NaN and +-inf are counted in ``nulls``.
    """
    edges = np.asarray(edges, dtype=float).reshape(-1)
    values = np.asarray(values, dtype=float).reshape(-1)
    finite = np.isfinite(values)
    kept = values[finite]
    shift = default_shift(edges) if shift is None else float(shift)
    index = np.searchsorted(edges, kept, side="right")
    counts = np.bincount(index, minlength=edges.size + 1)
    sums = np.bincount(index, weights=kept, minlength=edges.size + 1)
    centred = kept - shift
    return BinnedSample(edges=edges, counts=counts, sums=sums, nulls=int(values.size - kept.size),
                        sum_sq=float(np.dot(centred, centred)), shift=shift)


def bin_value_counts(values: np.ndarray, counts: np.ndarray, edges: np.ndarray, *, nulls: int = 0,
                     shift: float | None = None) -> BinnedSample:
    """Aggregate a value-count table (``SELECT x, COUNT(*) ... GROUP BY x``) onto ``edges``.

    For windows small enough to fetch value counts (and for numerical columns with few distinct
    values), bin both samples at ``np.union1d(reference_edges(ref), distinct values of both)``: every
    non-empty bin then holds a single value at its left edge and KS, Wasserstein, PSI and JS are exact.
    """
    values = np.asarray(values, dtype=float).reshape(-1)
    counts = np.asarray(counts).reshape(-1)
    if values.shape != counts.shape:
        raise ValueError("values and counts must have the same length")
    finite = np.isfinite(values)
    extra_nulls = int(counts[~finite].sum())
    values, counts = values[finite], counts[finite].astype(np.int64)
    edges = np.asarray(edges, dtype=float).reshape(-1)
    shift = default_shift(edges) if shift is None else float(shift)
    index = np.searchsorted(edges, values, side="right")
    bin_counts = np.bincount(index, weights=counts, minlength=edges.size + 1).round().astype(np.int64)
    bin_sums = np.bincount(index, weights=values * counts, minlength=edges.size + 1)
    return BinnedSample(edges=edges, counts=bin_counts, sums=bin_sums, nulls=int(nulls) + extra_nulls,
                        sum_sq=float(np.dot(counts, (values - shift) ** 2)), shift=shift)


def coarsen(sample: BinnedSample, edges_subset: np.ndarray) -> BinnedSample:
    """Merge fine bins into the bins of ``edges_subset`` (which must be a subset of ``sample.edges``).

    Used to get the 10 decile bins out of the 1000-quantile histogram without another query.
    """
    subset = np.unique(np.asarray(edges_subset, dtype=float).reshape(-1))
    if not np.all(np.isin(subset, sample.edges)):
        missing = subset[~np.isin(subset, sample.edges)]
        raise ValueError(f"coarse edges must be a subset of the fine edges; not found: {missing[:5].tolist()}")
    # Fine bin 0 is below every edge; fine bin i >= 1 starts at edges[i-1].
    lower = np.concatenate([[-np.inf], sample.edges])
    coarse_index = np.searchsorted(subset, lower, side="right")
    counts = np.bincount(coarse_index, weights=sample.counts, minlength=subset.size + 1).round().astype(np.int64)
    sums = np.bincount(coarse_index, weights=sample.sums, minlength=subset.size + 1)
    return BinnedSample(edges=subset, counts=counts, sums=sums, nulls=sample.nulls, sum_sq=sample.sum_sq,
                        shift=sample.shift)
