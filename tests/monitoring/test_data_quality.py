"""Data quality per feature pushed down to DuckDB, SQLite and PostgreSQL, against pandas on the raw rows.

The oracle reads the pandas frames that were written: a value is null when it is not a finite number
(NULL, NaN, +-inf), the reference range is the min and max of its finite values, a category is unseen
when the reference has no row with it. Days 0-3 of the log are drawn like the reference; on days 4-7
a feed breaks: x_lognormal is missing on a third of the rows, c_new gains a category the reference
never saw, and the mixed-case feature ``Odd_Value`` moves half its values above the reference's
maximum.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from services import cli
from services.errors import ConfigError
from services.mapping import ModelMapping
from services.monitoring import data_quality, job
from services.monitoring.alerts import load_series
from services.monitoring.config import MonitoringConfig, parse_monitoring_config
from services.monitoring.health_chips import health_chips
from services.monitoring.reference import ReferenceProfile, compute_profile
from services.monitoring.report import window_report
from services.monitoring.store import alert_episodes, monitoring_fitted, monitoring_results
from tests.support import monitoring_data as data
from tests.support.databases import KINDS, ScratchWarehouse

ODD = "Odd_Value"  # mixed case: PostgreSQL finds it only when the dialect quotes it
NUMERICAL = [*data.NUMERICAL, ODD]
FEATURES = NUMERICAL + data.CATEGORICAL
HEALTHY = (data.day(0), data.day(4))
BROKEN = (data.day(4), data.day(8))
EMPTY = (data.day(20), data.day(21))


def build_log() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    healthy = data.make_log(seed=1, rows=2400, days=4)
    broken = data.make_log(seed=3, rows=2400, days=4, start=data.day(4))
    broken["request_id"] = "b" + broken["request_id"]
    broken.loc[rng.random(len(broken)) < 0.3, "x_lognormal"] = np.nan  # the feed drops a third of it
    broken["c_new"] = rng.choice(["a", "b", "c", "zz-new"], len(broken), p=[0.3, 0.3, 0.2, 0.2]).astype(object)
    healthy[ODD] = rng.uniform(0, 1, len(healthy))
    broken[ODD] = rng.uniform(0.5, 1.5, len(broken))
    log = pd.concat([healthy, broken], ignore_index=True)
    log.loc[log.index[::89], "x_lognormal"] = np.nan  # written as NULL; DuckDB and PostgreSQL then get real NaN
    return log


def build_reference() -> pd.DataFrame:
    reference = data.make_reference(rows=2000)
    reference[ODD] = np.random.default_rng(9).uniform(0, 1, len(reference))
    return reference


LOG = build_log()
REFERENCE = build_reference()
NAN_ROWS = list(LOG["request_id"].iloc[::89])  # real IEEE NaN where the database keeps it (not only NULL)


def mapping_for(log_table: str, reference_table: str) -> ModelMapping:
    return data.mapping(log_table, reference_table,
                        features={"numerical": NUMERICAL, "categorical": data.CATEGORICAL})


def log_in(start, end) -> pd.DataFrame:
    return data.in_window(LOG, start, end)


# --- the oracle --------------------------------------------------------------------------------
def _finite(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.isfinite(pd.to_numeric(frame[column], errors="coerce").to_numpy(float))


def oracle(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for c in NUMERICAL:
        ref = REFERENCE[c].to_numpy(float)
        ref = ref[np.isfinite(ref)]
        x = rows[c].to_numpy(float)
        x = x[np.isfinite(x)]
        out[c] = {"null_share": 1 - _finite(rows, c).mean() if len(rows) else None,
                  "reference_null_share": 1 - _finite(REFERENCE, c).mean(), "unseen_share": None,
                  "out_of_range_share": ((x < ref.min()) | (x > ref.max())).mean() if x.size else None,
                  "range": (ref.min(), ref.max())}
    for c in data.CATEGORICAL:
        present = rows[c].notna()
        seen = set(REFERENCE[c].dropna())
        out[c] = {"null_share": 1 - present.mean() if len(rows) else None,
                  "reference_null_share": 1 - REFERENCE[c].notna().mean(),
                  "unseen_share": (~rows.loc[present, c].isin(seen)).mean() if present.any() else None,
                  "out_of_range_share": None, "range": None}
    return out


def oracle_alerts(rows: pd.DataFrame, increase: float = 0.05, unseen: float = 0.05, outside: float = 0.05
                  ) -> dict[str, bool]:
    """The rule's verdict per feature with the default limits (windows of >= 100 rows)."""
    verdicts = {}
    for c, o in oracle(rows).items():
        checks = [o["null_share"] > o["reference_null_share"] + increase]
        if o["unseen_share"] is not None:
            checks.append(o["unseen_share"] > unseen)
        if o["out_of_range_share"] is not None:
            checks.append(o["out_of_range_share"] > outside)
        verdicts[c] = any(checks)
    return verdicts


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=KINDS)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ScratchWarehouse, ModelMapping, ReferenceProfile]]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    wh = ScratchWarehouse(request.param, tmp_path_factory.mktemp(request.param), url)
    mapping = mapping_for(wh.write(LOG, "predictions_dq"), wh.write(REFERENCE, "reference_dq"))
    data.put_nan(wh.url, wh.schema, "predictions_dq", "x_lognormal", NAN_ROWS)
    profile = compute_profile(wh.reader(), mapping)
    yield wh, mapping, profile
    wh.close()


