"""Window reports computed in DuckDB, SQLite and PostgreSQL against the reference libraries.

The same rows are read by the oracle straight from the pandas frame that was written: scipy
(KS statistic, Wasserstein distance / reference std), fairlearn (parity and odds differences,
parity ratio, to 1e-9), numpy percentiles (latency, within 1 %), scikit-learn (accuracy,
precision, recall, F1, ROC AUC, MAE, RMSE) and Evidently 0.7's verdicts on a few columns.

The log has a stable half (days 0-3, drawn like the reference) and a drifted half (days 4-7),
so both verdicts of every column are exercised; day 8 holds a feature that is entirely missing.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from functools import cache

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fl
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

from services.mapping import ModelMapping
from services.monitoring.config import AlertRules, DriftRule
from services.monitoring.reference import ReferenceProfile, compute_profile
from services.monitoring.report import build_report, fetch_aggregates, window_report
from services.stats.drift import EVIDENTLY_DISPLAY_NAMES, numerical_drift
from services.stats.fairness import MISSING_GROUP
from services.stats.histogram import bin_sample, decile_edges, reference_edges
from services.stats.performance import roc_auc_tie_bound, score_counts
from services.stats.two_sample import ks_resolution
from services.stores.warehouse.rows import log_rows
from services.stores.warehouse.sql import WHOLE
from tests.support import monitoring_data as data
from tests.support.databases import KINDS, ScratchWarehouse

STABLE = (data.day(0), data.day(4))
DRIFTED = (data.day(4), data.day(8))
ALL_MISSING = (data.day(8), data.day(9))
WINDOWS = {"stable": STABLE, "drifted": DRIFTED}


def build_log() -> pd.DataFrame:
    stable = data.make_log(seed=1, rows=2500, days=4)
    drifted = data.make_log(seed=3, rows=2500, days=4, shift=1.0, start=data.day(4))
    missing = data.make_log(seed=5, rows=60, days=1, start=data.day(8))
    missing["x_normal"] = np.nan
    drifted["request_id"] = "d" + drifted["request_id"]
    missing["request_id"] = "m" + missing["request_id"]
    return pd.concat([stable, drifted, missing], ignore_index=True)


LOG = build_log()
REFERENCE = data.make_reference(rows=3000)


@pytest.fixture(scope="module", params=KINDS)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ScratchWarehouse, ModelMapping, ReferenceProfile]]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    wh = ScratchWarehouse(request.param, tmp_path_factory.mktemp(request.param), url)
    mapping = data.mapping(wh.write(LOG, "predictions_synthetic"), wh.write(REFERENCE, "reference_synthetic"))
    profile = compute_profile(wh.reader(), mapping)
    yield wh, mapping, profile
    wh.close()


@pytest.fixture(scope="module")
def reports(loaded) -> dict[str, object]:
    wh, mapping, profile = loaded
    return {name: window_report(wh.reader(), mapping, profile, *window) for name, window in WINDOWS.items()}


def window_rows(name: str) -> pd.DataFrame:
    return data.in_window(LOG, *WINDOWS[name])


def finite(values: pd.Series) -> np.ndarray:
    array = values.to_numpy(float)
    return array[np.isfinite(array)]


# --------------------------------------------------------------------------------------------
# Drift
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window", list(WINDOWS))
def test_ks_statistic_matches_scipy_within_the_bin_resolution(reports, window):
    current = window_rows(window)
    for row in reports[window].drift:
        if row.kind != "numerical":
            continue
        ref, cur = finite(REFERENCE[row.column]), finite(current[row.column])
        scipy_d = stats.ks_2samp(ref, cur).statistic
        edges = reference_edges(ref)
        if row.column in ("x_int", "x_three"):  # few values: binned at every value, exact
            assert row.ks_statistic == pytest.approx(scipy_d, abs=1e-12), row.column
            continue
        resolution = ks_resolution(bin_sample(ref, edges), bin_sample(cur, edges))
        assert row.ks_statistic <= scipy_d + 1e-12, row.column
        assert scipy_d - row.ks_statistic <= resolution + 1e-12, row.column


@pytest.mark.parametrize("window", list(WINDOWS))
def test_normed_wasserstein_matches_scipy(reports, window):
    current = window_rows(window)
    for row in reports[window].drift:
        if row.kind != "numerical":
            continue
        ref, cur = finite(REFERENCE[row.column]), finite(current[row.column])
        want = stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)
        exact = row.column in ("x_int", "x_three")
        assert row.wasserstein_normed == pytest.approx(want, rel=1e-9 if exact else 0.02, abs=1e-12 if exact else 1e-3)


def test_the_drifted_half_drifts_and_the_stable_half_does_not(reports):
    stable = {d.column: d.drifted for d in reports["stable"].drift}
    drifted = {d.column: d.drifted for d in reports["drifted"].drift}
    assert not any(stable.values()), stable
    assert all(drifted.values()), drifted
    assert reports["stable"].drift_share == 0.0 and reports["drifted"].drift_share == 1.0
    unseen = {d.column: d.unseen_categories for d in reports["drifted"].drift if d.kind == "categorical"}
    assert unseen == {"c_region": (), "c_new": ("d",)}


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame, numerical: list[str], categorical: list[str]) -> dict:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition))
    result = snapshot.dict()
    scores = {m["config"]["column"]: (m["config"]["method"], float(m["value"]))
              for m in result["metrics"] if m["config"]["type"].endswith(":ValueDrift")}
    drifted = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
               for t in result["tests"] if t["name"].startswith("Value Drift for column")}
    return {column: (*scores[column], drifted[column]) for column in scores}


@cache
def evidently_verdicts(window: str) -> dict:
    numerical, categorical = ["x_lognormal", "x_int", "x_three"], ["c_region", "c_new"]
    columns = numerical + categorical
    ref = REFERENCE[columns].astype({"x_int": float})
    cur = window_rows(window)[columns].astype({"x_int": float}).reset_index(drop=True)
    return _evidently(ref, cur, numerical, categorical)


@pytest.mark.parametrize("window", list(WINDOWS))
def test_verdicts_and_methods_agree_with_evidently(reports, window):
    theirs = evidently_verdicts(window)
    ours = {d.column: d for d in reports[window].drift}
    for column, (method, score, drifted) in theirs.items():
        mine = ours[column]
        assert EVIDENTLY_DISPLAY_NAMES[mine.method] == method, column
        assert mine.drifted is drifted, column
        tolerance = dict(rel=0.02, abs=1e-3) if column == "x_lognormal" else dict(rel=1e-9)
        assert mine.score == pytest.approx(score, **tolerance), column


def test_a_feature_missing_in_every_row_gives_nulls_not_a_crash(loaded):
    wh, mapping, profile = loaded
    report = window_report(wh.reader(), mapping, profile, *ALL_MISSING)
    row = next(d for d in report.drift if d.column == "x_normal")
    assert (row.score, row.drifted, row.wasserstein_normed, row.ks_statistic, row.psi) == (None, None, None, None, None)
    assert row.null_share == 1.0 and row.current_n == 0
    json.dumps(report.to_json(), allow_nan=False)


def test_an_empty_window_reports_zero_rows_and_null_statistics(loaded):
    wh, mapping, profile = loaded
    report = window_report(wh.reader(), mapping, profile, data.day(30), data.day(31))
    out = report.to_json()
    assert out["rows"] == {"reference": len(REFERENCE), "current": 0}
    assert all(d["score"] is None and d["drifted"] is None for d in out["drift"])
    assert out["latency"] == {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "error_rate": None}
    assert set(out["performance"].values()) == {None}
    assert all(f["demographic_parity_difference"] is None and f["groups"] == [] for f in out["fairness"])
    assert report.drift_share is None
    json.dumps(out, allow_nan=False)


# --------------------------------------------------------------------------------------------
# Fairness, latency, performance
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window", list(WINDOWS))
def test_fairness_matches_fairlearn_to_1e_9(reports, window):
    rows = window_rows(window)
    predicted = rows[rows["prediction"].notna()]
    labelled = predicted[predicted["label"].notna()]
    for result in reports[window].fairness:
        groups = predicted[result.sensitive].fillna(MISSING_GROUP).to_numpy()
        y_pred = predicted["prediction"].astype(int).to_numpy()
        placeholder = np.zeros(len(predicted), dtype=int)  # selection rate ignores y_true
        assert result.demographic_parity_difference == pytest.approx(
            fl.demographic_parity_difference(placeholder, y_pred, sensitive_features=groups), abs=1e-9)
        assert result.disparate_impact_ratio == pytest.approx(
            fl.demographic_parity_ratio(placeholder, y_pred, sensitive_features=groups), abs=1e-9)
        lg = labelled[result.sensitive].fillna(MISSING_GROUP).to_numpy()
        ly, lp = labelled["label"].astype(int).to_numpy(), labelled["prediction"].astype(int).to_numpy()
        assert result.equalized_odds_difference == pytest.approx(
            fl.equalized_odds_difference(ly, lp, sensitive_features=lg), abs=1e-9)
        frame = MetricFrame(metrics={"tpr": true_positive_rate, "fpr": false_positive_rate}, y_true=ly, y_pred=lp,
                            sensitive_features=lg).by_group
        selection = MetricFrame(metrics=selection_rate, y_true=placeholder, y_pred=y_pred,
                                sensitive_features=groups).by_group
        for group in result.groups:
            assert group.count == int((groups == group.group).sum())
            assert group.selection_rate == pytest.approx(selection[group.group], abs=1e-9)
            assert group.tpr == pytest.approx(frame.loc[group.group, "tpr"], abs=1e-9)
            assert group.fpr == pytest.approx(frame.loc[group.group, "fpr"], abs=1e-9)


@pytest.mark.parametrize("window", list(WINDOWS))
def test_latency_matches_numpy_percentiles_within_one_percent(reports, window):
    rows = window_rows(window)
    latency = reports[window].latency
    p50, p95, p99 = np.percentile(rows["latency_ms"].dropna(), [50, 95, 99])
    assert latency.count == len(rows)
    assert latency.error_rate == pytest.approx((rows["status"] != "ok").mean(), rel=1e-12)
    assert [latency.p50_ms, latency.p95_ms, latency.p99_ms] == pytest.approx([p50, p95, p99], rel=0.01)


@pytest.mark.parametrize("window", list(WINDOWS))
def test_performance_matches_scikit_learn_on_the_labelled_rows(reports, window):
    rows = window_rows(window)
    predicted = rows[rows["prediction"].notna()]
    labelled = predicted[predicted["label"].notna()]
    y, p, s = labelled["label"].astype(int), labelled["prediction"].astype(int), labelled["score"]
    perf = reports[window].to_json()["performance"]
    assert perf["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
    assert perf["precision"] == pytest.approx(precision_score(y, p), abs=1e-12)
    assert perf["recall"] == pytest.approx(recall_score(y, p), abs=1e-12)
    assert perf["f1"] == pytest.approx(f1_score(y, p), abs=1e-12)
    assert abs(perf["roc_auc"] - roc_auc_score(y, s)) <= roc_auc_tie_bound(score_counts(s, y)) + 1e-9
    assert perf["label_coverage"] == pytest.approx(len(labelled) / len(predicted), abs=1e-12)


def test_regression_performance_matches_scikit_learn(loaded):
    wh, mapping, _ = loaded
    regression = data.mapping(mapping.table, mapping.reference.table, task="regression",
                              columns={**data.COLUMNS, "prediction": "score", "label": "x_three"})
    profile = compute_profile(wh.reader(), regression)
    report = window_report(wh.reader(), regression, profile, *STABLE)
    rows = window_rows("stable")
    both = rows[rows["score"].notna()]
    perf = report.to_json()["performance"]
    assert set(perf) == {"mae", "rmse", "label_coverage"}
    assert perf["mae"] == pytest.approx(mean_absolute_error(both["x_three"], both["score"]), rel=1e-9)
    assert perf["rmse"] == pytest.approx(np.sqrt(mean_squared_error(both["x_three"], both["score"])), rel=1e-9)
    assert perf["label_coverage"] == 1.0


def test_a_reference_taken_from_a_time_range_of_the_log(loaded):
    wh, mapping, _ = loaded
    profile = compute_profile(wh.reader(), mapping, data.day(0), data.day(2))
    report = window_report(wh.reader(), mapping, profile, data.day(2), data.day(4))
    assert report.rows_reference == len(data.in_window(LOG, data.day(0), data.day(2)))
    assert profile.definition["log_range"] == ["2026-03-01 00:00:00", "2026-03-03 00:00:00"]
    assert not any(d.drifted for d in report.drift)


# --------------------------------------------------------------------------------------------
# Shape and pure composition
# --------------------------------------------------------------------------------------------
def test_report_json_has_exactly_the_documented_shape(reports):
    out = reports["drifted"].to_json()
    assert list(out) == ["model", "rows", "drift", "fairness", "latency", "performance", "multivariate_drift",
                         "estimated_performance", "estimation", "data_quality"]
    assert list(out["rows"]) == ["reference", "current"]
    drift_keys = ["column", "kind", "psi", "js_distance", "wasserstein_normed", "ks_statistic", "chi2_pvalue",
                  "method", "score", "threshold", "drifted", "verdict", "effect", "deciding_threshold", "too_small"]
    assert [list(d) for d in out["drift"]] == [drift_keys] * 6
    assert all(list(d["effect"]) == ["statistic", "value", "lower", "upper", "noise", "confidence"]
               for d in out["drift"])
    kinds = {d["column"]: d["kind"] for d in out["drift"]}
    assert kinds == {**dict.fromkeys(data.NUMERICAL, "numerical"), **dict.fromkeys(data.CATEGORICAL, "categorical")}
    for d in out["drift"]:
        numerical = d["kind"] == "numerical"
        assert (d["wasserstein_normed"] is None, d["ks_statistic"] is None) == (not numerical, not numerical)
        assert (d["chi2_pvalue"] is None) == numerical
    assert [list(f) for f in out["fairness"]] == [["sensitive", "groups", "demographic_parity_difference",
                                                   "equalized_odds_difference", "disparate_impact_ratio"]] * 2
    assert all(list(g) == ["group", "count", "selection_rate", "tpr", "fpr"] for f in out["fairness"]
               for g in f["groups"])
    assert list(out["latency"]) == ["count", "p50_ms", "p95_ms", "p99_ms", "error_rate"]
    assert list(out["performance"]) == ["accuracy", "precision", "recall", "f1", "roc_auc", "label_coverage"]
    # window_report without the reference's PCA: the object is there, empty, with why
    assert out["multivariate_drift"] == {"value": None, "lower": None, "upper": None, "drifted": None,
                                         "reason": "not computed for this report"}
    # window_report without a calibration map (the drift page's call): no numbers, and why
    assert out["estimated_performance"] is None
    assert list(out["estimation"]) == ["method", "band", "rows", "excluded_rows", "reason"]
    assert out["estimation"]["reason"].startswith("not estimated in this view")
    json.dumps(out, allow_nan=False)


def test_skipping_the_ks_pvalue_changes_nothing_but_the_pvalue_where_ks_is_not_the_verdict():
    rng = np.random.default_rng(5)
    cases = [(rng.normal(size=3000), rng.normal(0.2, 1, 800)), (rng.lognormal(0, 1, 400), rng.lognormal(0, 1, 300)),
             (rng.normal(size=20_000), rng.normal(size=15_000))]
    methods = set()
    for ref, cur in cases:
        edges = reference_edges(ref)
        a, b = bin_sample(ref, edges), bin_sample(cur, edges)
        want = numerical_drift(a, b, deciles=decile_edges(ref), n_distinct=ref.size)
        got = numerical_drift(a, b, deciles=decile_edges(ref), n_distinct=ref.size, every_pvalue=False)
        for name in ("method", "score", "threshold", "drifted", "psi", "js_distance", "wasserstein_normed",
                     "ks_statistic", "reference_n", "current_n"):
            assert getattr(got, name) == getattr(want, name), name
        assert want.ks_pvalue is not None
        assert got.ks_pvalue == (want.ks_pvalue if got.method == "ks" else None)
        methods.add(got.method)
    assert methods == {"ks", "wasserstein"}  # both branches exercised


def test_a_drift_threshold_override_applies_to_distances_only(loaded):
    wh, mapping, profile = loaded
    rules = AlertRules(drift=DriftRule(threshold=0.001))
    rows = log_rows(mapping, *STABLE)
    aggregates = fetch_aggregates(wh.reader(), mapping, profile, rows.start, rows.end)[WHOLE]
    report = build_report(mapping, profile, aggregates, start=rows.start, end=rows.end, rules=rules)
    thresholds = {d.column: (d.method, d.threshold) for d in report.drift}
    assert all(t == 0.001 for m, t in thresholds.values() if m in ("wasserstein", "jensenshannon", "psi"))
    assert all(d.drifted for d in report.drift if d.method == "wasserstein")
