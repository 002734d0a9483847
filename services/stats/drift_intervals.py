"""Sample-size-aware drift: bootstrap intervals of the drift statistics, their noise level, verdict modes.

A fixed threshold on a drift distance misfires both ways: on a 300-row day sampling noise alone
crosses 0.1, on a 2M-row week a shift nobody cares about is "significant". This module puts each
statistic in its sampling context, from the same aggregates `services.stats.drift` uses (nothing
here sees a row):

* **Interval** -- a multinomial bootstrap over the binned counts of *both* samples: the reference
  is redrawn at its own size from its observed bin shares, the window at its own size from its
  shares, and the statistic is recomputed on every pair of draws. Percentile interval (95 % by
  default). Numerical statistics come from the fine `BinnedSample` on the reference's 1000-quantile
  edges (KS, normed Wasserstein) and its decile coarsening (PSI, Jensen-Shannon), exactly as
  `services.stats.drift` computes them; categorical ones (PSI, JS) from the counts over the union
  of categories.
* **Noise level** (the minimum detectable shift) -- the statistic's ``confidence`` quantile (95th
  percentile by default) when there is no drift: the reference redrawn at its own size against the
  reference redrawn at the *window's* size. A distance below it cannot be told from sampling noise.
* **Verdict modes** -- ``fixed`` (the statistic against its threshold, today's verdicts),
  ``beyond_noise`` (the interval's lower end above the noise level), ``material`` (the lower end
  above a practical threshold the user sets).

**Bin means in the bootstrap.** KS, PSI and JS need only counts. The Wasserstein model of
`two_sample.wasserstein_1` also needs each bin's mean (``sum / count``); a redrawn sample keeps the
observed mean of every bin (the one of the side it came from; pooled over both sides where a bin is
empty on one side, which only matters for the noise draws). The reference's standard deviation (the
Wasserstein norm) is redrawn too: its between-bin part from the redrawn shares, its within-bin part
held at the observed value. Held at the observed counts, every replicate formula gives exactly the
statistic `services.stats.drift` reports.

**Effect size of p-value methods.** ``beyond_noise`` and ``material`` judge a distance, never a
p-value: for ``ks`` the KS statistic, for ``chisquare`` and ``z`` the Jensen-Shannon distance over
the same categories (`effect_statistic`). A p-value already mixes the effect with the sample size,
which is what these modes take apart.

**Seeds.** Every draw is seeded from stable inputs (`stable_seed`: a hash of e.g. the reference id,
the column, the window bounds), so a report gives the same interval whatever was computed before it.
The reference draws depend on the reference seed only and the noise draws on the reference seed and
the window's size, so every window of a backfill shares them (`reference_draws` keeps the last few).

**Cost.** Draws are exact (``Generator.multinomial``; bin indices of uniform numbers when a sample
has fewer rows than bins) except for samples so large that every bin expects 5 rows or more, which
use the multinomial's normal approximation (same mean and covariance; `_draw`). The statistics are
vectorised over replicates (an ``(R, bins)`` array per side); 200 replicates on 1000 bins cost a few
ms per statistic.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import distance

from services.stats.histogram import BinnedSample
from services.stats.two_sample import check_same_edges

__all__ = [
    "CATEGORICAL_STATISTICS",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_REPLICATES",
    "NUMERICAL_STATISTICS",
    "VERDICT_MODES",
    "EffectInterval",
    "categorical_intervals",
    "decide",
    "deciding_threshold",
    "effect_statistic",
    "numerical_intervals",
    "stable_seed",
    "too_small_to_tell",
]

NUMERICAL_STATISTICS = ("wasserstein", "jensenshannon", "psi", "ks")
CATEGORICAL_STATISTICS = ("jensenshannon", "psi")
VERDICT_MODES = ("fixed", "beyond_noise", "material")
DISTANCE_METHODS = ("wasserstein", "jensenshannon", "psi")
DEFAULT_REPLICATES = 200
DEFAULT_CONFIDENCE = 0.95
STD_FLOOR = 0.001  # Evidently's floor on the reference std (services.stats.drift.STD_FLOOR)
_CHUNK = 256  # replicates per vectorised block: bounds the (R, bins, 5) Wasserstein arrays to ~10 MB


@dataclass(frozen=True)
class EffectInterval:
    """One statistic of one window: its value, bootstrap interval and noise level (None: a side empty)."""

    statistic: str  # "wasserstein" (normed), "jensenshannon", "psi" or "ks" (the KS statistic)
    value: float | None
    lower: float | None
    upper: float | None
    noise: float | None  # the statistic's `confidence` quantile under no drift at the window's size
    confidence: float
    replicates: int


# --- seeds and draws ---------------------------------------------------------------------------------


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from the text of ``parts`` (SHA-256), the same in every process and order."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


NORMAL_MIN_EXPECTED = 5.0
"""Every occupied bin expects at least this many rows: draw from the multinomial's normal approximation."""


