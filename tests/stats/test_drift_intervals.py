"""Bootstrap intervals, noise levels and verdict modes of the drift statistics (services/stats/drift_intervals.py).

Oracles are independent of our binning: a row-level bootstrap that resamples the raw rows with
replacement and recomputes each statistic from rows (scipy.stats.wasserstein_distance over the
resampled reference's np.std, scipy.stats.ks_2samp, numpy histograms at the reference deciles for
PSI and scipy's jensenshannon for JS).

Monte-Carlo tolerances, and why: with R replicates the 2.5 % / 97.5 % percentiles of a roughly
normal bootstrap distribution of spread s have a standard error of about
sqrt(0.025 * 0.975 / R) / phi(1.96) * s = 2.7 s / sqrt(R); at R = 1500 on both sides the difference
of two independent estimates has a standard error of ~0.10 s, i.e. 2.5 % of the interval's width
(3.92 s). We allow 10 % of the width per endpoint (4 standard errors; the seeds are fixed, so the
test is deterministic). Resampling only one side at equal sizes narrows the interval by 1 - 1/sqrt(2)
= 29 %, moving each endpoint by ~15 % of the width: outside the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from services.stats import drift_intervals
from services.stats.drift import categorical_drift, numerical_drift
from services.stats.drift_intervals import (
    EffectInterval,
    categorical_intervals,
    decide,
    deciding_threshold,
    effect_statistic,
    numerical_intervals,
    stable_seed,
    too_small_to_tell,
)
from services.stats.histogram import bin_sample, decile_edges, reference_edges


def _binned(ref: np.ndarray, cur: np.ndarray):
    edges = reference_edges(ref)
    return bin_sample(ref, edges), bin_sample(cur, edges), decile_edges(ref)


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    def fill(shares: np.ndarray) -> np.ndarray:
        smallest = shares[shares > 0].min()
        return np.where(shares == 0, smallest / 1e6 if smallest <= 1e-4 else 1e-4, shares)
    p, q = fill(ref_counts / ref_counts.sum()), fill(cur_counts / cur_counts.sum())
    return float(np.sum((p - q) * np.log(p / q)))


def _row_statistics(r: np.ndarray, c: np.ndarray, deciles: np.ndarray) -> dict[str, float]:
    bins = np.concatenate([[-np.inf], deciles, [np.inf]])
    hr, hc = np.histogram(r, bins)[0].astype(float), np.histogram(c, bins)[0].astype(float)
    return {"wasserstein": stats.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001),
            "ks": float(stats.ks_2samp(r, c).statistic),
            "psi": _psi(hr, hc),
            "jensenshannon": float(distance.jensenshannon(hr / hr.sum(), hc / hc.sum()))}


def _row_bootstrap(ref: np.ndarray, cur: np.ndarray, deciles: np.ndarray, replicates: int, seed: int,
                   null: bool = False) -> dict[str, np.ndarray]:
    """Rows resampled with replacement; ``null``: both samples drawn from the reference's rows."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {}
    for _ in range(replicates):
        r = rng.choice(ref, ref.size)
        c = rng.choice(ref if null else cur, cur.size)
        for name, value in _row_statistics(r, c, deciles).items():
            out.setdefault(name, []).append(value)
    return {k: np.array(v) for k, v in out.items()}


# --- the statistics themselves ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["normal_shift", "lognormal_tail", "integer_valued", "tiny"])
def test_value_at_the_observed_counts_is_the_reported_statistic(shape: str) -> None:
    """The vectorised replicate formulas, fed the observed counts, give what services.stats.drift reports."""
    rng = np.random.default_rng(7)
    ref, cur = {
        "normal_shift": (rng.normal(size=20_000), rng.normal(0.3, 1.2, 5_000)),
        "lognormal_tail": (rng.lognormal(0, 1.5, 20_000), rng.lognormal(0.2, 1.8, 3_000)),
        "integer_valued": (rng.poisson(30, 20_000).astype(float), rng.poisson(32, 4_000).astype(float)),
        "tiny": (rng.normal(size=40), rng.normal(0.5, 1, 25)),
    }[shape]
    reference, current, deciles = _binned(ref, cur)
    drift = numerical_drift(reference, current, deciles=deciles, method="wasserstein")
    got = numerical_intervals(reference, current, deciles=deciles, reference_seed=1, window_seed=2, replicates=20)
    assert got["wasserstein"].value == pytest.approx(drift.wasserstein_normed, rel=1e-9, abs=1e-12)
    assert got["ks"].value == pytest.approx(drift.ks_statistic, abs=1e-12)
    assert got["psi"].value == pytest.approx(drift.psi, abs=1e-12)
    assert got["jensenshannon"].value == pytest.approx(drift.js_distance, abs=1e-12)


