"""CBPE pushed down to DuckDB, SQLite and PostgreSQL against the row-level oracle (and NannyML where installed).

The same rows are written to each database and read by the oracle straight from the frame: the
numpy implementation of CBPE's documented algorithm (tests/support/cbpe_oracle.py, which equals
NannyML 0.13.1 on these rows) always; NannyML's own ``CBPE`` too when it is importable. The done
line: every estimate within 0.005 of the oracle's.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from services import cli
from services.errors import ConfigError
from services.mapping import parse_model_mapping
from services.monitoring import job
from services.monitoring.config import MonitoringConfig, parse_monitoring_config
from services.monitoring.estimated_performance import KIND, calibration_for, fit_calibration
from services.monitoring.fitted import load_fitted, store_fitted
from services.monitoring.reference import compute_profile
from services.monitoring.report import fetch_aggregates, window_report
from services.monitoring.store import alert_episodes, monitoring_fitted, monitoring_results
from services.stats.cbpe import METRICS
from tests.support import cbpe_oracle
from tests.support import monitoring_data as data
from tests.support.databases import KINDS, ScratchWarehouse

TOLERANCE = 0.005
DAYS = 3  # day 2 holds a scorer whose scores bunch up: its estimated ROC AUC drops
COLUMNS = {"timestamp": "ts", "version": "model_version", "prediction": "prediction", "score": "score",
           "label": "label", "latency_ms": "latency_ms", "status": "status"}


def build_reference() -> pd.DataFrame:
    ref = cbpe_oracle.make_rows(1, 3000)
    ref["x"] = np.random.default_rng(4).normal(0, 1, len(ref))
    return ref


def build_log() -> pd.DataFrame:
    """Two ordinary days and a bunched day, two versions, with NULL/NaN/+-inf scores and failed requests."""
    parts = []
    for day, (seed, shift, rows) in enumerate([(2, 0.7, 1500), (3, -0.3, 1500), (5, 0.0, 1500)]):
        part = cbpe_oracle.make_rows(seed, rows, shift=shift)
        if day == 2:  # scores squeezed around the decision line: a model that no longer separates
            part["score"] = 0.5 + (part["score"] - 0.5) * 0.08
            part["prediction"] = (part["score"] >= 0.5).astype("int64")
        rng = np.random.default_rng(seed + 100)
        part["ts"] = pd.Timestamp(data.day(day)) + pd.to_timedelta(np.sort(rng.integers(0, 86_400, rows)), unit="s")
        part["model_version"] = rng.choice(["1", "2"], rows, p=[0.6, 0.4]).astype(object)
        parts.append(part)
    log = pd.concat(parts, ignore_index=True)
    log["request_id"] = [f"r{i}" for i in range(len(log))]
    log["x"] = np.random.default_rng(9).normal(0.3, 1, len(log))
    log["latency_ms"], log["status"] = 20.0, "ok"
    log["prediction"] = log["prediction"].astype("Int64")
    log["label"] = pd.array([pd.NA] * len(log), dtype="Int64")  # no label has arrived
    log.loc[10:19, "score"] = np.nan  # written as NULL; some become IEEE NaN below
    log.loc[20:24, "score"] = np.inf
    log.loc[25:29, "score"] = -np.inf
    log.loc[30:39, ["prediction", "score"]] = [pd.NA, np.nan]  # failed requests: no prediction
    log.loc[30:39, "status"] = "error"
    return log


REFERENCE, LOG = build_reference(), build_log()
NAN_IDS = [f"r{i}" for i in range(10, 15)]


def mapping_for(log_table: str, reference_table: str, **changes):
    raw = {"table": log_table, "task": "binary_classification", "columns": dict(COLUMNS),
           "features": {"numerical": ["x"]}, "reference": {"table": reference_table}}
    raw.update(changes)
    return parse_model_mapping("scored", raw)


def window_rows(start, end, version: str | None = None) -> pd.DataFrame:
    part = LOG[(LOG["ts"] >= start) & (LOG["ts"] < end) & LOG["prediction"].notna()]
    return part if version is None else part[part["model_version"] == version]


def oracle(rows: pd.DataFrame) -> dict[str, float]:
    return cbpe_oracle.cbpe(REFERENCE["score"], REFERENCE["label"], rows["score"].to_numpy(float),
                            rows["prediction"].to_numpy(int))


def nannyml_estimates(rows: pd.DataFrame) -> dict[str, float] | None:
    """NannyML 0.13.1's own CBPE on the same rows, or None where it is not installed."""
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no usage analytics from a test
    try:
        import nannyml
    except ImportError:
        return None
    keep = np.isfinite(rows["score"].to_numpy(float))
    analysis = rows.loc[keep, ["score", "prediction"]].astype({"prediction": "int64"}).reset_index(drop=True)
    estimator = nannyml.CBPE(y_pred_proba="score", y_pred="prediction", y_true="label", metrics=list(METRICS),
                             problem_type="classification_binary", chunk_number=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(REFERENCE[["score", "prediction", "label"]])
        assert estimator.needs_calibration  # the oracle's data are made so that NannyML calibrates too
        result = estimator.estimate(analysis).to_df()
    result = result[result[("chunk", "period")] == "analysis"]
    return {m: float(result[(m, "value")].iloc[0]) for m in METRICS}


@pytest.fixture(scope="module", params=KINDS)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    wh = ScratchWarehouse(request.param, tmp_path_factory.mktemp(request.param), url)
    mapping = mapping_for(wh.write(LOG, "predictions_scored"), wh.write(REFERENCE, "reference_scored"))
    data.put_nan(wh.url, wh.schema, "predictions_scored", "score", NAN_IDS)
    yield wh, mapping
    wh.close()


def test_the_estimate_equals_the_oracle_and_nannyml_on_the_same_rows(loaded, tower):
    wh, mapping = loaded
    profile = compute_profile(wh.reader(), mapping)
    calibration = calibration_for(tower, wh.reader(), mapping, profile)
    assert calibration is not None
    report = window_report(wh.reader(), mapping, profile, data.day(0), data.day(2), calibration=calibration)
    rows = window_rows(data.day(0), data.day(2))
    got = report.estimated.metrics
    for name, want in (("numpy oracle", oracle(rows)), ("nannyml", nannyml_estimates(rows))):
        if want is None:
            continue
        for metric in METRICS:
            assert got[metric].value == pytest.approx(want[metric], abs=TOLERANCE), (name, metric)
            assert got[metric].lower <= got[metric].value <= got[metric].upper
    finite = np.isfinite(rows["score"].to_numpy(float))
    assert report.estimated.rows == int(finite.sum())
    assert report.estimated.excluded == int((~finite).sum()) == 20  # NULL, NaN, +inf, -inf scores
    out = report.to_json()
    assert set(out["estimated_performance"]) == set(METRICS)
    assert set(out["estimated_performance"]["roc_auc"]) == {"value", "lower", "upper"}
    assert out["estimation"] == {"method": "cbpe", "band": "bernoulli_3se", "rows": report.estimated.rows,
                                 "excluded_rows": 20, "reason": None}


def test_each_day_and_version_is_estimated_on_its_own_rows(loaded, tower):
    wh, mapping = loaded
    profile = compute_profile(wh.reader(), mapping)
    calibration = calibration_for(tower, wh.reader(), mapping, profile)
    groups = fetch_aggregates(wh.reader(), mapping, profile, data.day(0), data.day(DAYS), by_day=True,
                              by_version=True, calibration=calibration)
    from services.monitoring.config import EstimatedPerformanceRule
    from services.monitoring.estimated_performance import estimated_result

    checked = 0
    for (day, version), aggregates in groups.items():
        rows = window_rows(day, day + timedelta(days=1), version)
        got = estimated_result(mapping, profile, aggregates.estimated, EstimatedPerformanceRule()).metrics
        want = oracle(rows)
        for metric in METRICS:
            assert got[metric].value == pytest.approx(want[metric], abs=TOLERANCE), (day, version, metric)
        checked += 1
    assert checked == DAYS * 3  # every day: all versions, version 1, version 2


def test_an_empty_window_estimates_nothing_and_says_so(loaded, tower):
    wh, mapping = loaded
    profile = compute_profile(wh.reader(), mapping)
    calibration = calibration_for(tower, wh.reader(), mapping, profile)
    report = window_report(wh.reader(), mapping, profile, data.day(10), data.day(11), calibration=calibration)
    out = report.to_json()
    assert all(v == {"value": None, "lower": None, "upper": None} for v in out["estimated_performance"].values())
    assert out["estimation"]["rows"] == 0 and out["estimation"]["reason"] == "no scored prediction in the window"
    assert not [r for r in report.result_rows() if r["metric"].startswith("estimated_") and r["value"] is not None
                and r["metric"] not in ("estimated_rows", "estimated_excluded")]


@pytest.mark.parametrize(("changes", "reason"), [
    ({"task": "regression", "columns": {k: v for k, v in COLUMNS.items() if k != "score"}}, "binary classifiers only"),
    ({"columns": {k: v for k, v in COLUMNS.items() if k != "score"}}, "maps no score column"),
])
def test_a_regressor_or_a_model_without_score_gets_no_estimate_and_the_reason(loaded, tower, changes, reason):
    wh, base = loaded
    mapping = mapping_for(base.table, base.reference.table, **changes)
    profile = compute_profile(wh.reader(), mapping)
    assert calibration_for(tower, wh.reader(), mapping, profile) is None
    report = window_report(wh.reader(), mapping, profile, data.day(0), data.day(1))
    out = report.to_json()
    assert out["estimated_performance"] is None and reason in out["estimation"]["reason"]
    assert not [r for r in report.result_rows() if r["metric"].startswith("estimated_")]
    assert load_fitted(tower, profile.reference_id, KIND) is None


def test_the_weighted_fit_on_distinct_scores_is_the_fit_on_the_rows():
    ref = REFERENCE.copy()
    ref["score"] = ref["score"].round(2)  # many ties
    values, index = np.unique(ref["score"], return_inverse=True)
    positives, counts = np.bincount(index, weights=ref["label"]), np.bincount(index)
    calibration = fit_calibration(values, positives, counts)
    probes = np.linspace(-0.1, 1.1, 500)
    rows_fit = cbpe_oracle.calibrator(ref["score"], ref["label"])
    np.testing.assert_allclose(calibration.predict(probes), rows_fit.predict(probes), atol=1e-12)


def test_a_reference_with_labels_other_than_0_1_gives_no_estimate_and_keeps_nothing(tmp_path, tower):
    """Attack (a data engineer logs label 2): refused in words, never rounded into a calibration."""
    wh = ScratchWarehouse("duckdb", tmp_path)
    try:
        bad = REFERENCE.copy()
        bad.loc[:5, "label"] = 2
        mapping = mapping_for(wh.write(LOG, "predictions_scored"), wh.write(bad, "reference_scored"))
        profile = compute_profile(wh.reader(), mapping)
        assert calibration_for(tower, wh.reader(), mapping, profile) is None
        out = window_report(wh.reader(), mapping, profile, data.day(0), data.day(1)).to_json()
        assert out["estimated_performance"] is None and "no labelled predictions" in out["estimation"]["reason"]
        with tower.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(monitoring_fitted)).scalar() == 0
    finally:
        wh.close()


