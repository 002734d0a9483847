"""Sample-size-aware drift verdicts in the report, the configuration, the job and the report command
(issue 15; the statistics themselves are checked in tests/stats/test_drift_intervals.py).

The warehouse is a DuckDB file with a stable half (days 0-3, drawn like the reference) and a drifted
half (days 4-7); the tower state is SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from services import cli
from services.errors import ConfigError
from services.monitoring import job
from services.monitoring.config import AlertRules, DriftRule, MonitoringConfig, parse_monitoring_config
from services.monitoring.reference import compute_profile
from services.monitoring.report import build_report, fetch_aggregates, window_report
from services.monitoring.results import EFFECT_METRIC
from services.monitoring.store import monitoring_results
from services.stats import drift_intervals
from services.stores.tower_db import create_schema
from services.stores.warehouse.rows import log_rows
from services.stores.warehouse.sql import WHOLE
from tests.support import monitoring_data as data
from tests.support.databases import ScratchWarehouse, tower_state

STABLE = (data.day(0), data.day(4))
DRIFTED = (data.day(4), data.day(8))
LOG = pd.concat([data.make_log(seed=1, rows=2500, days=4),
                 data.make_log(seed=3, rows=2500, days=4, shift=1.0, start=data.day(4)).assign(
                     request_id=lambda f: "d" + f["request_id"])], ignore_index=True)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    wh = ScratchWarehouse("duckdb", tmp_path_factory.mktemp("wh"))
    mapping = data.mapping(wh.write(LOG, "predictions_synthetic"),
                           wh.write(data.make_reference(rows=3000), "reference_synthetic"))
    yield wh, mapping, compute_profile(wh.reader(), mapping)
    wh.close()


def report_with(loaded, window, drift: DriftRule):
    wh, mapping, profile = loaded
    rows = log_rows(mapping, *window)
    aggregates = fetch_aggregates(wh.reader(), mapping, profile, rows.start, rows.end)[WHOLE]
    return build_report(mapping, profile, aggregates, start=rows.start, end=rows.end,
                        rules=AlertRules(drift=drift))


# --- the report -----------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [STABLE, DRIFTED])
def test_fixed_mode_keeps_every_verdict_and_adds_the_interval_of_the_statistic_judged(loaded, window):
    wh, mapping, profile = loaded
    default = window_report(wh.reader(), mapping, profile, *window)
    fixed = report_with(loaded, window, DriftRule(verdict="fixed"))
    assert [(d.column, d.method, d.score, d.drifted) for d in fixed.drift] == \
        [(d.column, d.method, d.score, d.drifted) for d in default.drift]
    for d in fixed.drift:
        assert d.verdict == "fixed" and d.confidence == 0.95
        assert d.effect_statistic == drift_intervals.effect_statistic(d.method)
        if d.method in ("wasserstein", "jensenshannon", "psi") and d.kind == "numerical":
            assert d.effect == pytest.approx(d.score, rel=1e-9)  # the statistic judged is the one bounded
        if d.method == "ks":
            assert d.effect == pytest.approx(d.ks_statistic)
        assert d.lower is not None and d.upper is not None and d.noise is not None and d.noise > 0
        assert d.lower <= d.upper


def test_beyond_noise_and_material_judge_the_interval(loaded):
    for window in (STABLE, DRIFTED):
        noise = report_with(loaded, window, DriftRule(verdict="beyond_noise"))
        for d in noise.drift:
            assert d.drifted == (d.lower > d.noise)
        material = report_with(loaded, window, DriftRule(verdict="material", material=0.3))
        for d in material.drift:
            assert d.drifted == (d.lower > 0.3) and d.deciding_threshold == 0.3
            assert d.too_small == (d.noise >= 0.3)
    drifted = {d.column: d for d in report_with(loaded, DRIFTED, DriftRule(verdict="beyond_noise")).drift}
    stable = {d.column: d for d in report_with(loaded, STABLE, DriftRule(verdict="beyond_noise")).drift}
    assert drifted["x_normal"].drifted is True and stable["x_normal"].drifted is False


def test_the_same_window_gives_the_same_interval_in_any_order(loaded):
    rule = DriftRule(verdict="beyond_noise")
    drift_intervals.forget_reference_draws()
    first = (report_with(loaded, STABLE, rule), report_with(loaded, DRIFTED, rule))
    drift_intervals.forget_reference_draws()
    second = (report_with(loaded, DRIFTED, rule), report_with(loaded, STABLE, rule))
    assert first[0].drift == second[1].drift and first[1].drift == second[0].drift


def test_a_small_window_is_too_small_to_tell_and_an_empty_one_has_no_interval(loaded):
    hour = (data.day(1), data.day(1) + timedelta(hours=1))
    small = report_with(loaded, hour, DriftRule(verdict="beyond_noise"))
    assert 0 < small.rows_current < 100
    x = next(d for d in small.drift if d.column == "x_normal")
    assert x.method == "wasserstein" and x.deciding_threshold == 0.1
    assert x.noise >= 0.1 and x.too_small is True
    empty = report_with(loaded, (data.day(20), data.day(21)), DriftRule(verdict="beyond_noise"))
    assert empty.rows_current == 0
    for d in empty.drift:
        assert (d.effect, d.lower, d.upper, d.noise, d.too_small, d.drifted) == (None,) * 6


def test_the_report_json_and_result_rows_carry_the_interval(loaded):
    report = report_with(loaded, DRIFTED, DriftRule(verdict="material", material=0.2))
    out = json.loads(json.dumps(report.to_json(), allow_nan=False))
    for d, entry in zip(report.drift, out["drift"], strict=True):
        assert entry["verdict"] == "material" and entry["drifted"] == d.drifted
        assert entry["effect"] == {"statistic": d.effect_statistic, "value": d.effect, "lower": d.lower,
                                   "upper": d.upper, "noise": d.noise, "confidence": 0.95}
        assert entry["deciding_threshold"] == 0.2 and entry["too_small"] == d.too_small
    rows = {r["column_name"]: r for r in report.result_rows() if r["metric"] == EFFECT_METRIC}
    assert set(rows) == {d.column for d in report.drift}
    for d in report.drift:
        assert (rows[d.column]["value"], rows[d.column]["lower"], rows[d.column]["upper"], rows[d.column]["noise"],
                rows[d.column]["method"], rows[d.column]["threshold"]) == \
            (d.effect, d.lower, d.upper, d.noise, d.effect_statistic, 0.2)


# --- configuration ---------------------------------------------------------------------------------


def drift_rule(**drift) -> DriftRule:
    return parse_monitoring_config({"alerts": {"drift": drift}}, {}).alerts.drift


def test_the_verdict_settings_are_read_with_defaults():
    assert drift_rule() == DriftRule(verdict="fixed", material=None, confidence=0.95, replicates=200)
    assert drift_rule(verdict="material", material=0.15, confidence=0.9, replicates=500) == \
        DriftRule(verdict="material", material=0.15, confidence=0.9, replicates=500)
    per_model = parse_monitoring_config({"alerts": {"drift": {"verdict": "beyond_noise"}},
                                         "models": {"m": {"drift": {"consecutive": 2}}}}, {})
    assert per_model.rules_for("m").drift.verdict == "beyond_noise"


@pytest.mark.parametrize(("drift", "message"), [
    ({"verdict": "strict"}, r"drift\.verdict is 'strict'; expected one of fixed, beyond_noise, material"),
    ({"verdict": "material"}, r"drift\.material is required when monitoring\.alerts\.drift\.verdict is material"),
    ({"verdict": "material", "material": 0}, r"drift\.material is a drift distance and must be above 0"),
    ({"verdict": "material", "material": -0.1}, r"drift\.material must be at least 0"),
    ({"verdict": "material", "material": float("nan")}, r"drift\.material must be a finite number"),
    ({"verdict": "material", "material": float("inf")}, r"drift\.material must be a finite number"),
    ({"verdict": "material", "material": "0.1"}, r"drift\.material must be a number"),
    ({"confidence": 1.0}, r"drift\.confidence must be between 0\.5 and 0\.999"),
    ({"confidence": 95}, r"drift\.confidence must be between"),
    ({"confidence": float("nan")}, r"drift\.confidence must be a finite number"),
    ({"replicates": 10}, r"drift\.replicates must be at least 50"),
    ({"replicates": 1_000_000}, r"drift\.replicates must be at most 5000"),
    ({"replicates": 200.5}, r"drift\.replicates must be a whole number"),
    ({"replicates": True}, r"drift\.replicates must be a whole number"),
])
def test_bad_verdict_settings_are_refused_at_load_time_naming_the_field(drift, message):
    with pytest.raises(ConfigError, match=message):
        drift_rule(**drift)


def test_a_model_override_to_material_needs_its_threshold_too():
    with pytest.raises(ConfigError, match=r"monitoring\.models\.m\.drift\.material is required"):
        parse_monitoring_config({"models": {"m": {"drift": {"verdict": "material"}}}}, {})


# --- the job --------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def tower(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with tower_state(request.param, tmp_path) as engine:
        yield engine


def test_the_job_stores_the_bounds_and_the_verdict_of_the_mode(loaded, tower):
    wh, mapping, _ = loaded
    config = MonitoringConfig(alerts=AlertRules(drift=DriftRule(verdict="beyond_noise")))
    job.run_model(wh.reader(), tower, mapping, config, since=data.day(3).date(), until=data.day(4).date())
    r = monitoring_results.c
    with tower.connect() as conn:
        effect = conn.execute(sa.select(r.window_start, r.version, r.column_name, r.value, r.lower, r.upper, r.noise)
                              .where(r.metric == EFFECT_METRIC)).all()
        verdicts = {(row.window_start, row.version, row.column_name): row.alert for row in conn.execute(
            sa.select(r.window_start, r.version, r.column_name, r.alert).where(r.metric == "drift_score"))}
        others = conn.execute(sa.select(sa.func.count()).where(r.metric != EFFECT_METRIC,
                                                               r.lower.is_not(None))).scalar()
    assert {row.window_start for row in effect} == {data.day(3), data.day(4)}
    assert len({row.version for row in effect}) > 1  # every version's window too
    for row in effect:
        assert row.lower is not None and row.upper is not None and row.noise is not None
        assert row.lower <= row.upper
        assert verdicts[(row.window_start, row.version, row.column_name)] == (row.lower > row.noise)
    assert others == 0
    # The same numbers as the report of that window, computed on its own.
    report = window_report(wh.reader(), mapping, compute_profile(wh.reader(), mapping), data.day(4), data.day(5),
                           rules=config.alerts)
    stored = {row.column_name: (row.lower, row.upper, row.noise) for row in effect
              if row.window_start == data.day(4) and row.version == "*"}
    assert stored == {d.column: (pytest.approx(d.lower), pytest.approx(d.upper), pytest.approx(d.noise))
                      for d in report.drift}


def test_in_the_fixed_mode_the_job_bounds_the_all_versions_windows_only(loaded, tower):
    """The drift page and the report read the all-versions windows: those carry their intervals. Each
    version's windows do not (fixed verdicts do not use them, and they would triple a backfill)."""
    wh, mapping, _ = loaded
    job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=data.day(4).date(), until=data.day(4).date())
    r = monitoring_results.c
    with tower.connect() as conn:
        bounded = conn.execute(sa.select(r.version, r.lower, r.upper, r.noise).where(r.metric == EFFECT_METRIC)).all()
        judged = conn.execute(sa.select(sa.func.count()).where(r.metric == "drift_score", r.version != "*")).scalar()
    assert bounded and {row.version for row in bounded} == {"*"} and judged > 0
    assert all(row.lower is not None and row.lower <= row.upper and row.noise is not None for row in bounded)