def report_of(loaded, tower, window, rules=None):
    wh, mapping, profile = loaded
    ranges = data_quality.reference_ranges(tower, wh.reader(), mapping, profile)
    return window_report(wh.reader(), mapping, profile, *window, ranges=ranges,
                         rules=rules), ranges


# --- push-down against the oracle ----------------------------------------------------------------
def test_the_reference_ranges_are_the_finite_min_and_max(loaded, tower):
    _, ranges = report_of(loaded, tower, HEALTHY)
    want = oracle(log_in(*HEALTHY))
    assert set(ranges) == set(NUMERICAL)
    for c in NUMERICAL:
        assert ranges[c] == want[c]["range"], c  # exact: a min is a stored value, not a computation


@pytest.mark.parametrize("window", [HEALTHY, BROKEN, (data.day(5), data.day(6))], ids=["healthy", "broken", "day5"])
def test_every_share_equals_pandas_on_the_same_rows(loaded, tower, window):
    report, _ = report_of(loaded, tower, window)
    rows = log_in(*window)
    want = oracle(rows)
    got = {q.column: q for q in report.data_quality}
    assert list(got) == FEATURES
    for column, q in got.items():
        for key in ("null_share", "reference_null_share", "unseen_share", "out_of_range_share"):
            expected = want[column][key]
            value = getattr(q, key)
            assert (value is None) == (expected is None), (column, key)
            if expected is not None:
                assert value == pytest.approx(expected, rel=1e-12, abs=1e-15), (column, key)
    verdicts = oracle_alerts(rows)
    assert {c: q.alert for c, q in got.items()} == {c: bool(v) for c, v in verdicts.items()}
    if window == BROKEN:  # the three broken feeds, and nothing else
        assert {c for c, v in verdicts.items() if v} == {"x_lognormal", "c_new", ODD}
    if window == HEALTHY:
        assert not any(verdicts.values())


def test_the_report_json_lists_every_feature_with_the_contracts_keys(loaded, tower):
    report, _ = report_of(loaded, tower, BROKEN)
    out = report.to_json()["data_quality"]
    assert [o["column"] for o in out] == FEATURES
    assert all(list(o) == ["column", "null_share", "reference_null_share", "unseen_share", "out_of_range_share",
                           "alert"] for o in out)
    odd = next(o for o in out if o["column"] == ODD)
    assert odd["out_of_range_share"] == pytest.approx(oracle(log_in(*BROKEN))[ODD]["out_of_range_share"])
    json.dumps(out, allow_nan=False)  # no NaN leaks into the contract


def test_an_empty_window_has_no_share_and_no_verdict(loaded, tower):
    report, _ = report_of(loaded, tower, EMPTY)
    assert report.data_quality and all(q.alert is None for q in report.data_quality)
    assert all(q.null_share is None and q.out_of_range_share is None for q in report.data_quality)