@pytest.mark.parametrize("payload", [
    {"format": 1, "x": [0.2, 0.1], "y": [0.1, 0.2], "grid": [0.1, 0.2], "rows": 3},  # decreasing breakpoints
    {"format": 1, "x": [0.1], "y": [0.5]},  # no grid
    {"format": 1, "x": "0.1", "y": [0.5], "grid": [0.1]},  # not a list
])
def test_a_tampered_calibration_in_tower_state_is_fitted_again_not_used(loaded, tower, payload):
    """Attack (a tower DB admin edits monitoring_fitted): the job refits instead of failing or estimating with it."""
    wh, mapping = loaded
    profile = compute_profile(wh.reader(), mapping)
    good = calibration_for(tower, wh.reader(), mapping, profile)
    store_fitted(tower, profile.reference_id, KIND, mapping.name, payload)
    again = calibration_for(tower, wh.reader(), mapping, profile)
    assert again is not None and np.array_equal(again.x, good.x) and np.array_equal(again.grid, good.grid)
    assert load_fitted(tower, profile.reference_id, KIND)["x"] == good.x.tolist()


# --------------------------------------------------------------------------------------------
# The job, its rule and the report command
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    wh = ScratchWarehouse("duckdb", tmp_path_factory.mktemp("duck"))
    mapping = mapping_for(wh.write(LOG, "predictions_scored"), wh.write(REFERENCE, "reference_scored"))
    yield wh, mapping
    wh.close()