def test_intervals_agree_with_a_row_level_bootstrap() -> None:
    rng = np.random.default_rng(2026)
    ref, cur = rng.normal(0, 1, 2_000), rng.normal(0.25, 1.15, 2_000)
    reference, current, deciles = _binned(ref, cur)
    ours = numerical_intervals(reference, current, deciles=deciles, reference_seed=11, window_seed=12,
                               replicates=1500)
    oracle = _row_bootstrap(ref, cur, deciles, 1500, seed=13)
    for name, boot in oracle.items():
        lower, upper = np.quantile(boot, [0.025, 0.975])
        width = upper - lower
        assert abs(ours[name].lower - lower) <= 0.1 * width, (name, ours[name], lower, upper)
        assert abs(ours[name].upper - upper) <= 0.1 * width, (name, ours[name], lower, upper)


def test_noise_level_agrees_with_a_row_level_null_simulation() -> None:
    """The noise level is the 95th percentile of the statistic between two draws of the reference rows
    (at the reference's and the window's sizes). Equal sizes on purpose: drawing both from one stream
    would give identical draws and a noise level of 0."""
    rng = np.random.default_rng(99)
    ref, cur = rng.normal(0, 1, 2_000), rng.normal(0.5, 1, 2_000)
    reference, current, deciles = _binned(ref, cur)
    ours = numerical_intervals(reference, current, deciles=deciles, reference_seed=5, window_seed=6, replicates=1500)
    null = _row_bootstrap(ref, cur, deciles, 1500, seed=7, null=True)
    for name, values in null.items():
        q95 = float(np.quantile(values, 0.95))
        spread = float(np.quantile(values, 0.975) - np.quantile(values, 0.5))
        assert abs(ours[name].noise - q95) <= 0.15 * spread, (name, ours[name].noise, q95)