def test_an_older_tower_state_gains_the_interval_columns(tower):
    with tower.begin() as conn:
        for name in ("lower", "upper", "noise"):
            conn.execute(sa.text(f"ALTER TABLE monitoring_results DROP COLUMN {name}"))
    assert "lower" not in {c["name"] for c in sa.inspect(tower).get_columns("monitoring_results")}
    create_schema(tower)
    create_schema(tower)  # a second start finds it done
    assert {"lower", "upper", "noise"} <= {c["name"] for c in sa.inspect(tower).get_columns("monitoring_results")}


# --- the report command ----------------------------------------------------------------------------


def test_the_report_command_prints_the_interval_in_the_configured_mode(loaded, tmp_path, monkeypatch, capsys):
    wh, mapping, _ = loaded
    config = {"models": {"synthetic": {
        "table": mapping.table, "task": "binary_classification", "columns": data.COLUMNS,
        "features": {"numerical": data.NUMERICAL, "categorical": data.CATEGORICAL}, "sensitive": data.SENSITIVE,
        "reference": {"table": mapping.reference.table}, "slo": {"latency_p95_ms": 250, "error_rate": 0.05}}},
        "monitoring": {"alerts": {"drift": {"verdict": "material", "material": 0.25, "replicates": 100}}}}
    path = tmp_path / "tower.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    wh.reader().dispose()  # the CLI opens the DuckDB file itself
    monkeypatch.setenv("TOWER_CONFIG", str(path))
    monkeypatch.setenv("WAREHOUSE_URL", wh.url)
    monkeypatch.setenv("TOWER_DB_URL", f"sqlite:///{tmp_path / 'tower.db'}")
    code = cli.main(["report", "--model", "synthetic", "--start", "2026-03-05", "--end", "2026-03-07",
                     "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for entry in out["drift"]:
        assert entry["verdict"] == "material" and entry["deciding_threshold"] == 0.25
        effect = entry["effect"]
        assert effect["lower"] <= effect["upper"] and math.isfinite(effect["noise"])
        assert entry["drifted"] == (effect["lower"] > 0.25)
