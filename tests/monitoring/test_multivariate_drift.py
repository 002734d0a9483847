"""Multivariate drift (PCA reconstruction error) pushed down to DuckDB, SQLite and PostgreSQL.

The oracle is scikit-learn on the same raw rows, read straight from the pandas frame that was
written: SimpleImputer(mean) after NaN/+-inf are made missing, StandardScaler, PCA(n_components=0.65),
the row's distance to its inverse transform, averaged; the band as NannyML chunks the reference
(``n // 10`` rows in table order, the remainder kept), mean ± 3 population σ.

The log's days 0-3 are drawn like the reference; on days 4-7 feature b is anti-correlated with a
instead of correlated: every marginal distribution is the same, so univariate drift sees nothing,
while the reconstruction error leaves its band.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from services import cli
from services.mapping import ModelMapping
from services.monitoring import job, multivariate, tower_reads
from services.monitoring.alerts import load_series
from services.monitoring.config import MonitoringConfig
from services.monitoring.reference import ReferenceProfile, compute_profile
from services.monitoring.report import window_report
from services.monitoring.store import alert_episodes, monitoring_fitted, monitoring_results
from tests.support import monitoring_data as data
from tests.support.databases import KINDS, ScratchWarehouse

ODD = "Size_X"  # mixed case: PostgreSQL finds it only when the dialect quotes it
FEATURES = ["a", "b", ODD, "d"]
STABLE = (data.day(0), data.day(4))
FLIPPED = (data.day(4), data.day(8))
EMPTY = (data.day(20), data.day(21))


def features(rng: np.random.Generator, n: int, flip: bool = False) -> pd.DataFrame:
    a = rng.normal(10, 2, n)
    b = 10 + (-0.9 if flip else 0.9) * (a - 10) + rng.normal(0, 0.8, n)
    frame = pd.DataFrame({"a": a, "b": b, ODD: np.exp(rng.normal(1, 0.4, n)), "d": 3 * a + rng.normal(0, 1, n)})
    specials = rng.random((n, 4))
    values = frame.to_numpy()
    values[specials < 0.02] = np.nan
    values[(specials >= 0.02) & (specials < 0.025)] = np.inf
    values[(specials >= 0.025) & (specials < 0.03)] = -np.inf
    return pd.DataFrame(values, columns=frame.columns)


def build_log() -> pd.DataFrame:
    rng = np.random.default_rng(21)
    stable = data.make_log(seed=1, rows=2400, days=4)
    flipped = data.make_log(seed=3, rows=2400, days=4, start=data.day(4))
    flipped["request_id"] = "f" + flipped["request_id"]
    log = pd.concat([stable, flipped], ignore_index=True)[list(data.COLUMNS.values())]
    log = pd.concat([log, pd.concat([features(rng, 2400), features(rng, 2400, flip=True)], ignore_index=True)],
                    axis=1)
    log.loc[log.index[::97], "a"] = np.nan  # written as NULL; DuckDB and PostgreSQL then get real NaN there
    return log


def build_reference() -> pd.DataFrame:
    reference = data.make_reference(rows=3005)[["model_version", "prediction", "score", "label"]]
    return pd.concat([reference, features(np.random.default_rng(8), 3005)], axis=1)


LOG = build_log()
REFERENCE = build_reference()


def mapping_for(log_table: str, reference_table: str, numerical: list[str] = FEATURES) -> ModelMapping:
    return data.mapping(log_table, reference_table, features={"numerical": numerical, "categorical": []},
                        sensitive=[])


# --- the oracle --------------------------------------------------------------------------------
def _clean(frame: pd.DataFrame) -> np.ndarray:
    x = frame[FEATURES].to_numpy(float)
    return np.where(np.isfinite(x), x, np.nan)


def _pipeline() -> tuple[SimpleImputer, StandardScaler, PCA]:
    ref = _clean(REFERENCE)
    imputer = SimpleImputer(strategy="mean").fit(ref)
    scaler = StandardScaler().fit(imputer.transform(ref))
    pca = PCA(n_components=0.65, random_state=16).fit(scaler.transform(imputer.transform(ref)))
    return imputer, scaler, pca


def oracle_errors(frame: pd.DataFrame) -> np.ndarray:
    imputer, scaler, pca = _pipeline()
    z = scaler.transform(imputer.transform(_clean(frame)))
    return np.linalg.norm(z - pca.inverse_transform(pca.transform(z)), axis=1)


def oracle_band() -> tuple[float | None, float]:
    errors = oracle_errors(REFERENCE)
    size = len(errors) // 10
    means = [errors[i:i + size].mean() for i in range(0, len(errors), size)]  # NannyML keeps the remainder
    mean, sd = np.mean(means), np.std(means)
    return (mean - 3 * sd if mean - 3 * sd > 0 else None), mean + 3 * sd


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=KINDS)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ScratchWarehouse, ModelMapping, ReferenceProfile]]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    wh = ScratchWarehouse(request.param, tmp_path_factory.mktemp(request.param), url)
    mapping = mapping_for(wh.write(LOG, "predictions_mv"), wh.write(REFERENCE, "reference_mv"))
    nan_rows = list(LOG["request_id"].iloc[::97])  # real IEEE NaN where the database keeps it (not only NULL)
    data.put_nan(wh.url, wh.schema, "predictions_mv", "a", nan_rows)
    profile = compute_profile(wh.reader(), mapping)
    yield wh, mapping, profile
    wh.close()


def log_in(start, end) -> pd.DataFrame:
    return data.in_window(LOG, start, end)


# --- push-down against the oracle ----------------------------------------------------------------
def test_the_fit_and_band_match_scikit_learn_and_nannyml_chunking(loaded, tower):
    wh, mapping, profile = loaded
    model = multivariate.reconstruction_model(tower, wh.reader(), mapping, profile)
    lower, upper = oracle_band()
    assert model.fit is not None and model.band is not None
    assert model.fit.components.shape[0] == _pipeline()[2].n_components_
    assert model.band.chunks == 11  # 3005 rows: ten chunks of 300 and the remainder of 5
    assert model.band.upper == pytest.approx(upper, rel=1e-6)
    assert (model.band.lower is None) == (lower is None)
    if lower is not None:
        assert model.band.lower == pytest.approx(lower, rel=1e-6)


@pytest.mark.parametrize("window", [STABLE, FLIPPED, (data.day(5), data.day(6))])
def test_a_windows_error_is_scikit_learns_mean_row_error_within_1_percent(loaded, tower, window):
    wh, mapping, profile = loaded
    model = multivariate.reconstruction_model(tower, wh.reader(), mapping, profile)
    result = multivariate.window_result(wh.reader(), mapping, model, *window)
    rows = log_in(*window)
    want = oracle_errors(rows).mean()
    assert result.value == pytest.approx(want, rel=0.01)
    assert result.value == pytest.approx(want, rel=1e-6)  # in fact to rounding
    assert result.rows == len(rows)
    assert result.missing == int((~np.isfinite(rows[FEATURES].to_numpy(float))).sum())


def test_a_correlation_change_is_missed_by_univariate_drift_and_caught_by_reconstruction_error(loaded, tower):
    wh, mapping, profile = loaded
    model = multivariate.reconstruction_model(tower, wh.reader(), mapping, profile)
    stable = window_report(wh.reader(), mapping, profile, *STABLE, pca=model)
    flipped = window_report(wh.reader(), mapping, profile, *FLIPPED, pca=model)
    assert not any(d.drifted for d in flipped.drift), [(d.column, d.score) for d in flipped.drift]
    assert flipped.multivariate is not None and flipped.multivariate.drifted is True
    assert stable.multivariate is not None and stable.multivariate.drifted is False
    assert flipped.multivariate.value > model.band.upper > stable.multivariate.value


def test_an_empty_window_has_no_value_and_says_why(loaded, tower):
    wh, mapping, profile = loaded
    model = multivariate.reconstruction_model(tower, wh.reader(), mapping, profile)
    report = window_report(wh.reader(), mapping, profile, *EMPTY, pca=model)
    out = report.to_json()["multivariate_drift"]
    assert out["value"] is None and out["drifted"] is None and out["reason"] == "no rows in the window"
    assert out["upper"] == pytest.approx(model.band.upper)


def test_a_value_far_beyond_any_scale_is_clamped_not_a_failed_statement(loaded, tower, tmp_path_factory):
    """A data-platform row with 1e308 (finite, so not imputed): squares would overflow, and PostgreSQL and
    DuckDB stop a statement on overflow. The window still gets a (huge, drifted) value."""
    wh, mapping, profile = loaded
    model = multivariate.reconstruction_model(tower, wh.reader(), mapping, profile)
    huge = LOG.iloc[:3].copy()
    huge["ts"] = pd.Timestamp(data.day(30))
    huge["request_id"] = ["h1", "h2", "h3"]
    huge["a"], huge["b"] = 1e308, -1e308
    other = ScratchWarehouse(wh.kind, tmp_path_factory.mktemp("huge"), wh.url if wh.kind == "postgres" else None)
    try:
        table = other.write(huge, "predictions_mv")
        odd = mapping_for(table, mapping.reference.table or "")
        result = multivariate.window_result(other.reader(), odd, model, data.day(30), data.day(31))
    finally:
        other.close()
    assert result.rows == 3 and result.value is not None and result.value > 1e11 and result.drifted is True


# --- what has no PCA ----------------------------------------------------------------------------
def test_one_numerical_feature_gives_no_value_with_the_reason(loaded, tower):
    wh, mapping, _ = loaded
    one = mapping_for(mapping.table, mapping.reference.table or "", numerical=["a"])
    profile = compute_profile(wh.reader(), one)
    model = multivariate.reconstruction_model(tower, wh.reader(), one, profile)
    report = window_report(wh.reader(), one, profile, *STABLE, pca=model)
    assert report.to_json()["multivariate_drift"] == {
        "value": None, "lower": None, "upper": None, "drifted": None,
        "reason": "1 numerical feature(s) mapped; a reconstruction error needs at least 2."}
    assert not [r for r in report.result_rows() if r["metric"].startswith("reconstruction_error")]


def test_the_fit_is_kept_once_per_reference_and_a_tampered_one_is_fitted_again(loaded, tower):
    """A tower-state admin (or a broken writer) leaves a payload that is not numbers: the next run fits
    again instead of failing, and the value is the oracle's."""
    wh, mapping, profile = loaded
    multivariate.reconstruction_model(tower, wh.reader(), mapping, profile)
    f = monitoring_fitted.c
    with tower.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(monitoring_fitted)
                            .where(f.kind == "pca")).scalar() == 1
    for bad in ({"format": 1, "columns": FEATURES, "means": ["1; DROP TABLE x"], "scales": [1], "components": [[1]],
                 "explained": 1},
                {"format": 1, "columns": ["a", "zzz"], "means": [1.0, 2.0], "scales": [1.0, 1.0],
                 "components": [[1.0, 0.0]], "explained": 0.7}):
        with tower.begin() as conn:
            conn.execute(sa.update(monitoring_fitted).where(f.kind == "pca").values(payload=json.dumps(bad)))
        model = multivariate.reconstruction_model(tower, wh.reader(), mapping, profile)
        result = multivariate.window_result(wh.reader(), mapping, model, *STABLE)
        assert result.value == pytest.approx(oracle_errors(log_in(*STABLE)).mean(), rel=1e-6)