def stored(tower: sa.Engine, metric: str, version: str = "*") -> dict:
    r = monitoring_results.c
    with tower.connect() as conn:
        return {row.window_start: row for row in conn.execute(sa.select(monitoring_results).where(
            r.metric == metric, r.version == version))}


def test_the_job_stores_estimates_per_day_and_version_and_the_drop_rule_opens_an_episode(duck, tower):
    wh, mapping = duck
    config = MonitoringConfig()
    job.run_model(wh.reader(), tower, mapping, config, since=data.day(0).date())
    first = stored(tower, "estimated_roc_auc")
    job.run_model(wh.reader(), tower, mapping, config, since=data.day(0).date())  # re-run: same rows, no duplicates
    again = stored(tower, "estimated_roc_auc")
    assert sorted(first) == sorted(again) == [data.day(d) for d in range(DAYS)]
    lower, upper = stored(tower, "estimated_roc_auc_lower"), stored(tower, "estimated_roc_auc_upper")
    for day, row in again.items():
        want = oracle(window_rows(day, day + timedelta(days=1)))["roc_auc"]
        assert row.value == pytest.approx(want, abs=TOLERANCE)
        assert lower[day].value <= row.value <= upper[day].value
        assert row.method == "cbpe" and row.threshold == pytest.approx(0.95 * reference_auc())
        assert row.alert == (upper[day].value < row.threshold)
    for version in ("1", "2"):
        day = data.day(1)
        want = oracle(window_rows(day, day + timedelta(days=1), version))["accuracy"]
        assert stored(tower, "estimated_accuracy", version)[day].value == pytest.approx(want, abs=TOLERANCE)
    assert [again[data.day(d)].alert for d in range(DAYS)] == [False, False, True]
    with tower.connect() as conn:
        episodes = conn.execute(sa.select(alert_episodes).where(
            alert_episodes.c.rule == "estimated_performance_drop")).all()
    assert [(e.subject, e.opened_window, e.status) for e in episodes] == [("estimated_roc_auc", data.day(2), "open")]
    assert "estimated roc_auc (CBPE, before labels)" in episodes[0].message