def test_noise_level_shrinks_as_one_over_root_n() -> None:
    """Quadrupling the window (reference much larger) halves the KS and Wasserstein noise levels."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=200_000)
    edges, deciles = reference_edges(ref), decile_edges(ref)
    reference = bin_sample(ref, edges)
    small = numerical_intervals(reference, bin_sample(rng.normal(size=1_000), edges), deciles=deciles,
                                reference_seed=1, window_seed=2, replicates=400)
    large = numerical_intervals(reference, bin_sample(rng.normal(size=4_000), edges), deciles=deciles,
                                reference_seed=1, window_seed=2, replicates=400)
    for name in ("ks", "wasserstein"):
        assert large[name].noise / small[name].noise == pytest.approx(0.5 * math.sqrt(1.005 / 1.02), rel=0.1)
    # KS under no drift: Kolmogorov's asymptotic 95th percentile over sqrt(n_eff).
    n_eff = 4_000 * 200_000 / 204_000
    assert large["ks"].noise == pytest.approx(stats.kstwobign.ppf(0.95) / math.sqrt(n_eff), rel=0.1)


@pytest.mark.parametrize("window_rows", [40_000, 8_000])
def test_the_normal_approximation_of_large_draws_agrees_with_exact_multinomial_draws(monkeypatch, window_rows) -> None:
    """Samples whose every bin expects >= 5 rows are drawn from the multinomial's normal approximation
    (at 8 000 window rows only the noise draws are: 8 expected per reference bin, while some of the
    window's own bins hold fewer); the intervals and noise levels agree with exact multinomial draws
    within Monte-Carlo error."""
    rng = np.random.default_rng(21)
    reference, current, deciles = _binned(rng.lognormal(0, 1, 100_000), rng.lognormal(0.05, 1.05, window_rows))
    approx = numerical_intervals(reference, current, deciles=deciles, reference_seed=1, window_seed=2,
                                 replicates=1500)
    monkeypatch.setattr(drift_intervals, "NORMAL_MIN_EXPECTED", math.inf)
    drift_intervals.forget_reference_draws()
    exact = numerical_intervals(reference, current, deciles=deciles, reference_seed=3, window_seed=4,
                                replicates=1500)
    drift_intervals.forget_reference_draws()
    for name in exact:
        width = exact[name].upper - exact[name].lower
        assert abs(approx[name].lower - exact[name].lower) <= 0.1 * width, name
        assert abs(approx[name].upper - exact[name].upper) <= 0.1 * width, name
        assert approx[name].noise == pytest.approx(exact[name].noise, rel=0.1), name


# --- calibration and power ------------------------------------------------------------------------


def test_beyond_noise_rarely_flags_samples_of_one_distribution() -> None:
    """200 pairs drawn from one distribution: beyond_noise flags at most ~5 % of windows (the bound:
    5 % plus 2.5 binomial standard errors), and the noise level is itself calibrated: the observed
    statistic exceeds it in about 5 % of windows."""
    rng = np.random.default_rng(515)
    pairs = 200
    flagged = {s: 0 for s in ("wasserstein", "ks", "psi", "jensenshannon")}
    above_noise = dict.fromkeys(flagged, 0)
    for i in range(pairs):
        reference, current, deciles = _binned(rng.gamma(2.0, size=2_000), rng.gamma(2.0, size=500))
        got = numerical_intervals(reference, current, deciles=deciles, reference_seed=i, window_seed=10_000 + i,
                                  replicates=200)
        for name, effect in got.items():
            flagged[name] += bool(decide("beyond_noise", fixed=None, effect=effect))
            above_noise[name] += bool(effect.value > effect.noise)
    bound = 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / pairs)
    for name in flagged:
        assert flagged[name] / pairs <= bound, (name, flagged[name])
        assert 0.01 <= above_noise[name] / pairs <= 0.10, (name, above_noise[name])


def test_beyond_noise_starts_flagging_at_the_size_theory_predicts() -> None:
    """A shift of delta = 0.2 standard deviations of a normal has KS effect D = 2 Phi(delta/2) - 1 = 0.0797.
    The noise level is Kolmogorov's 95th percentile over sqrt(n_eff), c / sqrt(n_eff) with c = 1.358, so
    the effect equals the noise at n0 = (c / D)^2 ~ 290 (n_eff; n ~ 294 beside 20 000 reference rows).

    * Well below, n0 / 4: the true effect is half the noise level; the observed statistic rarely clears
      the noise level (that needs the noise to more than double it), its interval's lower end more rarely.
    * Well above, 6 n0: sqrt(n_eff) D = 3.33, and sqrt(n_eff) D_hat ~ N(3.33, sigma^2) with sigma^2 =
      F(1 - F) ~ 0.248 at the crossing point (F = Phi(0.1)). The lower end, about D_hat - 1.96 sigma /
      sqrt(n_eff), clears the noise level when sqrt(n_eff) D_hat > 1.36 + 0.98 = 2.34: probability
      Phi((3.33 - 2.34) / 0.5) = 0.98. The percentile interval of a distance is moreover biased upwards
      (the bootstrap adds its own noise to the observed difference), which only makes flagging likelier.
    * Between, the rate climbs: at n0 it is strictly between the two.
    """
    rng = np.random.default_rng(8)
    n_ref, delta = 20_000, 0.2
    ref = rng.normal(size=n_ref)
    edges, deciles = reference_edges(ref), decile_edges(ref)
    reference = bin_sample(ref, edges)
    d = 2 * stats.norm.cdf(delta / 2) - 1
    n0_eff = (stats.kstwobign.ppf(0.95) / d) ** 2

    def n_at(n_eff: float) -> int:
        return round(n_eff * n_ref / (n_ref - n_eff))

    def rate(n: int, windows: int = 60) -> float:
        hits = 0
        for i in range(windows):
            got = numerical_intervals(reference, bin_sample(rng.normal(delta, 1, n), edges), deciles=deciles,
                                      reference_seed=1, window_seed=stable_seed(n, i), replicates=200,
                                      statistics=("ks",))["ks"]
            hits += bool(decide("beyond_noise", fixed=None, effect=got))
        return hits / windows

    assert 280 <= n_at(n0_eff) <= 300
    below, at, above = rate(n_at(n0_eff / 4)), rate(n_at(n0_eff)), rate(n_at(6 * n0_eff))
    print(f"flagged: {below:.0%} at n0/4, {at:.0%} at n0, {above:.0%} at 6 n0")
    assert below <= 0.1
    assert below < at < above
    assert above >= 0.9


# --- reproducibility and edge cases ------------------------------------------------------------------


def test_same_seed_same_interval_in_any_order() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=5_000)
    edges, deciles = reference_edges(ref), decile_edges(ref)
    reference = bin_sample(ref, edges)
    a, b = bin_sample(rng.normal(0.1, 1, 700), edges), bin_sample(rng.normal(size=900), edges)
    seed_a, seed_b = stable_seed("ref", "income", "2026-01-01"), stable_seed("ref", "income", "2026-01-02")
    first_a = numerical_intervals(reference, a, deciles=deciles, reference_seed=9, window_seed=seed_a)
    first_b = numerical_intervals(reference, b, deciles=deciles, reference_seed=9, window_seed=seed_b)
    again_b = numerical_intervals(reference, b, deciles=deciles, reference_seed=9, window_seed=seed_b)
    again_a = numerical_intervals(reference, a, deciles=deciles, reference_seed=9, window_seed=seed_a)
    assert first_a == again_a and first_b == again_b
    other = numerical_intervals(reference, a, deciles=deciles, reference_seed=9, window_seed=seed_a + 1)
    assert other["wasserstein"].lower != first_a["wasserstein"].lower


def test_stable_seed_is_fixed_across_processes() -> None:
    """The seed is a hash of the text, not Python's salted hash(): a constant is pinned."""
    assert stable_seed("a", "b") == int.from_bytes(__import__("hashlib").sha256(b"a\x1fb").digest()[:8], "big") >> 1


def test_empty_window_and_all_null_column_give_no_interval() -> None:
    rng = np.random.default_rng(4)
    ref = rng.normal(size=3_000)
    edges, deciles = reference_edges(ref), decile_edges(ref)
    reference = bin_sample(ref, edges)
    for current in (bin_sample(np.array([]), edges), bin_sample(np.array([np.nan, np.inf, -np.inf]), edges)):
        got = numerical_intervals(reference, current, deciles=deciles, reference_seed=1, window_seed=2)
        assert all(e.value is None and e.lower is None and e.noise is None for e in got.values())
        assert decide("beyond_noise", fixed=None, effect=got["ks"]) is None
        assert too_small_to_tell(got["ks"], 0.1) is None


def test_nan_and_inf_are_nulls_not_values() -> None:
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=3_000), rng.normal(0.2, 1, 400)
    edges, deciles = reference_edges(ref), decile_edges(ref)
    clean = numerical_intervals(bin_sample(ref, edges), bin_sample(cur, edges), deciles=deciles,
                                reference_seed=1, window_seed=2)
    with_nulls = bin_sample(np.concatenate([cur, [np.nan, np.inf, -np.inf]]), edges)
    dirty = numerical_intervals(bin_sample(ref, edges), with_nulls, deciles=deciles, reference_seed=1, window_seed=2)
    assert dirty == clean