def test_a_small_window_is_measured_but_not_judged(loaded, tower):
    rows = log_in(data.day(5), data.day(5) + timedelta(minutes=40))
    assert 0 < len(rows) < 100
    report, _ = report_of(loaded, tower, (data.day(5), data.day(5) + timedelta(minutes=40)))
    odd = next(q for q in report.data_quality if q.column == ODD)
    assert odd.out_of_range_share == pytest.approx(oracle(rows)[ODD]["out_of_range_share"])
    assert odd.alert is None and odd.range_limit == 0.05


def test_tighter_limits_and_a_disabled_rule_change_the_verdicts_not_the_shares(loaded, tower):
    strict = parse_monitoring_config({"alerts": {"data_quality": {
        "max_null_increase": 0.001, "max_unseen_share": None, "max_out_of_range_share": 0.0}}}, {}).alerts
    off = parse_monitoring_config({"alerts": {"data_quality": {"enabled": False}}}, {}).alerts
    rows = log_in(*HEALTHY)
    tight, _ = report_of(loaded, tower, HEALTHY, strict)
    quiet, _ = report_of(loaded, tower, BROKEN, off)
    want = oracle(rows)
    for q in tight.data_quality:
        assert q.unseen_alert is None and q.unseen_limit is None
        if q.out_of_range_share is not None:
            assert q.range_alert is bool(want[q.column]["out_of_range_share"] > 0)
    assert all(q.alert is None and q.null_limit is None for q in quiet.data_quality)
    assert next(q for q in quiet.data_quality if q.column == ODD).out_of_range_share > 0.3


@pytest.mark.parametrize("raw", [{"max_unseen_share": 5}, {"max_null_increase": -0.1}, {"max_out_of_range": 0.1},
                                 {"max_null_increase": "5%"}, {"min_rows": 1.5}])
def test_a_mistyped_rule_is_refused_with_where_it_is(raw):
    with pytest.raises(ConfigError, match="monitoring.alerts.data_quality"):
        parse_monitoring_config({"alerts": {"data_quality": raw}}, {})


def test_the_ranges_are_kept_once_and_a_tampered_payload_is_fitted_again(loaded, tower):
    """A tower-state admin (or a broken writer) leaves ranges that are not numbers, name a column the
    mapping lacks, or are upside down: the next report fits them again, and the shares are pandas'."""
    wh, mapping, profile = loaded
    report_of(loaded, tower, HEALTHY)
    f = monitoring_fitted.c
    with tower.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(monitoring_fitted)
                            .where(f.kind == data_quality.KIND)).scalar() == 1
    good = {c: list(oracle(LOG)[c]["range"]) for c in NUMERICAL}
    for bad in ({"format": 1, "ranges": {**good, "x_normal": ["1; DROP TABLE x", 2]}},
                {"format": 1, "ranges": {**good, "zzz\"; --": [0, 1]}},
                {"format": 1, "ranges": {**good, ODD: [5.0, -5.0]}},
                {"format": 1, "ranges": {**good, ODD: [1e400, 1]}},
                {"format": 99, "ranges": good}, ["not", "a", "mapping"]):
        with tower.begin() as conn:
            conn.execute(sa.update(monitoring_fitted).where(f.kind == data_quality.KIND)
                         .values(payload=json.dumps(bad)))
        report, ranges = report_of(loaded, tower, BROKEN)
        assert ranges == {c: tuple(v) for c, v in good.items()}
        odd = next(q for q in report.data_quality if q.column == ODD)
        assert odd.out_of_range_share == pytest.approx(oracle(log_in(*BROKEN))[ODD]["out_of_range_share"])