# --- the job, its alert rule, the report command ---------------------------------------------------
def test_the_job_stores_one_value_per_day_and_the_rule_opens_an_episode_after_three_days(loaded, tower):
    wh, mapping, _ = loaded
    if wh.kind != "duckdb":
        pytest.skip("the job is dialect-independent above the push-down; DuckDB runs it")
    run = job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=data.day(0).date(),
                        until=data.day(7).date())
    r = monitoring_results.c
    with tower.connect() as conn:
        stored = conn.execute(sa.select(r.window_start, r.version, r.value, r.threshold, r.alert, r.method).where(
            r.metric == "reconstruction_error").order_by(r.window_start, r.version)).all()
        lower = conn.execute(sa.select(r.value).where(r.metric == "reconstruction_error_lower", r.version == "*")
                             .order_by(r.window_start)).scalars().all()
        episodes = conn.execute(sa.select(alert_episodes.c.rule, alert_episodes.c.opened_window,
                                          alert_episodes.c.message)).all()
    everyone = [s for s in stored if s.version == "*"]
    assert len(everyone) == 8 and {s.version for s in stored} == {"*", "1", "2"}
    lo, up = oracle_band()
    for s in everyone:
        rows = log_in(s.window_start, s.window_start + timedelta(days=1))
        assert s.value == pytest.approx(oracle_errors(rows).mean(), rel=1e-6)
        assert s.threshold == pytest.approx(up, rel=1e-6) and s.method == "pca"
        assert s.alert is (not ((lo or -np.inf) < s.value < up))
    assert [s.alert for s in everyone] == [False] * 4 + [True] * 4
    version_1 = [s for s in stored if s.version == "1" and s.window_start == data.day(5)][0]
    day5 = log_in(data.day(5), data.day(6))
    assert version_1.value == pytest.approx(oracle_errors(day5[day5["model_version"] == "1"]).mean(), rel=1e-6)
    assert all((v is None) == (lo is None) for v in lower)
    mv = [e for e in episodes if e.rule == "multivariate_drift"]
    assert [e.opened_window for e in mv] == [data.day(6)]  # the third flipped day in a row
    assert "multivariate drift" in mv[0].message and run.alerts is not None and run.alerts.active >= 1
    latest = tower_reads.latest_multivariate(tower, mapping.name)  # what the fleet shows
    assert latest is not None and latest.window_start == data.day(7)
    assert (latest.value, latest.upper, latest.drifted) == (everyone[-1].value, everyone[-1].threshold, True)
    assert latest.lower == lower[-1]
    over_time = tower_reads.reconstruction_over_time(tower, mapping.name, data.day(0), data.day(8))
    assert list(over_time["value"]) == [s.value for s in everyone]
    assert tower_reads.latest_multivariate(tower, "another-model") is None


