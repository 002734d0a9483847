"""The push-down aggregates (services.stores.warehouse) on DuckDB, SQLite and PostgreSQL against numpy.

Every aggregate the SQL computes is compared with its in-memory twin from ``services.stats``
(``bin_sample``, ``category_counts``, ``group_counts``, ``confusion_counts``, ``score_counts``,
``regression_aggregates``) or with numpy/pandas, per (day, version) group and for whole windows.
Counts must be equal; sums agree to floating-point summation order.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import numpy as np

# Loaded first on purpose: sqlalchemy-bigquery (tests/stores/test_engine_compile.py) registers a one-argument
# ``unnest`` in SQLAlchemy's global function registry on import, which once broke PostgreSQL's histograms
# whenever the compile checks ran earlier in the session. Every test below runs with it loaded.
try:
    import sqlalchemy_bigquery  # noqa: F401
except ImportError:  # not installed: nothing to guard against
    pass
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from services.errors import ConfigError, MappingError
from services.mapping import ModelMapping
from services.stats.drift import category_counts
from services.stats.fairness import group_counts
from services.stats.histogram import bin_sample, decile_edges, reference_edges
from services.stats.performance import confusion_counts, regression_aggregates, roc_auc, roc_auc_tie_bound
from services.stores.warehouse import binning, histograms
from services.stores.warehouse.histograms import numeric_histograms, value_counts
from services.stores.warehouse.logs import LatencySummary, latency_summaries, log_bounds
from services.stores.warehouse.outcomes import (
    ClassificationCounts,
    classification_counts,
    fairness_counts,
    regression_sums,
)
from services.stores.warehouse.profiles import column_profiles
from services.stores.warehouse.rows import log_rows, reference_rows
from services.stores.warehouse.sql import WHOLE, GroupKey
from tests.support import monitoring_data as data
from tests.support.databases import KINDS_AND_SPARK, ScratchWarehouse, scratch_warehouse

START, END = data.day(0) + timedelta(hours=5), data.day(3) + timedelta(hours=20)  # cuts into first and last day


@pytest.fixture(scope="module", params=KINDS_AND_SPARK)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ScratchWarehouse, ModelMapping, pd.DataFrame, pd.DataFrame]]:
    """The synthetic log and reference written once per database kind; tests only read them."""
    wh = scratch_warehouse(request.param, tmp_path_factory.mktemp(request.param), request)
    log, reference = data.make_log(), data.make_reference()
    log_table = wh.write(log, "predictions_synthetic")
    reference_table = wh.write(reference, "reference_synthetic")
    # Half of the missing x_lognormal values as real IEEE NaN (the other half stays NULL).
    nan_ids = log.loc[log["x_lognormal"].isna(), "request_id"].tolist()[::2]
    data.put_nan(wh.url, wh.schema, "predictions_synthetic", "x_lognormal", nan_ids)
    yield wh, data.mapping(log_table, reference_table), log, reference
    wh.close()


def groups(frame: pd.DataFrame) -> Iterator[tuple[GroupKey, pd.DataFrame]]:
    days = frame["ts"].dt.floor("D")
    for (day, version), part in frame.groupby([days, frame["model_version"]]):
        yield (day.to_pydatetime(), version), part


def assert_same_histogram(got, want) -> None:
    assert np.array_equal(got.edges, want.edges)
    assert got.counts.tolist() == want.counts.tolist()
    assert got.nulls == want.nulls
    np.testing.assert_allclose(got.sums, want.sums, rtol=1e-12, atol=1e-9)
    assert got.sum_sq == pytest.approx(want.sum_sq, rel=1e-9)
    assert got.shift == want.shift


# --------------------------------------------------------------------------------------------
# Reference edges
# --------------------------------------------------------------------------------------------
def test_reference_edges_from_sql_are_bit_for_bit_numpys_quantiles(loaded):
    wh, mapping, _, reference = loaded
    total, profiles = column_profiles(wh.reader(), mapping, reference_rows(mapping), data.NUMERICAL)
    assert total == len(reference)
    for column in data.NUMERICAL:
        values = reference[column].to_numpy(float)
        finite = values[np.isfinite(values)]
        p = profiles[column]
        assert (p.finite, p.distinct) == (finite.size, np.unique(finite).size), column
        assert np.array_equal(p.edges, reference_edges(values)), column
        assert np.array_equal(p.deciles, decile_edges(values)), column
        assert np.all(np.isin(p.deciles, p.edges)), column


def test_reference_edges_of_a_log_time_range_use_only_that_range(loaded):
    wh, mapping, log, _ = loaded
    rows = reference_rows(mapping, data.day(1), data.day(2))
    total, profiles = column_profiles(wh.reader(), mapping, rows, ["x_normal"])
    part = data.in_window(log, data.day(1), data.day(2))
    assert total == len(part)
    assert np.array_equal(profiles["x_normal"].edges, reference_edges(part["x_normal"].to_numpy(float)))


# --------------------------------------------------------------------------------------------
# Histograms and counts of the log
# --------------------------------------------------------------------------------------------
def test_numeric_histograms_per_day_and_version_equal_bin_sample(loaded):
    wh, mapping, log, reference = loaded
    edges = {c: reference_edges(reference[c].to_numpy(float)) for c in ("x_normal", "x_lognormal")}
    got = numeric_histograms(wh.reader(), mapping, log_rows(mapping, START, END), edges,
                                by_day=True, by_version=True)
    window = data.in_window(log, START, END)
    expected = dict(groups(window))
    assert set(got) == set(expected)
    for key, part in expected.items():
        for column, e in edges.items():
            assert_same_histogram(got[key][column], bin_sample(part[column].to_numpy(float), e))


def test_numeric_histogram_of_a_whole_window_counts_nan_inf_and_null_as_nulls(loaded):
    wh, mapping, log, reference = loaded
    edges = reference_edges(reference["x_normal"].to_numpy(float))
    got = numeric_histograms(wh.reader(), mapping, log_rows(mapping, START, END), {"x_normal": edges})
    window = data.in_window(log, START, END)
    want = bin_sample(window["x_normal"].to_numpy(float), edges)
    assert_same_histogram(got[WHOLE]["x_normal"], want)
    values = window["x_normal"].to_numpy(float)
    assert want.nulls == int((~np.isfinite(values)).sum()) > 0 and np.isinf(values).any()


def test_sqlite_splits_features_over_statements_when_edges_exceed_its_parameter_limit(loaded, monkeypatch):
    wh, mapping, log, reference = loaded
    monkeypatch.setattr(histograms, "SQLITE_MAX_PARAMS", 1_200)  # one feature's ~1000 edges per statement
    edges = {c: reference_edges(reference[c].to_numpy(float)) for c in ("x_normal", "x_lognormal")}
    got = numeric_histograms(wh.reader(), mapping, log_rows(mapping, START, END), edges)
    window = data.in_window(log, START, END)
    for column, e in edges.items():
        assert_same_histogram(got[WHOLE][column], bin_sample(window[column].to_numpy(float), e))


def test_value_counts_of_categorical_and_few_valued_numerical_features(loaded):
    wh, mapping, log, _ = loaded
    rows = log_rows(mapping, START, END)
    categorical = value_counts(wh.reader(), mapping, rows, data.CATEGORICAL, numeric=False, by_day=True)
    numerical = value_counts(wh.reader(), mapping, rows, ["x_int", "x_three"], numeric=True, by_version=True)
    window = data.in_window(log, START, END)
    for day, part in window.groupby(window["ts"].dt.floor("D")):
        for column in data.CATEGORICAL:
            assert categorical[(day.to_pydatetime(), None)][column] == category_counts(part[column].to_numpy())
    for version, part in window.groupby("model_version"):
        for column in ("x_int", "x_three"):
            want = part[column].astype(float).value_counts().to_dict()
            assert numerical[(None, version)][column] == want


def test_fairness_counts_equal_group_counts_of_the_predicted_rows(loaded):
    wh, mapping, log, _ = loaded
    got = fairness_counts(wh.reader(), mapping, log_rows(mapping, START, END), by_day=True, by_version=True)
    window = data.in_window(log, START, END)
    for key, part in groups(window[window["prediction"].notna()]):
        for attribute in data.SENSITIVE:
            labels = part["label"].astype("float64").to_numpy()
            want = group_counts(part[attribute].to_numpy(), part["prediction"].astype(int).to_numpy(), labels)
            assert got[key][attribute] == want, (key, attribute)
    assert any(g.group == "(missing)" for g in got[next(iter(got))]["gender"])


def test_classification_counts_give_confusion_coverage_and_the_auc_of_rounded_scores(loaded):
    wh, mapping, log, _ = loaded
    got = classification_counts(wh.reader(), mapping, log_rows(mapping, START, END))[WHOLE]
    window = data.in_window(log, START, END)
    predicted = window[window["prediction"].notna()]
    labelled = predicted[predicted["label"].notna()]
    y, p, s = labelled["label"].astype(int), labelled["prediction"].astype(int), labelled["score"]
    assert (got.predictions, got.labeled) == (len(predicted), len(labelled))
    assert got.confusion == confusion_counts(y, p)
    assert got.scores.positives.sum() == y.sum() and got.scores.negatives.sum() == (1 - y).sum()
    bound = roc_auc_tie_bound(got.scores)
    assert abs(roc_auc(got.scores) - roc_auc_score(y, s)) <= bound + 1e-12


def test_classification_counts_per_day_and_version_add_up_to_the_window(loaded):
    wh, mapping, _, _ = loaded
    rows = log_rows(mapping, START, END)
    parts = classification_counts(wh.reader(), mapping, rows, by_day=True, by_version=True)
    whole = classification_counts(wh.reader(), mapping, rows)[WHOLE]
    total = ClassificationCounts.empty()
    for part in parts.values():
        total = total + part
    assert (total.predictions, total.labeled, total.confusion) == (whole.predictions, whole.labeled, whole.confusion)
    assert total.scores == whole.scores


def test_regression_sums_equal_numpy(loaded):
    wh, mapping, log, _ = loaded
    regression = data.mapping(mapping.table, task="regression",
                              columns={**data.COLUMNS, "prediction": "score", "label": "x_normal"})
    got = regression_sums(wh.reader(), regression, log_rows(regression, START, END), by_version=True)
    window = data.in_window(log, START, END)
    for version, part in window.groupby("model_version"):
        n, sae, sse = regression_aggregates(part["x_normal"].to_numpy(float), part["score"].to_numpy(float))
        found = got[(None, version)]
        assert (found.labeled, found.predictions) == (n, int(np.isfinite(part["score"].to_numpy(float)).sum()))
        assert (found.sum_abs_error, found.sum_squared_error) == pytest.approx((sae, sse), rel=1e-12)


def test_latency_summaries_per_day_and_version_equal_numpy_percentiles(loaded):
    wh, mapping, log, _ = loaded
    got = latency_summaries(wh.reader(), mapping, START, END, by_day=True, by_version=True)
    for key, part in groups(data.in_window(log, START, END)):
        values = part["latency_ms"].dropna().to_numpy()
        found = got[key]
        assert (found.requests, found.errors) == (len(part), int((part["status"] != "ok").sum()))
        assert [found.p50_ms, found.p95_ms, found.p99_ms] == pytest.approx(
            list(np.percentile(values, [50, 95, 99])), rel=1e-9)


def test_log_bounds_are_the_first_and_last_prediction(loaded):
    wh, mapping, log, _ = loaded
    assert log_bounds(wh.reader(), mapping) == (log["ts"].min().to_pydatetime(), log["ts"].max().to_pydatetime())


# --------------------------------------------------------------------------------------------
# Empty windows and bad windows
# --------------------------------------------------------------------------------------------
def test_an_empty_window_gives_empty_aggregates_not_errors(loaded):
    wh, mapping, _, reference = loaded
    engine = wh.reader()
    start = data.day(40)
    rows = log_rows(mapping, start, start + timedelta(days=1))
    edges = {"x_normal": reference_edges(reference["x_normal"].to_numpy(float))}
    sample = numeric_histograms(engine, mapping, rows, edges)[WHOLE]["x_normal"]
    assert (sample.n, sample.nulls, sample.mean, sample.std) == (0, 0, None, None)
    assert numeric_histograms(engine, mapping, rows, edges, by_day=True) == {}
    assert value_counts(engine, mapping, rows, data.CATEGORICAL, numeric=False)[WHOLE] == {
        "c_region": {}, "c_new": {}}
    assert fairness_counts(engine, mapping, rows)[WHOLE] == {"gender": (), "band": ()}
    counts = classification_counts(engine, mapping, rows)[WHOLE]
    assert (counts.predictions, counts.labeled, counts.confusion.n) == (0, 0, 0)
    assert latency_summaries(engine, mapping, start, start + timedelta(days=1))[WHOLE] == LatencySummary(
        0, 0, None, None, None)


def test_a_window_must_start_before_it_ends(loaded):
    _, mapping, _, _ = loaded
    with pytest.raises(ConfigError, match="its start must be before its end"):
        log_rows(mapping, START, START)
    with pytest.raises(ConfigError, match="has no reference configured"):
        reference_rows(data.mapping(mapping.table))


def test_a_feature_whose_reference_is_all_missing_has_no_edges(loaded):
    wh, mapping, _, _ = loaded
    rows = log_rows(mapping, datetime(2020, 1, 1), datetime(2020, 1, 2))  # nothing there
    total, profiles = column_profiles(wh.reader(), mapping, rows, ["x_normal"])
    assert total == 0 and profiles["x_normal"].edges.size == 0 and profiles["x_normal"].finite == 0


@pytest.fixture(params=KINDS_AND_SPARK)
def scratch(request: pytest.FixtureRequest, tmp_path) -> Iterator[ScratchWarehouse]:
    wh = scratch_warehouse(request.param, tmp_path, request)
    yield wh
    wh.close()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy squaring 1e300
def test_values_on_edges_beyond_them_and_of_any_sign_fall_in_the_same_bins_as_numpy(scratch):
    rng = np.random.default_rng(9)
    skewed = reference_edges(rng.lognormal(0, 1.5, 5000))  # positive: DuckDB narrows the search on ln(x)
    symmetric = reference_edges(rng.normal(0, 1, 5000))
    awkward = np.concatenate([
        skewed, np.nextafter(skewed, -np.inf), np.nextafter(skewed, np.inf), symmetric,
        np.nextafter(symmetric, -np.inf), [0.0, -0.0, -1.0, -1e300, 1e300, 5e-324, -5e-324, 1e-300],
        rng.lognormal(0, 3, 2000), rng.normal(0, 5, 2000),
    ])
    # Two far-apart clusters and a handful of edges: DuckDB's plain binary search, not the grid.
    clusters = reference_edges(np.where(rng.random(5000) < 0.5, rng.normal(-1000, 1, 5000),
                                        rng.normal(1000, 1, 5000)))
    few = np.array([-1.0, 0.0, 0.5, 2.0, 1e6])
    awkward = np.concatenate([awkward, clusters, np.nextafter(clusters, -np.inf), few, np.nextafter(few, np.inf)])
    frame = pd.DataFrame({"ts": pd.Timestamp(data.DAY0), "model_version": "1", "request_id": "r",
                          "a": awkward, "b": awkward, "c": awkward, "d": awkward})
    frame.loc[::97, ["a", "c"]] = np.nan  # missing values are no bin in every path
    mapping = data.mapping(scratch.write(frame, "awkward"), features={"numerical": ["a", "b", "c", "d"]})
    got = numeric_histograms(scratch.reader(), mapping, log_rows(mapping, data.day(0), data.day(1)),
                                {"a": skewed, "b": symmetric, "c": clusters, "d": few})[WHOLE]
    for column, edges in {"a": skewed, "b": symmetric, "c": clusters, "d": few}.items():
        values = frame[column].to_numpy()
        want = bin_sample(values, edges)
        assert got[column].counts.tolist() == want.counts.tolist(), column
        assert got[column].nulls == want.nulls == int(np.isnan(values).sum()), column


def test_the_duckdb_search_grid_narrows_to_a_few_steps_or_steps_aside():
    rng = np.random.default_rng(4)
    assert binning.grid_plan(reference_edges(rng.normal(50, 10, 20_000))).steps <= 3
    lognormal = binning.grid_plan(reference_edges(rng.lognormal(0, 2, 20_000)))
    assert lognormal.log and lognormal.steps <= 3
    mixture = np.where(rng.random(20_000) < 0.5, rng.normal(-1000, 1, 20_000), rng.normal(1000, 1, 20_000))
    assert binning.grid_plan(reference_edges(mixture)) is None  # two far-apart clusters: plain binary search
    assert binning.grid_plan(np.array([1.0, 2.0])) is None


def test_concurrent_duckdb_histograms_each_bin_on_their_own_grid(tmp_path):
    """Each statement lends DuckDB its grids under one name on its own pooled connection: sessions
    histogramming the same column on different edges at once must not read each other's."""
    wh = ScratchWarehouse("duckdb", tmp_path)
    try:
        rng = np.random.default_rng(11)
        values = rng.lognormal(0, 1, 20_000)
        frame = pd.DataFrame({"ts": pd.Timestamp(data.DAY0), "model_version": "1", "request_id": "r", "a": values})
        mapping = data.mapping(wh.write(frame, "shared"), features={"numerical": ["a"]})
        engine, rows = wh.reader(), log_rows(mapping, data.day(0), data.day(1))
        grids = [reference_edges(values * scale) for scale in (0.5, 1.0, 2.0, 4.0)]
        assert all(binning.grid_plan(edges) is not None for edges in grids)

        def histogram(edges: np.ndarray) -> list[int]:
            return [numeric_histograms(engine, mapping, rows, {"a": edges})[WHOLE]["a"].counts.tolist()
                    for _ in range(5)]

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(histogram, grids))
        for edges, got in zip(grids, results, strict=True):
            assert got == [bin_sample(values, edges).counts.tolist()] * 5
    finally:
        wh.close()


