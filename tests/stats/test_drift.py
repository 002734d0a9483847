"""Drift statistics from fine histograms, checked against scipy, a direct numpy PSI and Evidently 0.7.

Tolerances, and why:

* KS statistic: ours is the exact CDF difference at the 999 reference-quantile edges, so it can only
  miss what happens inside one bin, where each CDF rises by at most its share of that bin (~1/1000
  for the reference, ~1/1000 x density ratio for the current). We assert the rigorous bracket
  ``ours <= scipy <= ours + ks_resolution`` always, and ``|ours - scipy| <= 2e-3`` when the reference
  is continuous (999 distinct edges); a reference with ties has fewer, heavier bins (a constant one:
  two bins, error 2e-3 on this data; integer-valued: exact).
* Normed Wasserstein: interior bins are modelled (uniform around each bin's mean), tails come from
  exact tail sums. Asserted ``|ours - scipy| <= 2% of scipy + 1e-3`` (normed units): the absolute
  term covers undrifted pairs where W itself is ~0.01-0.05 and sampling noise within 5-value bins
  dominates; measured errors are <= 0.5% on drifted columns at 5 000 rows and ~1e-8 at 50 000.
* PSI and JS at the deciles, categorical JS, chi-square and z p-values, small-sample KS p-values on
  value edges: the same arithmetic on the same counts, asserted to 1e-12.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from services.stats.drift import (
    EVIDENTLY_DISPLAY_NAMES,
    categorical_drift,
    categorical_method,
    category_counts,
    drift_ratio,
    is_drifted,
    null_share,
    numerical_drift,
    numerical_method,
    psi_band,
)
from services.stats.histogram import (
    BinnedSample,
    bin_sample,
    bin_value_counts,
    coarsen,
    decile_edges,
    reference_edges,
)
from services.stats.two_sample import ks_pvalue, ks_resolution, ks_statistic, wasserstein_1

N = 50_000


def _datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20261126)
    half = N // 2
    return {
        "normal_same": (rng.normal(size=N), rng.normal(size=N)),
        "normal_shifted": (rng.normal(size=N), rng.normal(0.3, 1.0, size=N)),
        "normal_wider": (rng.normal(size=N), rng.normal(0.0, 1.5, size=N)),
        "lognormal_heavy_tail": (rng.lognormal(0.0, 1.5, N), rng.lognormal(0.2, 1.8, N)),
        "pareto_tail": (rng.pareto(1.5, N), rng.pareto(1.2, N)),
        "mixture": (np.concatenate([rng.normal(-2, 0.5, half), rng.normal(3, 1, half)]),
                    np.concatenate([rng.normal(-2, 0.5, N // 3), rng.normal(3, 1, N - N // 3)])),
        "constant_reference": (np.full(N, 5.0), rng.normal(5.0, 0.1, N)),
        "constant_current": (rng.normal(5.0, 1.0, N), np.full(N // 2, 5.3)),
        "integer_valued": (rng.poisson(30, N).astype(float), rng.poisson(32, N).astype(float)),
        "disjoint": (rng.normal(size=N), rng.normal(10.0, 1.0, N)),
        "tiny": (rng.normal(size=40), rng.normal(0.5, 1.0, size=25)),
    }


DATASETS = _datasets()


def _binned(name: str) -> tuple[np.ndarray, np.ndarray, BinnedSample, BinnedSample]:
    ref, cur = DATASETS[name]
    edges = reference_edges(ref)
    return ref, cur, bin_sample(ref, edges), bin_sample(cur, edges)


# --- histograms ------------------------------------------------------------------------------------


def test_bin_is_the_number_of_edges_at_or_below_the_value_and_non_finite_values_are_nulls():
    sample = bin_sample(np.array([0.5, 1.0, 1.5, 2.0, 3.0, 3.5, np.nan, np.inf, -np.inf]), np.array([1.0, 2.0, 3.0]))
    assert sample.counts.tolist() == [1, 2, 1, 2]
    assert sample.sums.tolist() == [0.5, 2.5, 2.0, 6.5]
    assert (sample.n, sample.nulls) == (6, 3)
    assert sample.null_share == pytest.approx(3 / 9)


def test_mean_and_population_std_survive_a_large_offset_thanks_to_the_shifted_sum_of_squares():
    values = 1e9 + np.random.default_rng(1).normal(0.0, 1.0, 100_000)
    sample = bin_sample(values, reference_edges(values))
    assert sample.mean == pytest.approx(np.mean(values), rel=1e-15)
    assert sample.std == pytest.approx(np.std(values), rel=1e-6)  # naive sum of x^2 loses every digit here
    naive = math.sqrt(max(np.dot(values, values) / values.size - np.mean(values) ** 2, 0.0))
    assert abs(naive - np.std(values)) > 0.01


def test_deciles_are_fine_edges_so_coarsening_equals_binning_at_the_deciles():
    ref, cur = DATASETS["lognormal_heavy_tail"]
    fine, deciles = reference_edges(ref), decile_edges(ref)
    assert fine.size == 999 and deciles.size == 9 and np.isin(deciles, fine).all()
    for values in (ref, cur):
        coarse, direct = coarsen(bin_sample(values, fine), deciles), bin_sample(values, deciles)
        assert coarse.counts.tolist() == direct.counts.tolist()
        np.testing.assert_allclose(coarse.sums, direct.sums, rtol=1e-12)


def test_duplicate_quantiles_collapse_and_coarsening_refuses_foreign_edges():
    values = np.concatenate([np.zeros(7_000), np.random.default_rng(2).exponential(size=3_000)])
    edges = reference_edges(values)
    assert np.all(np.diff(edges) > 0) and edges[0] == 0.0 and edges.size < 999
    with pytest.raises(ValueError, match="subset of the fine edges"):
        coarsen(bin_sample(values, edges), np.array([0.123456]))
    with pytest.raises(ValueError, match="strictly increasing"):
        BinnedSample(edges=np.array([1.0, 1.0]), counts=np.zeros(3), sums=np.zeros(3))


def test_value_count_aggregate_equals_binning_the_raw_values():
    values = np.random.default_rng(3).integers(0, 50, 2_000).astype(float)
    edges = reference_edges(values)
    distinct, counts = np.unique(values, return_counts=True)
    from_counts, from_rows = bin_value_counts(distinct, counts, edges), bin_sample(values, edges)
    assert from_counts.counts.tolist() == from_rows.counts.tolist()
    np.testing.assert_allclose(from_counts.sums, from_rows.sums, rtol=1e-12)
    assert from_counts.sum_sq == pytest.approx(from_rows.sum_sq, rel=1e-12)


def test_binned_samples_compare_by_value_and_survive_pickling():
    import pickle

    values = DATASETS["mixture"][0]
    sample = bin_sample(values, reference_edges(values))
    copy = pickle.loads(pickle.dumps(sample))
    assert copy == sample and hash(copy) == hash(sample) and copy.std == sample.std
    assert sample != bin_sample(values + 0.01, sample.edges)


# --- numerical statistics against scipy / numpy ---------------------------------------------------


@pytest.mark.parametrize("name", [n for n in DATASETS if n != "tiny"])
def test_ks_statistic_brackets_scipy_within_the_bin_resolution(name):
    ref, cur, r, c = _binned(name)
    ours, resolution, exact = ks_statistic(r, c), ks_resolution(r, c), stats.ks_2samp(ref, cur).statistic
    assert ours - 1e-12 <= exact <= ours + resolution + 1e-12
    if r.edges.size == 999:  # a continuous reference: 1000 bins of 1/1000 each
        assert abs(exact - ours) <= 2e-3


@pytest.mark.parametrize("name", [n for n in DATASETS if n != "tiny"])
def test_normed_wasserstein_matches_scipy_including_skewed_tails(name):
    ref, cur, r, c = _binned(name)
    expected = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
    result = numerical_drift(r, c, deciles=decile_edges(ref), n_distinct=6)
    assert result.wasserstein_normed == pytest.approx(expected, rel=0.02, abs=1e-3)


def test_tail_sums_are_what_keeps_wasserstein_right_on_a_heavy_tail():
    ref, cur, r, c = _binned("lognormal_heavy_tail")
    expected = stats.wasserstein_distance(ref, cur)
    assert wasserstein_1(r, c) == pytest.approx(expected, rel=0.005)

    def without_tail_sums(sample: BinnedSample) -> BinnedSample:  # as if tail values sat on the outer edges
        sums = sample.sums.copy()
        sums[0], sums[-1] = sample.counts[0] * sample.edges[0], sample.counts[-1] * sample.edges[-1]
        return replace(sample, sums=sums)

    assert abs(wasserstein_1(without_tail_sums(r), without_tail_sums(c)) - expected) > 0.2 * expected


def _direct_decile_shares(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.unique(np.quantile(ref, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]))
    shares = []
    for values in (ref, cur):
        index = np.searchsorted(edges, values, side="right")
        shares.append(np.bincount(index, minlength=edges.size + 1) / values.size)
    return shares[0], shares[1]


def _evidently_fill(shares: np.ndarray) -> np.ndarray:
    shares = shares.copy()
    smallest = shares[shares > 0].min()
    shares[shares == 0] = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return shares


@pytest.mark.parametrize("name", ["normal_shifted", "lognormal_heavy_tail", "mixture", "constant_current",
                                  "integer_valued", "disjoint", "tiny"])
def test_psi_and_js_equal_a_direct_computation_at_the_reference_deciles(name):
    ref, cur, r, c = _binned(name)
    p, q = _direct_decile_shares(ref, cur)
    pf, qf = _evidently_fill(p), _evidently_fill(q)
    result = numerical_drift(r, c, deciles=decile_edges(ref), n_distinct=6)
    assert result.psi == pytest.approx(float(np.sum((pf - qf) * np.log(pf / qf))), rel=1e-12, abs=1e-15)
    assert result.js_distance == pytest.approx(float(distance.jensenshannon(p, q)), rel=1e-12, abs=1e-15)
    assert result.psi_band == psi_band(result.psi)


def test_psi_bands_are_point_one_and_point_two_five():
    assert [psi_band(v) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, None)] == [
        "stable", "stable", "moderate", "moderate", "major", None]


@pytest.mark.parametrize("sizes", [(4_000, 3_000), (20_000, 30_000)])
def test_ks_pvalue_follows_scipy_exact_and_asymptotic_modes(sizes):
    rng = np.random.default_rng(4)
    ref, cur = rng.normal(size=sizes[0]), rng.normal(0.04, 1.0, size=sizes[1])
    edges = reference_edges(ref)
    r, c = bin_sample(ref, edges), bin_sample(cur, edges)
    index = np.arange(edges.size + 1)
    oracle = stats.ks_2samp(np.repeat(index, r.counts), np.repeat(index, c.counts))  # the binned samples
    assert ks_pvalue(r, c) == pytest.approx(oracle.pvalue, rel=1e-9)
    assert abs(ks_pvalue(r, c) - stats.ks_2samp(ref, cur).pvalue) < 0.05


def test_tiny_samples_are_exact_when_binned_at_their_distinct_values():
    ref, cur = DATASETS["tiny"]
    edges = np.union1d(reference_edges(ref), np.unique(np.concatenate([ref, cur])))
    r, c = bin_sample(ref, edges), bin_sample(cur, edges)
    result = numerical_drift(r, c, deciles=decile_edges(ref))
    oracle = stats.ks_2samp(ref, cur)
    assert result.method == "ks" and result.threshold == 0.05
    assert result.ks_statistic == pytest.approx(oracle.statistic, abs=1e-12)
    assert result.score == pytest.approx(oracle.pvalue, rel=1e-12)
    assert result.drifted == (oracle.pvalue <= 0.05)
    assert wasserstein_1(r, c) == pytest.approx(stats.wasserstein_distance(ref, cur), rel=1e-12)


# --- edge cases -------------------------------------------------------------------------------------


def test_all_nan_current_gives_none_statistics_and_a_full_null_share():
    ref = DATASETS["normal_same"][0]
    edges = reference_edges(ref)
    result = numerical_drift(bin_sample(ref, edges), bin_sample(np.full(500, np.nan), edges),
                             deciles=decile_edges(ref))
    assert result.current_null_share == 1.0 and result.reference_null_share == 0.0
    assert result.current_n == 0 and result.method == "wasserstein"
    for value in (result.score, result.drifted, result.psi, result.js_distance, result.wasserstein_normed,
                  result.ks_statistic, result.ks_pvalue):
        assert value is None


def test_constant_reference_is_normed_by_the_std_floor_like_evidently():
    ref, cur, r, c = _binned("constant_reference")
    result = numerical_drift(r, c, deciles=decile_edges(ref), n_distinct=6)
    assert r.std == 0.0
    assert result.wasserstein_normed == pytest.approx(stats.wasserstein_distance(ref, cur) / 0.001, rel=1e-9)
    assert result.drifted is True


def test_histograms_on_different_edges_are_refused():
    ref, cur = DATASETS["normal_same"]
    with pytest.raises(ValueError, match="same edges"):
        numerical_drift(bin_sample(ref, reference_edges(ref)), bin_sample(cur, reference_edges(cur)),
                        deciles=decile_edges(ref))


def test_unknown_low_cardinality_asks_for_the_distinct_count():
    ref = np.repeat([0.0, 1.0], 2_000)
    cur = np.concatenate([ref, [0.25, 0.5]])  # two values the reference never had, inside one bin
    edges = reference_edges(ref)
    with pytest.raises(ValueError, match="n_distinct"):
        numerical_drift(bin_sample(ref, edges), bin_sample(cur, edges), deciles=decile_edges(ref))
    result = numerical_drift(bin_sample(ref, edges), bin_sample(cur, edges), deciles=decile_edges(ref), n_distinct=40)
    assert result.method == "wasserstein"


def test_default_methods_follow_evidentlys_table():
    numerical = [(1001, None), (1001, 6), (1001, 5), (1000, 6), (1000, 5), (1000, 2)]
    assert [numerical_method(n, d) for n, d in numerical] == ["wasserstein", "wasserstein", "jensenshannon", "ks",
                                                               "chisquare", "z"]
    categorical = [(1001, 2), (1000, 3), (1000, 2)]
    assert [categorical_method(n, d) for n, d in categorical] == ["jensenshannon", "chisquare", "z"]


def test_unseen_categories_are_listed_and_make_the_chi_square_pvalue_zero():
    result = categorical_drift({"a": 500, "b": 400, None: 100}, {"a": 300, "b": 300, "c": 90, "d": 10, None: 300})
    assert result.unseen_categories == ("c", "d") and result.unseen_share == pytest.approx(100 / 700)
    assert result.chi2_pvalue == 0.0 and result.missing_categories == ()
    assert result.reference_null_share == pytest.approx(0.1) and result.current_null_share == pytest.approx(0.3)
    assert result.reference_n == 900 and result.current_n == 700


def test_categorical_statistics_match_scipy_on_the_union_of_categories():
    ref, cur = {"a": 500, "b": 300, "c": 200}, {"a": 420, "b": 330, "c": 250}
    result = categorical_drift(ref, cur, method="chisquare")
    keys = ["a", "b", "c"]
    p = np.array([ref[k] for k in keys]) / 1000
    q = np.array([cur[k] for k in keys]) / 1000
    assert result.js_distance == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
    assert result.psi == pytest.approx(float(np.sum((p - q) * np.log(p / q))), rel=1e-12)
    assert result.chi2_pvalue == pytest.approx(stats.chisquare([420, 330, 250], p * 1000).pvalue, rel=1e-12)
    assert result.score == result.chi2_pvalue and result.drifted == (result.chi2_pvalue < 0.05)


def test_category_counts_put_missing_values_under_none():
    assert category_counts(np.array(["a", None, "b", np.nan, "a"], dtype=object)) == {"a": 2, None: 2, "b": 1}


def test_empty_categorical_side_gives_none_not_nan():
    result = categorical_drift({"a": 10, "b": 5}, {None: 7})
    assert result.current_null_share == 1.0
    assert (result.score, result.drifted, result.psi, result.js_distance, result.chi2_pvalue, result.unseen_share) == (
        None, None, None, None, None, None)
    assert null_share(0, 0) is None


# --- Evidently 0.7 verdicts ------------------------------------------------------------------------


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame, numerical: list[str], categorical: list[str]) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition))
    data = snapshot.dict()
    scores = {m["config"]["column"]: (m["config"]["method"], float(m["value"]))
              for m in data["metrics"] if m["config"]["type"].endswith(":ValueDrift")}
    drifted = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
               for t in data["tests"] if t["name"].startswith("Value Drift for column")}
    assert set(scores) == set(drifted) == set(numerical) | set(categorical)
    return {column: (*scores[column], drifted[column]) for column in scores}


def _ours_numerical(ref: np.ndarray, cur: np.ndarray, *, value_edges: bool = False):
    edges = reference_edges(ref)
    if value_edges:
        edges = np.union1d(edges, np.unique(np.concatenate([ref[np.isfinite(ref)], cur[np.isfinite(cur)]])))
    return numerical_drift(bin_sample(ref, edges), bin_sample(cur, edges), deciles=decile_edges(ref))


def _ours_categorical(ref: pd.Series, cur: pd.Series):
    return categorical_drift(category_counts(ref.to_numpy()), category_counts(cur.to_numpy()))


def _assert_agrees(column: str, ours, theirs: tuple[str, float, bool], *, score_tol: dict) -> None:
    method, score, drifted = theirs
    assert EVIDENTLY_DISPLAY_NAMES[ours.method] == method, column
    assert ours.drifted is drifted, column
    assert ours.score == pytest.approx(score, **score_tol), column


def test_evidently_large_sample_verdicts_and_methods_agree_per_column():
    rng = np.random.default_rng(7)
    n1, n2 = 5_000, 3_000
    ref = pd.DataFrame({
        "x_same": rng.normal(size=n1), "x_shift": rng.normal(size=n1), "x_lognormal": rng.lognormal(0, 1, n1),
        "x_lognormal_same": rng.lognormal(0, 1, n1), "x_mixture": np.where(rng.random(n1) < 0.5, rng.normal(-2, .5, n1),
                                                                             rng.normal(3, 1, n1)),
        "x_three_values": rng.integers(0, 3, n1) * 0.1, "x_three_values_drift": rng.integers(0, 3, n1).astype(float),
        "c_same": rng.choice(list("abc"), n1, p=[.5, .3, .2]), "c_drift": rng.choice(list("abc"), n1, p=[.5, .3, .2]),
        "c_new_category": rng.choice(list("abc"), n1),
    })
    cur = pd.DataFrame({
        "x_same": rng.normal(size=n2), "x_shift": rng.normal(0.25, 1, n2), "x_lognormal": rng.lognormal(0.15, 1.1, n2),
        "x_lognormal_same": rng.lognormal(0, 1, n2), "x_mixture": np.where(rng.random(n2) < 0.3, rng.normal(-2, .5, n2),
                                                                             rng.normal(3, 1, n2)),
        "x_three_values": rng.integers(0, 3, n2) * 0.1,
        "x_three_values_drift": rng.choice([0.0, 1.0, 2.0], n2, p=[.2, .3, .5]),
        "c_same": rng.choice(list("abc"), n2, p=[.5, .3, .2]), "c_drift": rng.choice(list("abc"), n2, p=[.3, .3, .4]),
        "c_new_category": rng.choice(list("abcd"), n2),
    })
    ref.loc[rng.random(n1) < 0.05, "x_same"] = np.nan
    cur.loc[rng.random(n2) < 0.2, "x_same"] = np.nan
    cur.loc[rng.random(n2) < 0.1, "c_same"] = None
    numerical = [c for c in ref if c.startswith("x_")]
    categorical = [c for c in ref if c.startswith("c_")]
    theirs = _evidently(ref, cur, numerical, categorical)

    verdicts = {}
    for column in numerical:
        ours = _ours_numerical(ref[column].to_numpy(float), cur[column].to_numpy(float))
        tol = dict(rel=0.02, abs=1e-3) if ours.method == "wasserstein" else dict(rel=1e-12)
        _assert_agrees(column, ours, theirs[column], score_tol=tol)
        verdicts[column] = (ours.method, ours.drifted)
    for column in categorical:
        ours = _ours_categorical(ref[column], cur[column])
        _assert_agrees(column, ours, theirs[column], score_tol=dict(rel=1e-12))
        verdicts[column] = (ours.method, ours.drifted)
    # the data set really covers both verdicts of both large-sample methods
    assert verdicts == {
        "x_same": ("wasserstein", False), "x_shift": ("wasserstein", True), "x_lognormal": ("wasserstein", True),
        "x_lognormal_same": ("wasserstein", False), "x_mixture": ("wasserstein", True),
        "x_three_values": ("jensenshannon", False), "x_three_values_drift": ("jensenshannon", True),
        "c_same": ("jensenshannon", False), "c_drift": ("jensenshannon", True),
        "c_new_category": ("jensenshannon", True),
    }


def test_evidently_small_sample_pvalue_tests_agree_exactly_on_value_edges():
    rng = np.random.default_rng(3)
    n1, n2 = 400, 300
    ref = pd.DataFrame({
        "x_same": rng.normal(size=n1), "x_shift": rng.normal(size=n1), "x_three": rng.integers(0, 3, n1).astype(float),
        "x_three_drift": rng.integers(0, 3, n1).astype(float), "x_constant": np.full(n1, 2.0),
        "c_three": rng.choice(list("abc"), n1), "c_three_drift": rng.choice(list("abc"), n1),
        "c_two": rng.choice(list("ab"), n1), "c_two_drift": rng.choice(list("ab"), n1),
    })
    cur = pd.DataFrame({
        "x_same": rng.normal(size=n2), "x_shift": rng.normal(0.5, 1, n2),
        "x_three": rng.integers(0, 3, n2).astype(float),
        "x_three_drift": rng.choice([0.0, 1.0, 2.0], n2, p=[.2, .3, .5]), "x_constant": np.full(n2, 2.0),
        "c_three": rng.choice(list("abc"), n2), "c_three_drift": rng.choice(list("abc"), n2, p=[.2, .3, .5]),
        "c_two": rng.choice(list("ab"), n2), "c_two_drift": rng.choice(list("ab"), n2, p=[.3, .7]),
    })
    numerical = [c for c in ref if c.startswith("x_")]
    categorical = [c for c in ref if c.startswith("c_")]
    theirs = _evidently(ref, cur, numerical, categorical)
    verdicts = {}
    for column in numerical:
        ours = _ours_numerical(ref[column].to_numpy(float), cur[column].to_numpy(float), value_edges=True)
        _assert_agrees(column, ours, theirs[column], score_tol=dict(rel=1e-8))
        verdicts[column] = (ours.method, ours.drifted)
    for column in categorical:
        ours = _ours_categorical(ref[column], cur[column])
        _assert_agrees(column, ours, theirs[column], score_tol=dict(rel=1e-8))
        verdicts[column] = (ours.method, ours.drifted)
    assert verdicts == {
        "x_same": ("ks", False), "x_shift": ("ks", True), "x_three": ("chisquare", False),
        "x_three_drift": ("chisquare", True), "x_constant": ("z", False),
        "c_three": ("chisquare", False), "c_three_drift": ("chisquare", True),
        "c_two": ("z", False), "c_two_drift": ("z", True),
    }


# --------------------------------------------------------------------------------------------
# How far past the verdict line: one scale for distances and p-values
# --------------------------------------------------------------------------------------------
def test_drift_ratio_is_score_over_threshold_for_distances_and_threshold_over_p_for_tests():
    assert drift_ratio("wasserstein", 0.945, 0.1) == pytest.approx(9.45)
    assert drift_ratio("jensenshannon", 0.05, 0.1) == pytest.approx(0.5)
    assert drift_ratio("ks", 0.001, 0.05) == pytest.approx(50.0)  # a tiny p-value drifts a lot
    assert drift_ratio("chisquare", 0.5, 0.05) == pytest.approx(0.1)
    assert drift_ratio("z", 0.0, 0.05) == math.inf
    assert drift_ratio("psi", None, 0.2) is None and drift_ratio("psi", 0.3, None) is None


@pytest.mark.parametrize("method", ["wasserstein", "jensenshannon", "psi", "ks", "chisquare", "z"])
def test_a_ratio_above_one_is_a_drift_verdict_and_below_one_is_not(method):
    for score in (0.0001, 0.01, 0.04, 0.06, 0.2, 0.9):
        ratio = drift_ratio(method, score, 0.05)
        assert ratio is not None and (ratio > 1) == is_drifted(method, score, 0.05), (method, score)