def test_the_rule_can_be_disabled_or_made_stricter(loaded, tower):
    wh, mapping, _ = loaded
    if wh.kind != "duckdb":
        pytest.skip("the rule reads tower state only")
    from services.monitoring.config import parse_monitoring_config
    strict = parse_monitoring_config({"alerts": {"multivariate_drift": {"consecutive": 1}}}, {})
    off = parse_monitoring_config({"alerts": {"multivariate_drift": {"enabled": False}}}, {})
    job.run_model(wh.reader(), tower, mapping, strict, since=data.day(0).date(), until=data.day(7).date())
    with tower.connect() as conn:
        opened = conn.execute(sa.select(alert_episodes.c.opened_window).where(
            alert_episodes.c.rule == "multivariate_drift")).scalars().all()
        assert opened == [data.day(4)]
        assert not [s for s in load_series(conn, mapping, off.alerts) if s.rule == "multivariate_drift"]


def test_the_report_command_prints_multivariate_drift(loaded, tmp_path, monkeypatch, capsys):
    wh, mapping, _ = loaded
    if wh.kind != "duckdb":
        pytest.skip("the command is dialect-independent; DuckDB runs it")
    config = {"models": {"synthetic": {
        "table": mapping.table, "task": "binary_classification", "columns": data.COLUMNS,
        "features": {"numerical": FEATURES}, "reference": {"table": mapping.reference.table}}}}
    path = tmp_path / "tower.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    wh.reader().dispose()
    monkeypatch.setenv("TOWER_CONFIG", str(path))
    monkeypatch.setenv("WAREHOUSE_URL", wh.url)
    monkeypatch.setenv("TOWER_DB_URL", f"sqlite:///{tmp_path / 'tower.db'}")
    assert cli.main(["report", "--model", "synthetic", "--start", "2026-03-05", "--end", "2026-03-09"]) == 0
    out = json.loads(capsys.readouterr().out)["multivariate_drift"]
    lo, up = oracle_band()
    assert list(out) == ["value", "lower", "upper", "drifted", "reason"]
    assert out["value"] == pytest.approx(oracle_errors(log_in(data.day(4), data.day(8))).mean(), rel=1e-6)
    assert out["upper"] == pytest.approx(up, rel=1e-6) and out["drifted"] is True and out["reason"] is None
