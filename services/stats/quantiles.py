"""Quantiles (latency p50/p95/p99, reference edges) when the SQL dialect has no quantile function.

Two ways, both from small query results:

* **From a fine histogram** (``bin_sample`` semantics: bin = number of edges ``<= x``) on fixed
  log-spaced edges (`log_edges`): the quantile is interpolated linearly inside the bin where the
  cumulative count reaches ``p * n`` (Prometheus' ``histogram_quantile`` rule). Its error is at most
  the width of that bin, i.e. a relative error below ``ratio - 1`` with `log_edges`. The open tail
  bins are closed with the observed ``MIN(x)``/``MAX(x)`` if given, else the quantile is clamped to
  the outer edge.
* **Exactly**, as numpy's default (``method="linear"``): position ``h = (n - 1) * p``, the order
  statistics at ``floor(h)`` and ``floor(h) + 1`` (0-based; ``ORDER BY x LIMIT 2 OFFSET floor(h)``, or a
  window function), interpolated with the fraction ``h - floor(h)``. This is also how SQL builds the
  reference edges by sorting once (see docs/ARCHITECTURE.md, measured facts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from services.stats.histogram import BinnedSample

__all__ = [
    "LatencyPercentiles",
    "exact_quantiles",
    "histogram_quantiles",
    "latency_percentiles",
    "log_edges",
    "quantile_positions",
]


@dataclass(frozen=True)
class LatencyPercentiles:
    n: int
    p50: float | None
    p95: float | None
    p99: float | None


def log_edges(start: float = 0.1, stop: float = 600_000.0, ratio: float = 1.02) -> np.ndarray:
    """Geometric edges ``start * ratio**i`` up to the first one ``>= stop`` (latency in ms: 0.1 ms .. 10 min).

    Interpolated quantiles inside ``[start, stop)`` are then within a relative ``ratio - 1`` of the truth.
    """
    if start <= 0 or stop <= start or ratio <= 1:
        raise ValueError("need 0 < start < stop and ratio > 1")
    count = math.ceil(math.log(stop / start) / math.log(ratio)) + 1
    return start * ratio ** np.arange(count)


def histogram_quantiles(edges: np.ndarray, counts: np.ndarray, probabilities: np.ndarray | list[float], *,
                        lower: float | None = None, upper: float | None = None) -> list[float | None]:
    """Quantiles interpolated inside the histogram's bins; None for every p when the histogram is empty.

    ``counts`` has ``len(edges) + 1`` bins (open tails included); ``lower``/``upper`` are the observed
    minimum and maximum, used to close the tail bins.
    """
    edges = np.asarray(edges, dtype=float).reshape(-1)
    counts = np.asarray(counts, dtype=float).reshape(-1)
    if counts.size != edges.size + 1:
        raise ValueError(f"{edges.size} edges need {edges.size + 1} counts, got {counts.size}")
    probabilities = np.asarray(probabilities, dtype=float).reshape(-1)
    if np.any((probabilities < 0) | (probabilities > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    n = counts.sum()
    if n <= 0 or edges.size == 0:
        if n > 0 and lower is not None and upper is not None:
            return [float(lower + (upper - lower) * p) for p in probabilities]
        return [None] * probabilities.size
    low_edge = edges[0] if lower is None else min(float(lower), edges[0])
    high_edge = edges[-1] if upper is None else max(float(upper), edges[-1])
    starts = np.concatenate([[low_edge], edges])
    ends = np.concatenate([edges, [high_edge]])
    cumulative = np.cumsum(counts)
    result: list[float | None] = []
    for p in probabilities:
        rank = p * n
        i = int(np.searchsorted(cumulative, rank, side="left"))
        while counts[i] == 0:  # rank 0 lands on leading empty bins
            i += 1
        before = cumulative[i] - counts[i]
        fraction = min(max((rank - before) / counts[i], 0.0), 1.0)
        result.append(float(starts[i] + (ends[i] - starts[i]) * fraction))
    return result


def latency_percentiles(sample: BinnedSample, *, lower: float | None = None,
                        upper: float | None = None) -> LatencyPercentiles:
    """p50, p95 and p99 of a latency histogram (`histogram_quantiles`)."""
    p50, p95, p99 = histogram_quantiles(sample.edges, sample.counts, [0.5, 0.95, 0.99], lower=lower, upper=upper)
    return LatencyPercentiles(n=sample.n, p50=p50, p95=p95, p99=p99)


def quantile_positions(n: int, probabilities: np.ndarray | list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-based order statistics ``(lower_index, upper_index, fraction)`` numpy's linear quantile needs."""
    if n <= 0:
        raise ValueError("need at least one value")
    h = (n - 1) * np.asarray(probabilities, dtype=float)
    lower = np.floor(h).astype(np.int64)
    upper = np.minimum(lower + 1, n - 1)
    return lower, upper, h - lower


def exact_quantiles(lower_values: np.ndarray, upper_values: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Interpolate fetched neighbours exactly as ``np.quantile(method="linear")`` does (bit for bit).

    numpy's lerp is ``a + (b - a) * t``, computed from the upper side ``b - (b - a) * (1 - t)`` when
    ``t >= 0.5``.
    """
    a = np.asarray(lower_values, dtype=float)
    b = np.asarray(upper_values, dtype=float)
    t = np.asarray(fractions, dtype=float)
    diff = b - a
    result: np.ndarray = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    return result