def test_one_row_window_is_too_small_to_tell() -> None:
    rng = np.random.default_rng(6)
    ref = rng.normal(size=3_000)
    edges, deciles = reference_edges(ref), decile_edges(ref)
    got = numerical_intervals(bin_sample(ref, edges), bin_sample(np.array([0.3]), edges), deciles=deciles,
                              reference_seed=1, window_seed=2)
    for effect in got.values():
        assert effect.lower is not None and math.isfinite(effect.lower) and effect.lower <= effect.upper
    assert got["ks"].noise >= 0.9  # one row against 3 000: the KS statistic is large whatever happens
    assert too_small_to_tell(got["wasserstein"], 0.1) is True
    assert decide("beyond_noise", fixed=None, effect=got["ks"]) is False


def test_category_seen_only_in_the_window() -> None:
    ref = {"a": 600, "b": 400, None: 10}
    cur = {"a": 50, "b": 30, "new": 20}
    got = categorical_intervals(ref, cur, reference_seed=1, window_seed=2, replicates=300)
    drift = categorical_drift(ref, cur)
    assert got["psi"].value == pytest.approx(drift.psi)
    assert got["jensenshannon"].value == pytest.approx(drift.js_distance)
    # Every window draw holds the new category (20 %), no reference draw does: the interval stays far from 0.
    assert got["jensenshannon"].lower > 0.2 and got["psi"].lower > 0.5
    assert got["jensenshannon"].lower > got["jensenshannon"].noise
    assert categorical_intervals(ref, {None: 5}, reference_seed=1, window_seed=2)["psi"].lower is None
    reordered = categorical_intervals(dict(reversed(list(ref.items()))), dict(reversed(list(cur.items()))),
                                      reference_seed=1, window_seed=2, replicates=300)
    assert reordered == got