# --- the job, its alert rules, the chip, the report command --------------------------------------
def test_the_job_stores_each_days_shares_and_opens_one_episode_per_broken_feed(loaded, tower):
    wh, mapping, _ = loaded
    if wh.kind != "duckdb":
        pytest.skip("the job is dialect-independent above the push-down; DuckDB runs it")
    job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=data.day(0).date(), until=data.day(7).date())
    r = monitoring_results.c
    with tower.connect() as conn:
        stored = conn.execute(sa.select(r.window_start, r.version, r.column_name, r.metric, r.value, r.threshold,
                                        r.alert).where(r.metric.in_(list(data_quality.RULES)))).all()
        episodes = conn.execute(sa.select(alert_episodes.c.rule, alert_episodes.c.subject,
                                          alert_episodes.c.opened_window, alert_episodes.c.message)).all()
    checked = 0
    for s in stored:
        if s.version not in ("*", "2"):
            continue
        rows = log_in(s.window_start, s.window_start + timedelta(days=1))
        rows = rows if s.version == "*" else rows[rows["model_version"] == "2"]
        want = oracle(rows)[s.column_name][s.metric]
        assert s.value == pytest.approx(want, rel=1e-12, abs=1e-15), s
        checked += 1
    assert checked == 8 * 2 * (len(FEATURES) * 2)  # days x versions x (null share + unseen or range)
    day6 = {(s.column_name, s.metric): s for s in stored if s.window_start == data.day(6) and s.version == "*"}
    assert day6[(ODD, "out_of_range_share")].alert is True and day6[(ODD, "out_of_range_share")].threshold == 0.05
    ref_nulls = oracle(LOG)["x_lognormal"]["reference_null_share"]
    assert day6[("x_lognormal", "null_share")].threshold == pytest.approx(ref_nulls + 0.05)
    assert day6[("c_new", "unseen_share")].alert is True
    dq = sorted((e.rule, e.subject, e.opened_window) for e in episodes if e.rule.startswith("data_quality"))
    assert dq == sorted([("data_quality_nulls", "x_lognormal", data.day(4)),
                         ("data_quality_unseen", "c_new", data.day(4)), ("data_quality_range", ODD, data.day(4))])
    message = next(e.message for e in episodes if e.rule == "data_quality_range")
    assert f"feature '{ODD}'" in message and "out-of-range share" in message and "%" in message
    chip = next(c for c in health_chips(tower, mapping.name) if c.dimension == "data_quality")
    assert (chip.status, chip.count, chip.page, chip.params["model"]) == ("alert", 3, "drift", mapping.name)
    assert chip.params["feature"] in {"x_lognormal", "c_new", ODD} and chip.title == "Data quality"


def test_a_disabled_rule_has_no_series(loaded, tower):
    wh, mapping, _ = loaded
    if wh.kind != "duckdb":
        pytest.skip("the rule reads tower state only")
    off = parse_monitoring_config({"alerts": {"data_quality": {"enabled": False}}}, {})
    on = parse_monitoring_config({}, {})
    job.run_model(wh.reader(), tower, mapping, on, since=data.day(3).date(), until=data.day(5).date())
    with tower.connect() as conn:
        assert {s.rule for s in load_series(conn, mapping, on.alerts)} >= set(data_quality.RULES.values())
        assert not [s for s in load_series(conn, mapping, off.alerts) if s.rule.startswith("data_quality")]


def test_the_report_command_prints_data_quality(loaded, tmp_path, monkeypatch, capsys):
    wh, mapping, _ = loaded
    if wh.kind != "duckdb":
        pytest.skip("the command is dialect-independent; DuckDB runs it")
    config = {"models": {"synthetic": {
        "table": mapping.table, "task": "binary_classification", "columns": data.COLUMNS,
        "features": {"numerical": NUMERICAL, "categorical": data.CATEGORICAL},
        "reference": {"table": mapping.reference.table}}}}
    path = tmp_path / "tower.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    wh.reader().dispose()
    monkeypatch.setenv("TOWER_CONFIG", str(path))
    monkeypatch.setenv("WAREHOUSE_URL", wh.url)
    monkeypatch.setenv("TOWER_DB_URL", f"sqlite:///{tmp_path / 'tower.db'}")
    assert cli.main(["report", "--model", "synthetic", "--start", "2026-03-05", "--end", "2026-03-09"]) == 0
    out = {o["column"]: o for o in json.loads(capsys.readouterr().out)["data_quality"]}
    want = oracle(log_in(data.day(4), data.day(8)))
    assert out[ODD]["out_of_range_share"] == pytest.approx(want[ODD]["out_of_range_share"], rel=1e-12)
    assert out["c_new"]["unseen_share"] == pytest.approx(want["c_new"]["unseen_share"], rel=1e-12)
    assert out["x_lognormal"]["null_share"] == pytest.approx(want["x_lognormal"]["null_share"], rel=1e-12)
    assert out["x_normal"]["alert"] is False and out[ODD]["alert"] is True