def test_fairness_skips_non_finite_predictions_and_refuses_fractions_instead_of_truncating_them(scratch):
    """Rows are grouped on their plain values: NaN/inf predictions count as no prediction and NaN/inf
    labels as not yet arrived, as NULL does; a fractional prediction is an error, never rounded into 0/1."""
    frame = pd.DataFrame({"ts": pd.Timestamp(data.DAY0), "model_version": "1", "request_id": "r",
                          "gender": ["F", "F", "F", "M", "M", "M"],
                          "prediction": [1.0, np.nan, np.inf, 0.0, 1.0, 1.0],
                          "label": [1.0, 1.0, 0.0, -np.inf, np.nan, 0.0]})
    if scratch.kind == "sqlite":  # SQLite stores NaN as NULL: the same rows then hold NULL
        frame["prediction"] = frame["prediction"].replace(np.inf, np.nan)
    mapping = data.mapping(scratch.write(frame, "fair"), features={"numerical": [], "categorical": []},
                           sensitive=["gender"])
    rows = log_rows(mapping, data.day(0), data.day(1))
    got = fairness_counts(scratch.reader(), mapping, rows)[WHOLE]["gender"]
    labels = np.array([1.0, np.nan, np.nan, 0.0])
    assert got == group_counts(np.array(["F", "M", "M", "M"]), np.array([1, 0, 1, 1]), labels)

    frame.loc[0, "prediction"] = 0.7
    fractional = data.mapping(scratch.write(frame, "fair_fraction"), features={"numerical": [], "categorical": []},
                              sensitive=["gender"])
    with pytest.raises(MappingError, match="0/1 predictions"):
        fairness_counts(scratch.reader(), fractional, log_rows(fractional, data.day(0), data.day(1)))


