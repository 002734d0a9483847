"""The "Why" panel's numbers against pandas on the raw rows, in DuckDB, SQLite and PostgreSQL.

The oracle computes each metric per window and per group with pandas (the same rows the warehouse
holds, NULL/NaN/+-inf predictions and labels counted as missing); the bars must add up to the change
to 1e-9 and each must equal ``w' m' - w m`` of pandas. Feature ranking and importances are checked
on stored heat maps and run metrics written for the purpose.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd
import pytest

from services.errors import ConfigError, MappingError
from services.mapping import ModelMapping, parse_model_mapping
from services.monitoring import root_cause as rc
from services.stores.warehouse.partitions import MISSING, REST
from services.stores.warehouse.rows import log_rows, reference_rows
from tests.support import monitoring_data as data
from tests.support.databases import KINDS, ScratchWarehouse

SEGMENTS = [{"name": "north", "column": "c_region", "values": ["north"]},
            {"name": "low-x", "column": "x_normal", "range": [None, 9]},
            {"name": "mid-x", "column": "x_normal", "range": [8, 11]}]  # overlaps low-x: first match wins
LOG = pd.concat([data.make_log(seed=1, rows=2500, days=4),
                 data.make_log(seed=3, rows=2500, days=4, shift=1.0, start=data.day(4))], ignore_index=True)
LOG["request_id"] = [f"q{i}" for i in range(len(LOG))]
REFERENCE = data.make_reference(rows=3000)
WINDOW = (data.day(4), data.day(8))
BEFORE = (data.day(0), data.day(4))


def mapping_of(log: str, reference: str, task: str = "binary_classification") -> ModelMapping:
    return parse_model_mapping("synthetic", {
        "table": log, "task": task, "columns": data.COLUMNS,
        "features": {"numerical": data.NUMERICAL, "categorical": data.CATEGORICAL}, "sensitive": data.SENSITIVE,
        "reference": {"table": reference}, "segments": SEGMENTS})


@pytest.fixture(scope="module", params=KINDS)
def warehouse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[ScratchWarehouse, ModelMapping]]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    wh = ScratchWarehouse(request.param, tmp_path_factory.mktemp(request.param), url)
    log, ref = wh.write(LOG, "predictions_synthetic"), wh.write(REFERENCE, "reference_synthetic")
    yield wh, mapping_of(log, ref)
    wh.close()


# ----------------------------------------------------------------- the oracle: pandas on raw rows
def groups_of(frame: pd.DataFrame, column: str) -> pd.Series:
    """Each row's group in a partition by ``column`` as documented: values (NULL: (missing)), or the
    declared ranges of x_normal in order, the rest (NULL, NaN, +-inf included) last."""
    if column != "x_normal":
        return frame[column].astype(object).where(frame[column].notna(), MISSING).astype(str)
    x = frame[column].astype(float)
    finite = np.isfinite(x)
    out = pd.Series(REST, index=frame.index, dtype=object)
    out[finite & (x >= 8) & (x < 11)] = "mid-x"
    out[finite & (x < 9)] = "low-x"  # declared first: wins where they overlap
    return out


def oracle_parts(frame: pd.DataFrame, metric: str, column: str) -> pd.DataFrame:
    """Per group: numerator k and denominator n of the metric."""
    f = frame[frame["prediction"].notna()].copy()
    f["g"] = groups_of(f, column)
    p = f["prediction"].astype(float)
    y = f["label"].astype(float)
    labelled = y.notna()
    per_row = {
        "accuracy": ((p == y) & labelled, labelled),
        "error_rate": ((p != y) & labelled, labelled),
        "precision": ((p == 1) & (y == 1), labelled & (p == 1)),
        "recall": ((p == 1) & (y == 1), labelled & (y == 1)),
        "selection_rate": (p == 1, pd.Series(True, index=f.index)),
    }[metric]
    return pd.DataFrame({"k": per_row[0].astype(float), "n": per_row[1].astype(float), "g": f["g"]}) \
        .groupby("g")[["k", "n"]].sum()


def assert_bars_match(bars: rc.SegmentBars, before: pd.DataFrame, after: pd.DataFrame) -> None:
    d = bars.decomposition
    assert d is not None
    n0, n1 = before["n"].sum(), after["n"].sum()
    assert math.isclose(d.before, before["k"].sum() / n0, abs_tol=1e-12)
    assert math.isclose(d.after, after["k"].sum() / n1, abs_tol=1e-12)
    assert abs(sum(c.contribution for c in d.contributions) - d.change) < 1e-9
    assert set(d.groups) == set(before.index) | set(after.index), bars.column
    for c in d.contributions:
        k0 = before["k"].get(c.group, 0.0)
        k1 = after["k"].get(c.group, 0.0)
        assert abs(c.contribution - (k1 / n1 - k0 / n0)) < 1e-12, (bars.column, c.group)
        assert math.isclose(c.weight_after, after["n"].get(c.group, 0.0) / n1, abs_tol=1e-12)


@pytest.mark.parametrize("metric", list(rc.CLASSIFICATION_METRICS))
def test_each_bar_equals_pandas_on_the_raw_rows_and_the_bars_sum_to_the_change(warehouse, metric):
    wh, mapping = warehouse
    found = rc.explain_segments(wh.reader(), mapping, metric, reference_rows(mapping), log_rows(mapping, *WINDOW),
                                keep=100)
    assert found.reason is None
    columns = {b.column for b in found.partitions}
    assert columns == {"c_region", "c_new", "gender", "band", "x_normal"}  # values, values, sensitive, ranges
    window = data.in_window(LOG, *WINDOW)
    for bars in found.partitions:
        assert_bars_match(bars, oracle_parts(REFERENCE, metric, bars.column),
                          oracle_parts(window, metric, bars.column))


def test_the_baseline_may_be_the_days_before_and_links_name_declared_segments(warehouse):
    wh, mapping = warehouse
    found = rc.explain_segments(wh.reader(), mapping, "accuracy", log_rows(mapping, *BEFORE),
                                log_rows(mapping, *WINDOW))
    region = next(b for b in found.partitions if b.column == "c_region")
    assert_bars_match(region, oracle_parts(data.in_window(LOG, *BEFORE), "accuracy", "c_region"),
                      oracle_parts(data.in_window(LOG, *WINDOW), "accuracy", "c_region"))
    assert region.segments["north"] == "north" and region.segments["south"] is None
    ranged = next(b for b in found.partitions if b.column == "x_normal")
    assert ranged.ranged and ranged.segments["mid-x"] == "mid-x" and ranged.segments[REST] is None
    # The split that isolates a segment whose own rate moved comes first.
    from services.stats.decomposition import largest_rate_part
    ranks = [largest_rate_part(b.decomposition) for b in found.partitions]
    assert ranks == sorted(ranks, reverse=True)


def test_many_segments_are_lumped_and_still_sum_exactly(warehouse):
    wh, mapping = warehouse
    found = rc.explain_segments(wh.reader(), mapping, "accuracy", reference_rows(mapping), log_rows(mapping, *WINDOW),
                                keep=2)
    region = next(b for b in found.partitions if b.column == "c_region")
    d = region.decomposition
    assert len(d.contributions) == 3 and any(g.startswith("other (") for g in d.groups)
    oracle = oracle_parts(data.in_window(LOG, *WINDOW), "accuracy", "c_region")
    assert math.isclose(d.after, oracle["k"].sum() / oracle["n"].sum(), abs_tol=1e-12)
    assert abs(sum(c.contribution for c in d.contributions) - d.change) < 1e-9


def test_regression_mae_bars_match_pandas(warehouse):
    wh, mapping = warehouse
    reg = mapping_of(mapping.table, mapping.reference.table, task="regression")
    found = rc.explain_segments(wh.reader(), reg, "mae", log_rows(reg, *BEFORE), log_rows(reg, *WINDOW))

    def parts(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        f = frame.copy()
        pred = f["prediction"].astype(float)
        err = (pred - f["label"].astype(float)).abs()
        ok = np.isfinite(pred) & np.isfinite(f["label"].astype(float))
        return pd.DataFrame({"k": err.where(ok, 0.0), "n": ok.astype(float), "g": groups_of(f, column)}) \
            .groupby("g")[["k", "n"]].sum()

    for bars in found.partitions:
        before, after = parts(data.in_window(LOG, *BEFORE), bars.column), parts(data.in_window(LOG, *WINDOW),
                                                                                 bars.column)
        before, after = before[before["n"] > 0], after[after["n"] > 0]
        d = bars.decomposition
        assert math.isclose(d.after, after["k"].sum() / after["n"].sum(), abs_tol=1e-12)
        assert abs(sum(c.contribution for c in d.contributions) - d.change) < 1e-9
        for c in d.contributions:
            expected = (after["k"].get(c.group, 0.0) / after["n"].sum()
                        - before["k"].get(c.group, 0.0) / before["n"].sum())
            assert abs(c.contribution - expected) < 1e-12


def test_a_window_without_labels_says_it_needs_labels(warehouse):
    wh, mapping = warehouse
    empty = log_rows(mapping, data.day(20), data.day(21))
    found = rc.explain_segments(wh.reader(), mapping, "accuracy", reference_rows(mapping), empty)
    assert found.partitions == () and found.reason.startswith("needs labels: the alert window")


def test_a_metric_that_is_no_mean_is_refused_and_the_panel_falls_back(warehouse):
    wh, mapping = warehouse
    with pytest.raises(ConfigError, match="cannot be split by segment"):
        rc.explain_segments(wh.reader(), mapping, "roc_auc", reference_rows(mapping), log_rows(mapping, *WINDOW))
    metric, note = rc.default_metric("binary_classification", "estimated_roc_auc")
    assert metric == "accuracy" and "ROC AUC is not a mean over rows" in note
    assert rc.default_metric("binary_classification", "recall") == ("recall", None)
    assert rc.default_metric("regression", "<script>") == ("mae", None)


def test_scores_logged_as_predictions_are_refused_not_rounded(tmp_path):
    wh = ScratchWarehouse("duckdb", tmp_path)
    try:
        log = LOG.head(500).copy()
        log["prediction"] = log["score"]
        mapping = mapping_of(wh.write(log, "predictions_synthetic"), wh.write(REFERENCE, "reference_synthetic"))
        with pytest.raises(MappingError, match="other than 0 and 1"):
            rc.explain_segments(wh.reader(), mapping, "accuracy", reference_rows(mapping),
                                log_rows(mapping, data.day(0), data.day(8)))
    finally:
        wh.close()


def test_hostile_category_values_stay_data(tmp_path):
    wh = ScratchWarehouse("sqlite", tmp_path)
    try:
        log = data.in_window(LOG, *WINDOW).copy()
        hostile = "north'); DROP TABLE predictions_synthetic; --<b>x</b>" + "é" * 500
        log.loc[log.index[:300], "c_region"] = hostile
        mapping = mapping_of(wh.write(log, "predictions_synthetic"), wh.write(REFERENCE, "reference_synthetic"))
        found = rc.explain_segments(wh.reader(), mapping, "accuracy", reference_rows(mapping),
                                    log_rows(mapping, *WINDOW), keep=100)
        region = next(b for b in found.partitions if b.column == "c_region")
        assert hostile in region.decomposition.groups
        assert_bars_match(region, oracle_parts(REFERENCE, "accuracy", "c_region"),
                          oracle_parts(log, "accuracy", "c_region"))
    finally:
        wh.close()


# ----------------------------------------------------------------- features and links
def heatmap(rows: list[tuple[str, float, bool]], days: int = 2) -> pd.DataFrame:
    out = [{"day": pd.Timestamp("2026-03-01") + pd.Timedelta(days=d), "column": f, "ratio": r, "drifted": dr}
           for f, r, dr in rows for d in range(days)]
    return pd.DataFrame(out)


def test_features_are_ranked_by_drift_times_normalised_importance():
    maps = {"": heatmap([("income", 4.0, True), ("age", 2.0, True), ("region", 0.5, False)]),
            "north": heatmap([("income", 1.0, False)])}
    by_drift = rc.rank_features(maps, None)
    assert [(f.feature, f.segment) for f in by_drift][:2] == [("income", ""), ("age", "")]
    assert by_drift[0].importance is None and by_drift[0].drifted_days == 2
    importances = rc.feature_importances({"feature_importance.income": 0.1, "feature_importance.age": -0.7,
                                          "feature_importance.region": 0.2, "accuracy": 0.9,
                                          "feature_importance.not_a_feature": 9.0},
                                         ["income", "age", "region"])
    assert importances == pytest.approx({"income": 0.1, "age": 0.7, "region": 0.2})
    weighted = rc.rank_features(maps, importances)
    assert [(f.feature, f.segment) for f in weighted][0] == ("age", "")  # 2 x 0.7 beats 4 x 0.1
    assert weighted[0].weighted == pytest.approx(1.4)


@pytest.mark.parametrize("metrics", [{}, {"accuracy": 0.9}, {"feature_importance.income": 0.0},
                                     {"feature_importance.income": float("nan")}])
def test_a_run_without_usable_importances_ranks_by_drift_alone(metrics):
    assert rc.feature_importances(metrics, ["income", "age"]) is None


def test_why_links_carry_the_episode_days_and_drift_links_the_feature_and_segment():
    assert rc.why_params("m", "performance", pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-05"), "roc_auc") == \
        {"model": "m", "start": "2026-03-02", "end": "2026-03-05", "metric": "roc_auc"}
    assert rc.why_params("m", "drift", "2026-03-02", None) == {"model": "m", "start": "2026-03-02",
                                                               "end": "2026-03-02"}
    assert rc.why_params("m", "latency_p95", "2026-03-02", "2026-03-03") is None
    assert rc.why_params("m", "drift", "not a day", None) is None
    assert rc.drift_params("m", "income", "north", date(2026, 3, 2)) == \
        {"model": "m", "feature": "income", "segment": "north", "start": "2026-03-02"}
    assert "segment" not in rc.drift_params("m", "income", None, date(2026, 3, 2))
    with pytest.raises(ConfigError, match="before its first day"):
        rc.days_window(date(2026, 3, 5), date(2026, 3, 2))


def test_a_window_without_labels_is_split_on_the_cbpe_expectation_of_each_segment(warehouse):
    """The window's labels have not arrived: each segment's accuracy is what CBPE expects, each row's label
    counted as its calibrated probability. Oracle: the same map applied to the raw rows by numpy, per group."""
    from services.monitoring.estimated_performance import fit_calibration
    from services.stores.warehouse.calibrated import reference_score_labels

    wh, mapping = warehouse
    calibration = fit_calibration(*reference_score_labels(wh.reader(), mapping, reference_rows(mapping)))
    unlabelled = log_rows(mapping, data.day(20), data.day(21))  # no row at all: nothing to split
    assert rc.explain_segments(wh.reader(), mapping, "accuracy", reference_rows(mapping), unlabelled,
                               calibration=calibration).reason is not None
    # The whole window as if no label had arrived: the same rows with their labels removed.
    window = data.in_window(LOG, *WINDOW).copy()
    window["label"] = pd.array([pd.NA] * len(window), dtype="Int64")
    table = wh.write(window, "predictions_unlabelled")
    blind = mapping_of(table, mapping.reference.table or "")
    found = rc.explain_segments(wh.reader(), blind, "accuracy", reference_rows(blind), log_rows(blind, *WINDOW),
                                calibration=calibration)
    assert found.reason is None and found.estimated == (False, True)
    f = window[window["prediction"].notna()].copy()
    score = f["score"].astype(float).to_numpy()
    scored = np.isfinite(score)
    f = f[scored].copy()
    p = calibration.predict(score[scored])
    pred = f["prediction"].astype(float).to_numpy()
    f["k"] = np.where(pred == 1, p, 1 - p)  # expected correct: P(label = prediction)
    f["n"] = 1.0
    before = oracle_parts(REFERENCE, "accuracy", "c_region")
    bars = next(b for b in found.partitions if b.column == "c_region")
    f["g"] = groups_of(f, "c_region")
    after = f.groupby("g")[["k", "n"]].sum()
    d = bars.decomposition
    assert d is not None and set(d.groups) == set(before.index) | set(after.index)
    assert abs(sum(c.contribution for c in d.contributions) - d.change) < 1e-9
    assert math.isclose(d.after, after["k"].sum() / after["n"].sum(), abs_tol=1e-9)
    for c in d.contributions:
        expected = (after["k"].get(c.group, 0.0) / after["n"].sum()
                    - before["k"].get(c.group, 0.0) / before["n"].sum())
        assert abs(c.contribution - expected) < 1e-9, c.group