def _draw(counts: np.ndarray, n: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``replicates`` draws of ``n`` rows over the bins at the shares of ``counts`` (an (R, bins) array).

    Exact (``Generator.multinomial``; each row's bin by ``searchsorted`` when there are fewer rows than
    bins), except when every occupied bin expects ``NORMAL_MIN_EXPECTED`` rows or more: then the
    multinomial's normal approximation with the same mean and covariance, ``n p + sqrt(n) (sqrt(p) z -
    p sum(sqrt(p) z))``, z standard normal per bin (one normal per bin instead of a binomial: ~6x faster).
    Every statistic here is a function of sums over many bins (cumulative shares, decile counts), which
    the normal law describes well long before each bin does; tests/stats checks the intervals against
    exact draws at 8 rows per bin. Row sums stay exactly n.
    """
    counts = np.asarray(counts, dtype=float)
    out = np.zeros((replicates, counts.size))
    occupied = np.flatnonzero(counts > 0)
    if n == 0 or occupied.size == 0:
        return out
    shares = counts[occupied] / counts[occupied].sum()
    if n * shares.min() >= NORMAL_MIN_EXPECTED:
        root = np.sqrt(shares)
        z = rng.standard_normal((replicates, occupied.size)) * root
        drawn = np.maximum(n * shares + math.sqrt(n) * (z - np.outer(z.sum(axis=1), shares)), 0.0)  # 4.5 sd: ~never
    elif n < occupied.size:
        # Fewer rows than bins: drawing each row's bin is cheaper than a binomial per bin, and exact.
        cumulative = np.cumsum(shares)
        index = np.minimum(np.searchsorted(cumulative, rng.random((replicates, n)) * cumulative[-1], side="right"),
                           occupied.size - 1)
        flat = (index + occupied.size * np.arange(replicates)[:, None]).ravel()
        drawn = np.bincount(flat, minlength=replicates * occupied.size).reshape(replicates, occupied.size)
    else:
        drawn = rng.multinomial(n, shares, size=replicates)
    out[:, occupied] = drawn
    return out


_REFERENCE_DRAWS: OrderedDict[tuple[int, int, int, bytes], np.ndarray] = OrderedDict()
_REFERENCE_DRAWS_KEPT = 32


def forget_reference_draws() -> None:
    """Drop the kept reference draws (benchmarks time a cold start; tests check order independence)."""
    _REFERENCE_DRAWS.clear()


def reference_draws(counts: np.ndarray, seed: int, replicates: int, stream: int = 0) -> np.ndarray:
    """The reference redrawn at its own size, ``replicates`` times, from ``seed`` (a pure function of its
    arguments; the last few results are kept because every window of a backfill asks for the same)."""
    counts = np.asarray(counts, dtype=np.int64)
    key = (seed, replicates, stream, hashlib.sha256(counts.tobytes()).digest())
    kept = _REFERENCE_DRAWS.get(key)
    if kept is not None:
        _REFERENCE_DRAWS.move_to_end(key)
        return kept
    drawn = _draw(counts, int(counts.sum()), replicates, np.random.default_rng([seed, stream]))
    drawn.setflags(write=False)
    _REFERENCE_DRAWS[key] = drawn
    while len(_REFERENCE_DRAWS) > _REFERENCE_DRAWS_KEPT:
        _REFERENCE_DRAWS.popitem(last=False)
    return drawn


# --- statistics over replicates (rows of an (R, bins) count array) ------------------------------------


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    """Evidently's epsilon for empty bins, row by row (``two_sample._fill_zeroes`` vectorised)."""
    positive = np.where(shares > 0, shares, np.inf)
    smallest = positive.min(axis=1, keepdims=True)
    epsilon = np.where(smallest <= 0.0001, smallest / 10**6, 0.0001)
    return np.where(shares == 0, epsilon, shares)


