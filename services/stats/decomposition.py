"""How much each segment contributed to the change of a rate metric between two windows.

A rate metric is a weighted mean over a partition of the rows into segments: with ``k_s`` the
segment's numerator (correct predictions, positive predictions, summed absolute errors …) and
``n_s`` its denominator (labelled rows, predictions …), ``m_s = k_s / n_s``, ``w_s = n_s / N`` and

    M = sum_s w_s m_s = sum_s k_s / N.

Between a baseline window (unprimed) and the alert window (primed) the change splits exactly into
one bar per segment::

    dM = M' - M = sum_s c_s,    c_s = w'_s m'_s - w_s m_s = k'_s / N' - k_s / N

and each bar into a **mix** part (the segment's share of the rows moved) and a **rate** part (its
own metric moved), shift-share with midpoint averages so the two add up to the bar exactly::

    c_s = (w'_s - w_s) (m_s + m'_s) / 2  +  (w_s + w'_s) / 2 (m'_s - m_s)

A segment absent from one window has no rate there; it is taken equal to its rate in the other
window, so its whole bar is mix (it appeared or vanished). Only metrics that are such means
decompose this way (accuracy, error rate, precision, recall, selection rate, MAE, MSE); ROC AUC,
F1 and RMSE are not means of per-segment values and have no exact segment bars.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OTHER = "other"  # the name of the merged small segments (lump)


@dataclass(frozen=True)
class Contribution:
    """One segment's bar: its weights and rates in both windows, its bar and the bar's two parts.

    ``rate_before``/``rate_after`` are None where the segment has no rows (its weight is then 0).
    """

    group: str
    weight_before: float
    weight_after: float
    rate_before: float | None
    rate_after: float | None
    contribution: float
    mix: float
    rate: float
    rows_before: float
    rows_after: float


@dataclass(frozen=True)
class Decomposition:
    """``before``/``after``: the metric over all rows of each window; ``change`` = after - before, the
    sum of the bars. ``contributions`` are ordered by absolute contribution, largest first."""

    before: float
    after: float
    change: float
    contributions: tuple[Contribution, ...]

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(c.group for c in self.contributions)


def _array(values: Sequence[float] | np.ndarray, name: str, size: int) -> np.ndarray:
    out = np.asarray(values, dtype=float).reshape(-1)
    if out.size != size:
        raise ValueError(f"{name} needs one value per group ({size}), got {out.size}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} holds a value that is not a finite number")
    return out


def decompose(groups: Sequence[str], sums_before: Sequence[float] | np.ndarray,
              counts_before: Sequence[float] | np.ndarray, sums_after: Sequence[float] | np.ndarray,
              counts_after: Sequence[float] | np.ndarray) -> Decomposition:
    """The bars of ``M' - M`` per group, from each group's numerator (``sums``) and denominator
    (``counts``) in the baseline and the alert window.

    ValueError when the groups repeat, a number is not finite, a count is negative, or a window has
    no rows at all (its metric is undefined, so there is no change to explain).
    """
    names = [str(g) for g in groups]
    if len(set(names)) != len(names):
        raise ValueError("each group may appear once")
    size = len(names)
    k0, n0 = _array(sums_before, "sums_before", size), _array(counts_before, "counts_before", size)
    k1, n1 = _array(sums_after, "sums_after", size), _array(counts_after, "counts_after", size)
    if np.any(n0 < 0) or np.any(n1 < 0):
        raise ValueError("counts must not be negative")
    total0, total1 = float(n0.sum()), float(n1.sum())
    if total0 <= 0 or total1 <= 0:
        raise ValueError("a window without rows has no metric: " + ("the baseline" if total0 <= 0 else
                                                                    "the alert window") + " is empty")
    before, after = float(k0.sum()) / total0, float(k1.sum()) / total1
    bars = []
    for i, name in enumerate(names):
        if n0[i] == 0 and n1[i] == 0:
            continue  # in neither window: no bar
        w0, w1 = n0[i] / total0, n1[i] / total1
        r0 = k0[i] / n0[i] if n0[i] > 0 else None
        r1 = k1[i] / n1[i] if n1[i] > 0 else None
        m0 = r0 if r0 is not None else r1
        m1 = r1 if r1 is not None else r0
        assert m0 is not None and m1 is not None  # one of the two windows has rows
        contribution = k1[i] / total1 - k0[i] / total0
        bars.append(Contribution(name, float(w0), float(w1), None if r0 is None else float(r0),
                                 None if r1 is None else float(r1), float(contribution),
                                 float((w1 - w0) * (m0 + m1) / 2), float((w0 + w1) / 2 * (m1 - m0)),
                                 float(n0[i]), float(n1[i])))
    bars.sort(key=lambda c: (-abs(c.contribution), c.group))
    return Decomposition(before, after, after - before, tuple(bars))


def lump(groups: Sequence[str], sums_before: Sequence[float] | np.ndarray, counts_before: Sequence[float] | np.ndarray,
         sums_after: Sequence[float] | np.ndarray, counts_after: Sequence[float] | np.ndarray,
         keep: int) -> Decomposition:
    """:func:`decompose` with only the ``keep`` largest bars kept and every other segment merged into
    one segment named ``other (n)``: the bars still add up to the change exactly (a merged segment's
    bar is the sum of its members' bars; its mix and rate parts are those of the merged segment)."""
    if keep < 1:
        raise ValueError("keep at least one group")
    full = decompose(groups, sums_before, counts_before, sums_after, counts_after)
    if len(full.contributions) <= keep + 1:
        return full
    kept = set(full.groups[:keep])
    names = [str(g) for g in groups]
    arrays = [np.asarray(a, dtype=float).reshape(-1) for a in (sums_before, counts_before, sums_after, counts_after)]
    inside = np.array([n in kept for n in names])
    merged = [np.append(a[inside], a[~inside].sum()) for a in arrays]
    rest = len(full.contributions) - keep
    other = f"{OTHER} ({rest})"
    while other in kept:  # a real segment with that very name: never merge into it by accident
        other += "*"
    return decompose([*(n for n in names if n in kept), other], *merged)


def largest_rate_part(decomposition: Decomposition) -> float:
    """How well a partition isolates the change: the largest absolute rate part of its bars (a segment
    whose own metric moved), 0 for none. Mix parts are left out: a moved mix of segments shows large
    bars of opposite signs that explain little on their own."""
    parts = [abs(c.rate) for c in decomposition.contributions if math.isfinite(c.rate)]
    return max(parts, default=0.0)