def test_classification_counts_skip_non_finite_predictions_and_refuse_fractions(scratch):
    frame = pd.DataFrame({"ts": pd.Timestamp(data.DAY0), "model_version": "1", "request_id": "r",
                          "prediction": [1.0, np.nan, 0.0, 1.0, 0.0], "label": [1.0, 1.0, np.inf, 0.0, 0.0],
                          "score": [0.9, 0.8, 0.2, 0.6, 0.1]})
    mapping = data.mapping(scratch.write(frame, "perf"), features={"numerical": [], "categorical": []},
                           sensitive=[])
    got = classification_counts(scratch.reader(), mapping, log_rows(mapping, data.day(0), data.day(1)))[WHOLE]
    assert (got.predictions, got.labeled) == (4, 3)
    assert (got.confusion.tp, got.confusion.fp, got.confusion.fn, got.confusion.tn) == (1, 1, 0, 1)

    frame.loc[0, "prediction"] = 0.7
    fractional = data.mapping(scratch.write(frame, "perf_fraction"), features={"numerical": [], "categorical": []},
                              sensitive=[])
    with pytest.raises(MappingError, match="other than 0 and 1"):
        classification_counts(scratch.reader(), fractional, log_rows(fractional, data.day(0), data.day(1)))


def test_a_duckdb_histogram_of_a_column_the_log_lacks_is_a_mapping_error(tmp_path):
    """The failed statement aborts DuckDB's transaction; lending the grid table must not hide its error."""
    wh = ScratchWarehouse("duckdb", tmp_path)
    try:
        frame = pd.DataFrame({"ts": pd.Timestamp(data.DAY0), "model_version": "1", "request_id": "r",
                              "a": np.arange(100.0)})
        mapping = data.mapping(wh.write(frame, "lacking"), features={"numerical": ["a", "gone"]})
        edges = reference_edges(np.arange(100.0))
        assert binning.grid_plan(edges) is not None
        with pytest.raises(MappingError, match="gone"):
            numeric_histograms(wh.reader(), mapping, log_rows(mapping, data.day(0), data.day(1)),
                                  {"a": edges, "gone": edges})
    finally:
        wh.close()