def _psi_rows(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    p = _fill_zeroes(ref / ref.sum(axis=1, keepdims=True))
    q = _fill_zeroes(cur / cur.sum(axis=1, keepdims=True))
    result: np.ndarray = np.sum((p - q) * np.log(p / q), axis=1)
    return result


def _js_rows(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    p = ref / ref.sum(axis=1, keepdims=True)
    q = cur / cur.sum(axis=1, keepdims=True)
    js: np.ndarray = distance.jensenshannon(p, q, axis=1)
    result: np.ndarray = np.nan_to_num(js, nan=0.0)  # scipy gives NaN for two identical one-bin rows: distance 0
    return result


def _ks_rows(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    if ref.shape[1] == 1:
        return np.zeros(ref.shape[0])
    f_ref = np.cumsum(ref, axis=1)[:, :-1] / ref.sum(axis=1, keepdims=True)
    f_cur = np.cumsum(cur, axis=1)[:, :-1] / cur.sum(axis=1, keepdims=True)
    result: np.ndarray = np.max(np.abs(f_ref - f_cur), axis=1)
    return result


def _in_bin_cdf(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, left_limit: bool) -> np.ndarray:
    """CDF of uniform[lo, hi] (a point mass when lo == hi) at x, or its left limit (as two_sample's)."""
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        ramp = np.clip((x - lo) / np.where(width > 0, width, 1.0), 0.0, 1.0)
    step = (x > lo) if left_limit else (x >= lo)
    return np.where(width > 0, ramp, step.astype(float))


def _abs_linear_integral(d0: np.ndarray, d1: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Per row: the sum over its segments of the integral of ``|d|``, ``d`` linear from d0 to d1 on each
    (``(|d0| + |d1|) / 2`` times the length where the sign holds, ``(d0^2 + d1^2) / (2 (|d0| + |d1|))``
    where it crosses zero)."""
    total = np.abs(d0) + np.abs(d1)
    crossing = np.nonzero(d0 * d1 < 0)
    total[crossing] = (d0[crossing] ** 2 + d1[crossing] ** 2) / total[crossing]
    result: np.ndarray = (total * length).sum(axis=1) / 2
    return result


@dataclass(frozen=True)
class _WassersteinModel:
    """What `two_sample.wasserstein_1` fixes once the bin means are fixed: only the shares move.

    Inside interior bin ``[a, b)`` each sample's CDF is ``before + share * u(x)``, ``u`` the CDF of the
    interval its mass is spread on, which depends on the bin mean ``m`` only; so the points where
    ``d = F_ref - F_cur`` is integrated piecewise-linearly, and ``u`` at them, are computed once.
    A replicate changes ``before`` and ``share`` only. Where ``d`` cannot change sign inside a bin
    (``gap - share_cur >= 0`` or ``gap + share_ref <= 0``, ``gap`` the difference of the ``before``s),
    ``integral |d| = |integral d| = |gap (b - a) + share_ref (b - m_ref) - share_cur (b - m_cur)|``;
    only the other (replicate, bin) pairs are integrated segment by segment, exactly as wasserstein_1.
    """

    edges: np.ndarray
    ref_means: np.ndarray  # per bin, tails included
    cur_means: np.ndarray
    u: tuple[np.ndarray, ...]  # in-bin CDFs of ref and cur at segment starts and ends, (bins-2, 5) each
    length: np.ndarray  # (bins-2, 5)
    width: np.ndarray  # b - a per interior bin
    ref_area: np.ndarray  # integral of u_ref over the bin: b - m_ref
    cur_area: np.ndarray
    within_var: float  # reference variance inside the bins, held fixed

    @staticmethod
    def build(edges: np.ndarray, ref_means: np.ndarray, cur_means: np.ndarray, within_var: float
              ) -> _WassersteinModel:
        if edges.size < 2:
            empty = np.zeros((0, 5))
            return _WassersteinModel(edges, ref_means, cur_means, (empty,) * 4, empty, np.zeros(0), np.zeros(0),
                                     np.zeros(0), within_var)
        a, b = edges[:-1], edges[1:]

        def spread(means: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            m = np.clip(means[1:-1], a, b)
            half = np.minimum(m - a, b - m)
            return m - half, m + half, b - m

        r_lo, r_hi, r_area = spread(ref_means)
        c_lo, c_hi, c_area = spread(cur_means)
        points = np.sort(np.stack([a, r_lo, r_hi, c_lo, c_hi, b], axis=1), axis=1)
        start, end = points[:, :-1], points[:, 1:]
        u = (_in_bin_cdf(start, r_lo[:, None], r_hi[:, None], left_limit=False),
             _in_bin_cdf(end, r_lo[:, None], r_hi[:, None], left_limit=True),
             _in_bin_cdf(start, c_lo[:, None], c_hi[:, None], left_limit=False),
             _in_bin_cdf(end, c_lo[:, None], c_hi[:, None], left_limit=True))
        return _WassersteinModel(edges, ref_means, cur_means, u, end - start, b - a, r_area, c_area, within_var)

    def normed(self, ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """Normed Wasserstein distance per replicate (row) of the two count arrays."""
        r = ref / ref.sum(axis=1, keepdims=True)
        c = cur / cur.sum(axis=1, keepdims=True)
        edges = self.edges
        if edges.size == 0:
            w1 = np.abs(r[:, 0] * self.ref_means[0] - c[:, 0] * self.cur_means[0])
        else:
            def low(s: np.ndarray, m: np.ndarray) -> np.ndarray:
                result: np.ndarray = np.maximum(s[:, 0] * (edges[0] - m[0]), 0.0)
                return result

            def high(s: np.ndarray, m: np.ndarray) -> np.ndarray:
                result: np.ndarray = np.maximum(s[:, -1] * (m[-1] - edges[-1]), 0.0)
                return result

            w1 = np.abs(low(r, self.ref_means) - low(c, self.cur_means)) + \
                np.abs(high(r, self.ref_means) - high(c, self.cur_means))
            if edges.size > 1:
                gap = np.cumsum(r - c, axis=1)[:, :-2]
                r_share, c_share = r[:, 1:-1], c[:, 1:-1]
                signed = gap * self.width + r_share * self.ref_area - c_share * self.cur_area
                crossing = (gap - c_share < 0) & (gap + r_share > 0)
                signed[crossing] = 0.0
                w1 = w1 + np.abs(signed).sum(axis=1)
                rows, bins = np.nonzero(crossing)
                if rows.size:
                    u_r0, u_r1, u_c0, u_c1 = (u[bins] for u in self.u)
                    g, rs, cs = gap[rows, bins][:, None], r_share[rows, bins][:, None], c_share[rows, bins][:, None]
                    exact = _abs_linear_integral(g + rs * u_r0 - cs * u_c0, g + rs * u_r1 - cs * u_c1,
                                                 self.length[bins])
                    w1 = w1 + np.bincount(rows, weights=exact, minlength=r.shape[0])
        mean = r @ self.ref_means
        between = r @ (self.ref_means ** 2) - mean ** 2
        std = np.sqrt(np.maximum(between + self.within_var, 0.0))
        result: np.ndarray = w1 / np.maximum(std, STD_FLOOR)
        return result


def _bin_means(sample: BinnedSample, other: BinnedSample) -> np.ndarray:
    """Each bin's observed mean; pooled over both samples where this one is empty; the left edge if both."""
    left = np.concatenate([[sample.edges[0] if sample.edges.size else 0.0], sample.edges])
    count, total = sample.counts.astype(float), sample.sums
    pooled_count, pooled_sum = count + other.counts, total + other.sums
    with np.errstate(divide="ignore", invalid="ignore"):
        own = total / count
        pooled = pooled_sum / pooled_count
    means: np.ndarray = np.where(count > 0, own, np.where(pooled_count > 0, pooled, left))
    return means


def _within_variance(reference: BinnedSample, means: np.ndarray) -> float:
    share = reference.counts / reference.n
    mean = float(share @ means)
    between = float(share @ means ** 2) - mean ** 2
    return max(float(reference.std or 0.0) ** 2 - between, 0.0)


def _interval(statistic: str, value: float | None, boot: np.ndarray | None, null: np.ndarray | None,
              confidence: float, replicates: int) -> EffectInterval:
    if value is None or boot is None or null is None:
        return EffectInterval(statistic, None, None, None, None, confidence, replicates)
    alpha = 1.0 - confidence
    lower, upper = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return EffectInterval(statistic, float(value), float(lower), float(upper),
                          float(np.quantile(null, confidence)), confidence, replicates)


def _check(replicates: int, confidence: float) -> None:
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or replicates < 2:
        raise ValueError("replicates must be a whole number of at least 2")
    if not (isinstance(confidence, (int, float)) and 0.5 <= confidence < 1):
        raise ValueError("confidence must be in [0.5, 1)")


def _in_chunks(ref: np.ndarray, cur: np.ndarray, fn: object) -> np.ndarray:
    parts = [fn(ref[i:i + _CHUNK], cur[i:i + _CHUNK]) for i in range(0, ref.shape[0], _CHUNK)]  # type: ignore[operator]
    return np.concatenate(parts) if parts else np.empty(0)


# --- public entry points ---------------------------------------------------------------------------


def numerical_intervals(reference: BinnedSample, current: BinnedSample, *, deciles: np.ndarray,
                        reference_seed: int, window_seed: int, replicates: int = DEFAULT_REPLICATES,
                        confidence: float = DEFAULT_CONFIDENCE,
                        statistics: Iterable[str] = NUMERICAL_STATISTICS) -> dict[str, EffectInterval]:
    """Interval and noise level of each numerical drift statistic asked for (see the module docstring).

    ``reference`` and ``current`` are fine histograms on the same edges, ``deciles`` the reference
    deciles (a subset of the edges) on which PSI and JS are computed. ``reference_seed`` seeds the
    reference draws and, with the window's size, the noise draws; ``window_seed`` the window's draws.
    A side without rows gives every field None.
    """
    _check(replicates, confidence)
    check_same_edges(reference, current)
    wanted = tuple(dict.fromkeys(statistics))
    unknown = set(wanted) - set(NUMERICAL_STATISTICS)
    if unknown:
        raise ValueError(f"unknown numerical statistics: {sorted(unknown)}")
    if reference.n == 0 or current.n == 0:
        return {s: _interval(s, None, None, None, confidence, replicates) for s in wanted}

    ref_boot = reference_draws(reference.counts, reference_seed, replicates)
    cur_boot = _draw(current.counts, current.n, replicates, np.random.default_rng([window_seed, 1]))
    null_cur = _draw(reference.counts, current.n, replicates, np.random.default_rng([reference_seed, current.n, 2]))
    observed = (reference.counts[None, :], current.counts[None, :])

    # Fine bin -> decile bin (as histogram.coarsen); every decile bin holds at least one fine bin, and
    # fine bins are in order, so one reduceat per draw array gives the coarse counts.
    subset = np.unique(np.asarray(deciles, dtype=float).reshape(-1))
    coarse_index = np.searchsorted(subset, np.concatenate([[-np.inf], reference.edges]), side="right")
    firsts = np.searchsorted(coarse_index, np.arange(subset.size + 1), side="left")

    def coarse(fn: object) -> object:
        return lambda r, c: fn(np.add.reduceat(r, firsts, axis=1), np.add.reduceat(c, firsts, axis=1))  # type: ignore[operator]

    functions: dict[str, object] = {"psi": coarse(_psi_rows), "jensenshannon": coarse(_js_rows), "ks": _ks_rows}
    if "wasserstein" in wanted:
        ref_means = _bin_means(reference, current)
        within = _within_variance(reference, ref_means)
        boot_model = _WassersteinModel.build(reference.edges, ref_means, _bin_means(current, reference), within)
        null_model = _WassersteinModel.build(reference.edges, ref_means, ref_means, within)
    result: dict[str, EffectInterval] = {}
    for statistic in wanted:
        if statistic == "wasserstein":
            value = float(boot_model.normed(*observed)[0])
            boot = _in_chunks(ref_boot, cur_boot, boot_model.normed)
            null = _in_chunks(ref_boot, null_cur, null_model.normed)
        else:
            fn = functions[statistic]
            value = float(fn(*observed)[0])  # type: ignore[operator]
            boot, null = _in_chunks(ref_boot, cur_boot, fn), _in_chunks(ref_boot, null_cur, fn)
        result[statistic] = _interval(statistic, value, boot, null, confidence, replicates)
    return result


def categorical_intervals(reference_counts: Mapping[Any, int], current_counts: Mapping[Any, int], *,
                          reference_seed: int, window_seed: int, replicates: int = DEFAULT_REPLICATES,
                          confidence: float = DEFAULT_CONFIDENCE,
                          statistics: Iterable[str] = CATEGORICAL_STATISTICS) -> dict[str, EffectInterval]:
    """Interval and noise level of PSI and JS over category counts (``{category: count}``; the key None
    is the null count and is left out, as `services.stats.drift.categorical_drift` does). A category
    seen only in the window has reference share 0 in every draw (PSI's epsilon applies, as in the value).
    Categories are put in the order of their text so the draws do not depend on the maps' order."""
    _check(replicates, confidence)
    wanted = tuple(dict.fromkeys(statistics))
    unknown = set(wanted) - set(CATEGORICAL_STATISTICS)
    if unknown:
        raise ValueError(f"unknown categorical statistics: {sorted(unknown)}")
    ref_map = {str(k): int(v) for k, v in reference_counts.items() if k is not None and v}
    cur_map = {str(k): int(v) for k, v in current_counts.items() if k is not None and v}
    if any(v < 0 for v in (*ref_map.values(), *cur_map.values())):
        raise ValueError("category counts must be non-negative")
    keys = sorted(set(ref_map) | set(cur_map))
    ref = np.array([ref_map.get(k, 0) for k in keys], dtype=np.int64)
    cur = np.array([cur_map.get(k, 0) for k in keys], dtype=np.int64)
    n_ref, n_cur = int(ref.sum()), int(cur.sum())
    if n_ref == 0 or n_cur == 0:
        return {s: _interval(s, None, None, None, confidence, replicates) for s in wanted}
    ref_boot = reference_draws(ref, reference_seed, replicates)
    cur_boot = _draw(cur, n_cur, replicates, np.random.default_rng([window_seed, 1]))
    null_cur = _draw(ref, n_cur, replicates, np.random.default_rng([reference_seed, n_cur, 2]))
    functions = {"psi": _psi_rows, "jensenshannon": _js_rows}
    result: dict[str, EffectInterval] = {}
    for statistic in wanted:
        fn = functions[statistic]
        value = float(fn(ref[None, :].astype(float), cur[None, :].astype(float))[0])
        result[statistic] = _interval(statistic, value, _in_chunks(ref_boot, cur_boot, fn),
                                      _in_chunks(ref_boot, null_cur, fn), confidence, replicates)
    return result


# --- verdicts ------------------------------------------------------------------------------------------


def effect_statistic(method: str) -> str:
    """The distance that ``beyond_noise``/``material`` judge for a verdict method: the method itself
    for distances, the KS statistic for ``ks``, the Jensen-Shannon distance for ``chisquare`` and ``z``."""
    if method in DISTANCE_METHODS:
        return method
    if method == "ks":
        return "ks"
    if method in ("chisquare", "z"):
        return "jensenshannon"
    raise ValueError(f"unknown drift method {method!r}")


def deciding_threshold(mode: str, method: str, threshold: float, material: float | None) -> float | None:
    """The distance a window must be able to resolve for its verdict to mean something: the material
    threshold in ``material`` mode, else the verdict threshold when the method is a distance. None for a
    p-value method outside ``material`` mode (a test already accounts for the window's size)."""
    if mode == "material":
        return material
    return threshold if method in DISTANCE_METHODS else None


def decide(mode: str, *, fixed: bool | None, effect: EffectInterval | None,
           material: float | None = None) -> bool | None:
    """The drift verdict of ``mode``: ``fixed`` returns ``fixed`` (the statistic against its threshold);
    ``beyond_noise``: lower end > noise level; ``material``: lower end > ``material``. None when the
    window cannot be judged (a side empty)."""
    if mode == "fixed":
        return fixed
    if mode not in VERDICT_MODES:
        raise ValueError(f"unknown verdict mode {mode!r}")
    if effect is None or effect.lower is None or effect.noise is None:
        return None
    if mode == "beyond_noise":
        return bool(effect.lower > effect.noise)
    if material is None:
        raise ValueError("the material verdict needs a material threshold")
    return bool(effect.lower > material)


def too_small_to_tell(effect: EffectInterval | None, deciding: float | None) -> bool | None:
    """True when the noise level is at or above the threshold that decides: the window is too small to
    tell drift of that size from noise. None when there is no noise level or no deciding threshold."""
    if effect is None or effect.noise is None or deciding is None:
        return None
    return bool(effect.noise >= deciding)

