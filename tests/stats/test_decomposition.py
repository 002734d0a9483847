"""Segment bars of a rate metric's change: they add up to the change, each equals w'm' - wm computed
independently with pandas on raw rows, and mix + rate make up each bar."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from services.stats.decomposition import decompose, largest_rate_part, lump


def rows(seed: int, n: int, mix: list[float], rates: dict[str, float]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(list(rates), n, p=mix)
    correct = rng.random(n) < np.array([rates[g] for g in group])
    return pd.DataFrame({"group": group, "correct": correct.astype(float)})


def sums(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    g = frame.groupby("group")["correct"]
    return (g.sum().reindex(names, fill_value=0).to_numpy(float),
            g.count().reindex(names, fill_value=0).to_numpy(float))


def test_the_bars_add_up_to_the_change_and_each_equals_the_pandas_weight_times_rate():
    before = rows(1, 5000, [0.5, 0.3, 0.2], {"a": 0.9, "b": 0.8, "c": 0.7})
    after = rows(2, 3000, [0.2, 0.3, 0.5], {"a": 0.9, "b": 0.6, "c": 0.7})
    names = ["a", "b", "c"]
    d = decompose(names, *sums(before, names), *sums(after, names))
    assert math.isclose(d.before, before["correct"].mean(), abs_tol=1e-12)
    assert math.isclose(d.after, after["correct"].mean(), abs_tol=1e-12)
    assert abs(sum(c.contribution for c in d.contributions) - d.change) < 1e-9
    for c in d.contributions:
        w0 = (before["group"] == c.group).mean()
        w1 = (after["group"] == c.group).mean()
        m0 = before.loc[before["group"] == c.group, "correct"].mean()
        m1 = after.loc[after["group"] == c.group, "correct"].mean()
        assert abs(c.contribution - (w1 * m1 - w0 * m0)) < 1e-12
        assert abs(c.mix + c.rate - c.contribution) < 1e-12
        assert abs(c.rate - (w0 + w1) / 2 * (m1 - m0)) < 1e-12
    # Largest bar first; b's own rate fell, so it has the largest rate part.
    assert [abs(c.contribution) for c in d.contributions] == sorted((abs(c.contribution) for c in d.contributions),
                                                                     reverse=True)
    b = next(c for c in d.contributions if c.group == "b")
    assert largest_rate_part(d) == abs(b.rate) and b.rate < 0


def test_a_segment_in_one_window_only_is_all_mix():
    d = decompose(["old", "new"], [80, 0], [100, 0], [40, 10], [50, 50])
    new = next(c for c in d.contributions if c.group == "new")
    assert new.rate_before is None and new.rate == 0 and math.isclose(new.mix, 0.5 * 0.2)
    assert abs(sum(c.contribution for c in d.contributions) - d.change) < 1e-12
    assert math.isclose(d.change, 50 / 100 - 80 / 100)


def test_lumping_the_small_segments_keeps_the_sum_exact():
    rng = np.random.default_rng(5)
    names = [f"g{i}" for i in range(40)]
    n0, n1 = rng.integers(1, 200, 40).astype(float), rng.integers(1, 200, 40).astype(float)
    k0, k1 = np.floor(n0 * rng.random(40)), np.floor(n1 * rng.random(40))
    full = decompose(names, k0, n0, k1, n1)
    kept = lump(names, k0, n0, k1, n1, keep=5)
    assert len(kept.contributions) == 6
    assert set(kept.groups) == {*full.groups[:5], "other (35)"}
    assert abs(sum(c.contribution for c in kept.contributions) - full.change) < 1e-12
    other = next(c for c in kept.contributions if c.group == "other (35)")
    assert math.isclose(other.contribution, sum(c.contribution for c in full.contributions[5:]), abs_tol=1e-12)


@pytest.mark.parametrize("bad", [
    (["a", "a"], [1, 1], [2, 2], [1, 1], [2, 2]),
    (["a"], [float("nan")], [2], [1], [2]),
    (["a"], [1], [float("inf")], [1], [2]),
    (["a"], [1], [-2], [1], [2]),
    (["a"], [0], [0], [1], [2]),
    (["a", "b"], [1], [2], [1], [2]),
])
def test_bad_input_is_refused_with_a_reason(bad):
    with pytest.raises(ValueError, match="once|finite|negative|empty|one value per group"):
        decompose(*bad)