def test_categorical_interval_agrees_with_a_row_level_bootstrap() -> None:
    rng = np.random.default_rng(12)
    ref = rng.choice(["a", "b", "c", "d"], 3_000, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(["a", "b", "c", "d"], 1_000, p=[0.3, 0.3, 0.25, 0.15])
    counts = lambda x: {k: int(v) for k, v in zip(*np.unique(x, return_counts=True), strict=True)}  # noqa: E731
    ours = categorical_intervals(counts(ref), counts(cur), reference_seed=3, window_seed=4, replicates=1500)
    boot = []
    for _ in range(1500):
        r, c = rng.choice(ref, ref.size), rng.choice(cur, cur.size)
        hr = np.array([np.sum(r == k) for k in "abcd"], float)
        hc = np.array([np.sum(c == k) for k in "abcd"], float)
        boot.append(distance.jensenshannon(hr / hr.sum(), hc / hc.sum()))
    lower, upper = np.quantile(boot, [0.025, 0.975])
    assert abs(ours["jensenshannon"].lower - lower) <= 0.1 * (upper - lower)
    assert abs(ours["jensenshannon"].upper - upper) <= 0.1 * (upper - lower)


# --- verdicts ------------------------------------------------------------------------------------------


def test_effect_statistic_of_each_method() -> None:
    assert [effect_statistic(m) for m in ("wasserstein", "jensenshannon", "psi", "ks", "chisquare", "z")] == \
        ["wasserstein", "jensenshannon", "psi", "ks", "jensenshannon", "jensenshannon"]
    with pytest.raises(ValueError, match="unknown drift method"):
        effect_statistic("energy")


def test_verdict_modes_and_too_small() -> None:
    effect = EffectInterval("wasserstein", 0.2, 0.15, 0.25, 0.12, 0.95, 200)
    assert decide("fixed", fixed=False, effect=effect) is False
    assert decide("beyond_noise", fixed=False, effect=effect) is True
    assert decide("material", fixed=False, effect=effect, material=0.15) is False  # lower end must be above
    assert decide("material", fixed=False, effect=effect, material=0.1) is True
    with pytest.raises(ValueError, match="material threshold"):
        decide("material", fixed=None, effect=effect)
    assert deciding_threshold("fixed", "wasserstein", 0.1, None) == 0.1
    assert deciding_threshold("fixed", "ks", 0.05, None) is None  # a p-value test accounts for size itself
    assert deciding_threshold("material", "ks", 0.05, 0.08) == 0.08
    assert too_small_to_tell(effect, 0.1) is True and too_small_to_tell(effect, 0.12) is True
    assert too_small_to_tell(effect, 0.13) is False and too_small_to_tell(effect, None) is None


def test_bad_arguments_are_refused() -> None:
    rng = np.random.default_rng(0)
    reference, current, deciles = _binned(rng.normal(size=500), rng.normal(size=50))
    with pytest.raises(ValueError, match="replicates"):
        numerical_intervals(reference, current, deciles=deciles, reference_seed=1, window_seed=2, replicates=1)
    with pytest.raises(ValueError, match="confidence"):
        numerical_intervals(reference, current, deciles=deciles, reference_seed=1, window_seed=2, confidence=1.0)
    with pytest.raises(ValueError, match="unknown numerical statistics"):
        numerical_intervals(reference, current, deciles=deciles, reference_seed=1, window_seed=2, statistics=("x",))