def reference_auc() -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(REFERENCE["label"], REFERENCE["score"].round(4)))


def test_the_rule_can_be_turned_off_and_refuses_a_regressor_metric():
    off = parse_monitoring_config({"alerts": {"estimated_performance_drop": {"enabled": False, "min_rows": 50}}}, {})
    assert not off.alerts.estimated_performance_drop.enabled and off.alerts.estimated_performance_drop.min_rows == 50
    with pytest.raises(ConfigError, match="estimated_performance_drop.metric is 'mae'"):
        parse_monitoring_config({"alerts": {"estimated_performance_drop": {"metric": "mae"}}}, {})
    with pytest.raises(ConfigError, match="min_rows must be a whole number"):
        parse_monitoring_config({"alerts": {"estimated_performance_drop": {"min_rows": 1.5}}}, {})


def test_the_report_command_prints_estimated_performance(duck, tmp_path, monkeypatch, capsys):
    wh, mapping = duck
    config = {"models": {"scored": {"table": mapping.table, "task": "binary_classification", "columns": COLUMNS,
                                    "features": {"numerical": ["x"]}, "reference": {"table": mapping.reference.table}}}}
    path = tmp_path / "tower.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    wh.reader().dispose()
    monkeypatch.setenv("TOWER_CONFIG", str(path))
    monkeypatch.setenv("WAREHOUSE_URL", wh.url)
    monkeypatch.setenv("TOWER_DB_URL", f"sqlite:///{tmp_path / 'tower.db'}")
    assert cli.main(["report", "--model", "scored", "--start", "2026-03-01", "--end", "2026-03-02",
                     "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = oracle(window_rows(data.day(0), data.day(1)))
    for metric in METRICS:
        got = out["estimated_performance"][metric]
        assert got["value"] == pytest.approx(want[metric], abs=TOLERANCE)
        assert got["lower"] <= got["value"] <= got["upper"]
    assert out["estimation"]["band"] == "bernoulli_3se" and out["estimation"]["excluded_rows"] == 20
