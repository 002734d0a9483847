"""Kept daily aggregates (issue 16): a window of whole days summed from the days the job kept gives the
report the log gives, to 1e-9; anything not kept, kept under other keys, or tampered with is computed from SQL.

The warehouse is a DuckDB file; the tower state is SQLite and PostgreSQL (a schema of its own).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from services.errors import TowerStateUnavailable
from services.monitoring import job, kept_days, report
from services.monitoring.config import MonitoringConfig
from services.monitoring.kept_days import KeptDays
from services.monitoring.reference import load_or_compute
from services.monitoring.store import monitoring_kept_days
from services.stores.tower_db import create_schema
from services.stores.warehouse import histograms
from tests.support import monitoring_data as data
from tests.support.databases import ScratchWarehouse, tower_state
from tests.support.report_equality import assert_same

DAYS = 8
GAP_DAY = 1  # no traffic at all that day
WEEK = (data.day(2), data.day(DAYS - 1))  # five whole days after the gap: a kept window
LATE = datetime(2026, 6, 1)  # a clock long after the log: every day of it is over


def kept_log() -> pd.DataFrame:
    """Eight days, drifting from day 4, a gap day; labels on 70 % of rows (every day provisional)."""
    start = data.make_log(seed=21, rows=2400, days=4)
    later = data.make_log(seed=22, rows=2400, days=4, shift=0.6, start=data.day(4))
    later["request_id"] = "late-" + later["request_id"]
    log = pd.concat([start, later], ignore_index=True)
    return log[log["ts"].dt.floor("D") != pd.Timestamp(data.day(GAP_DAY))].reset_index(drop=True)


LOG = kept_log()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ScratchWarehouse, object]]:
    wh = ScratchWarehouse("duckdb", tmp_path_factory.mktemp("wh"))
    mapping = data.mapping(wh.write(LOG, "predictions_kept"), wh.write(data.make_reference(rows=2000), "ref"))
    yield wh, mapping
    wh.close()


@pytest.fixture(params=["sqlite", "postgres"])
def tower(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with tower_state(request.param, tmp_path) as engine:
        yield engine


@pytest.fixture
def binned(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The windows the fine histograms were computed from SQL for (a spy around the warehouse call)."""
    calls: list[object] = []
    real = histograms.numeric_histograms

    def spy(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(histograms, "numeric_histograms", spy)
    return calls


def run_job(wh: ScratchWarehouse, tower: sa.Engine, mapping, *, now: datetime = LATE) -> None:
    job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=data.day(0).date(), now=now)


def both(wh: ScratchWarehouse, tower: sa.Engine, mapping, profile, start: datetime, end: datetime, **options):
    """The report with the kept days offered, and the report from SQL only."""
    kept = report.window_report(wh.reader(), mapping, profile, start, end, kept=KeptDays(tower), **options)
    sql = report.window_report(wh.reader(), mapping, profile, start, end, **options)
    return kept, sql


def kept_rows(tower: sa.Engine) -> dict:
    k = monitoring_kept_days.c
    with tower.connect() as conn:
        return {row.day: row._asdict() for row in conn.execute(sa.select(monitoring_kept_days).order_by(k.day))}


def set_payload(tower: sa.Engine, day: datetime, payload: str, *, rehash: bool) -> None:
    """What a database administrator could do: write another payload, with or without its digest."""
    k = monitoring_kept_days.c
    row = kept_rows(tower)[day.date()]
    values = {"payload": payload}
    if rehash:
        values["payload_digest"] = kept_days.payload_digest(row["model"], row["segment"], day.date(),
                                                            row["profile_digest"], row["mapping_digest"], payload)
    with tower.begin() as conn:
        conn.execute(sa.update(monitoring_kept_days).where(k.day == day.date()).values(**values))


# --------------------------------------------------------------------------------------------
def test_a_window_of_kept_days_gives_the_report_of_the_log_without_binning_it(warehouse, tower, binned):
    wh, mapping = warehouse
    run_job(wh, tower, mapping)
    profile = load_or_compute(tower, wh.reader(), mapping)
    binned.clear()
    kept, sql = both(wh, tower, mapping, profile, *WEEK)
    assert len(binned) == 1, "the kept window bins nothing; the SQL one once"
    assert kept.rows_current == sql.rows_current == len(data.in_window(LOG, *WEEK))
    assert any(d.drifted for d in sql.drift) and sql.fairness and sql.performance.labeled > 0  # numbers to compare
    assert_same(kept.to_json(), sql.to_json())


def test_the_kept_window_keeps_data_quality_and_multivariate_drift_as_the_sql_one(warehouse, tower, binned):
    from services.monitoring import data_quality, multivariate

    wh, mapping = warehouse
    run_job(wh, tower, mapping)
    profile = load_or_compute(tower, wh.reader(), mapping)
    pca = multivariate.reconstruction_model(tower, wh.reader(), mapping, profile)
    ranges = data_quality.reference_ranges(tower, wh.reader(), mapping, profile)
    binned.clear()
    kept, sql = both(wh, tower, mapping, profile, *WEEK, pca=pca, ranges=ranges)
    assert len(binned) == 1
    assert kept.multivariate is not None
    assert_same(kept.to_json(), sql.to_json())


def test_every_day_that_is_over_is_kept_and_a_day_not_over_or_without_traffic_is_not(warehouse, tower):
    wh, mapping = warehouse
    run_job(wh, tower, mapping, now=data.day(DAYS - 1) + timedelta(hours=12))
    days = {d: row["segment"] for d, row in kept_rows(tower).items()}
    assert set(days) == {data.day(i).date() for i in range(DAYS - 1) if i != GAP_DAY}
    run_job(wh, tower, mapping)  # the next run, once the last day is over, keeps it too
    before = kept_rows(tower)
    assert set(before) == {data.day(i).date() for i in range(DAYS) if i != GAP_DAY}
    run_job(wh, tower, mapping)  # idempotent: the same rows, never duplicates
    again = kept_rows(tower)
    # A recomputed day's float sums may differ in their last bits (DuckDB's threads add in any order; its value
    # counts are written sorted), and so its payload digest: the same keys, the same numbers within 1e-9.
    varying = {"computed_at", "payload", "payload_digest"}
    assert {d: {k: v for k, v in r.items() if k not in varying} for d, r in again.items()} == \
        {d: {k: v for k, v in r.items() if k not in varying} for d, r in before.items()}
    for day, row in again.items():
        assert_close_json(json.loads(row["payload"]), json.loads(before[day]["payload"]), f"{day}")


def assert_close_json(got: object, want: object, where: str) -> None:
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and isinstance(want, (int, float)), where
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), f"{where}: {got} != {want}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), where
        for key in want:
            assert_close_json(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close_json(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.parametrize("window", [
    (data.day(1), data.day(6)),  # the gap day: not kept
    (data.day(2), data.day(DAYS)),  # through the last day, which the job ran on before it was over
    (data.day(2) + timedelta(hours=6), data.day(6)),  # not whole days
], ids=["gap-day", "day-not-over", "part-day"])
def test_a_window_with_a_day_not_kept_is_computed_from_sql_with_the_same_numbers(warehouse, tower, binned, window):
    wh, mapping = warehouse
    run_job(wh, tower, mapping, now=data.day(DAYS - 1) + timedelta(hours=12))
    profile = load_or_compute(tower, wh.reader(), mapping)
    binned.clear()
    kept, sql = both(wh, tower, mapping, profile, *window)
    assert len(binned) == 2, "both computed from SQL"
    assert_same(kept.to_json(), sql.to_json())


def test_a_deleted_kept_day_is_computed_from_sql(warehouse, tower, binned):
    wh, mapping = warehouse
    run_job(wh, tower, mapping)
    profile = load_or_compute(tower, wh.reader(), mapping)
    with tower.begin() as conn:
        conn.execute(sa.delete(monitoring_kept_days).where(monitoring_kept_days.c.day == data.day(4).date()))
    binned.clear()
    kept, sql = both(wh, tower, mapping, profile, *WEEK)
    assert len(binned) == 2
    assert_same(kept.to_json(), sql.to_json())


def test_days_kept_under_another_reference_or_mapping_are_not_used(warehouse, tower, binned):
    wh, mapping = warehouse
    run_job(wh, tower, mapping)
    other_reference = load_or_compute(tower, wh.reader(), mapping, data.day(0), data.day(1))  # the first day
    other_mapping = replace(mapping, sensitive=("gender",))  # the same profile, another mapping
    profile = load_or_compute(tower, wh.reader(), other_mapping)
    assert other_reference.reference_id != profile.reference_id
    binned.clear()
    for m, p in ((mapping, other_reference), (other_mapping, profile)):
        kept, sql = both(wh, tower, m, p, *WEEK)
        assert_same(kept.to_json(), sql.to_json())
    assert len(binned) == 4, "all four computed from SQL"


def test_a_profile_recomputed_with_other_edges_misses(warehouse, tower, binned):
    wh, mapping = warehouse
    run_job(wh, tower, mapping)
    profile = load_or_compute(tower, wh.reader(), mapping)
    column = next(c for c, r in profile.numerical.items() if not r.value_counted)
    ref = profile.numerical[column]
    moved = replace(profile, numerical={**profile.numerical, column: replace(ref, edges=ref.edges + 1e-6)})
    assert KeptDays(tower).window(mapping, moved, *WEEK) is None
    assert KeptDays(tower).window(mapping, profile, *WEEK) is not None


def alter(wh: ScratchWarehouse, statement: str) -> None:
    """Change the log in place (as the data platform does after the job ran): the tower's reader closed first."""
    wh.reader().dispose()
    con = duckdb.connect(wh.url.removeprefix("duckdb:///"))
    try:
        con.execute(statement)
    finally:
        con.close()


@contextmanager
def kept_then_changed(tmp_path: Path) -> Iterator[tuple[ScratchWarehouse, object, sa.Engine]]:
    """A private log (the test changes it) whose days the job has kept, and its SQLite tower state."""
    wh = ScratchWarehouse("duckdb", tmp_path)
    try:
        mapping = data.mapping(wh.write(LOG, "predictions_kept"), wh.write(data.make_reference(rows=2000), "ref"))
        with tower_state("sqlite", tmp_path) as engine:
            run_job(wh, engine, mapping)
            yield wh, mapping, engine
    finally:
        wh.close()


def test_rows_logged_into_a_kept_day_after_it_was_kept_send_the_window_to_sql(tmp_path, binned):
    with kept_then_changed(tmp_path) as (wh, mapping, engine):
        alter(wh, "INSERT INTO predictions_kept SELECT * REPLACE ('arrived-late-' || request_id AS request_id) "
                  f"FROM predictions_kept WHERE ts >= '{data.day(3)}' AND ts < '{data.day(4)}' LIMIT 5")
        profile = load_or_compute(engine, wh.reader(), mapping)
        binned.clear()
        kept, sql = both(wh, engine, mapping, profile, *WEEK)
        assert len(binned) == 2
        assert kept.rows_current == sql.rows_current == len(data.in_window(LOG, *WEEK)) + 5
        assert_same(kept.to_json(), sql.to_json())


def test_labels_that_arrive_after_a_day_was_kept_are_in_the_report(tmp_path, binned):
    """Fairness and performance are read again: a kept provisional day's labels keep arriving."""
    with kept_then_changed(tmp_path) as (wh, mapping, engine):
        alter(wh, "UPDATE predictions_kept SET label = prediction WHERE label IS NULL")  # every prediction labelled
        profile = load_or_compute(engine, wh.reader(), mapping)
        binned.clear()
        kept = report.window_report(wh.reader(), mapping, profile, *WEEK, kept=KeptDays(engine))
        sql = report.window_report(wh.reader(), mapping, profile, *WEEK)
        assert len(binned) == 1, "still from the kept days"
        assert kept.performance.label_coverage == 1.0
        assert_same(kept.to_json(), sql.to_json())


# --- what whoever can write the tower state may do --------------------------------------------
PICKLE = "cos\nsystem\n(S'touch {marker}'\ntR."  # a pickle that would run a command if unpickled


@pytest.mark.parametrize("tamper", ["edited-numbers", "pickle", "not-json", "wrong-shape", "moved-from-another-day"])
def test_a_tampered_kept_day_is_ignored_and_the_report_comes_from_sql(warehouse, tower, binned, tmp_path, tamper,
                                                                        caplog):
    wh, mapping = warehouse
    run_job(wh, tower, mapping)
    profile = load_or_compute(tower, wh.reader(), mapping)
    day = data.day(3)
    payload = kept_rows(tower)[day.date()]["payload"]
    body = json.loads(payload)
    marker = tmp_path / "pwned"
    if tamper == "edited-numbers":  # counts moved between bins, the digest left as it was
        column = next(iter(body["numerical"]))
        body["numerical"][column]["counts"][0] += 50
        set_payload(tower, day, json.dumps(body), rehash=False)
    elif tamper == "pickle":
        set_payload(tower, day, PICKLE.format(marker=marker), rehash=True)
    elif tamper == "not-json":
        set_payload(tower, day, payload[: len(payload) // 2], rehash=True)
    elif tamper == "wrong-shape":  # valid JSON with its digest, but not what the profile's edges need
        column = next(iter(body["numerical"]))
        body["numerical"][column]["counts"] = body["numerical"][column]["counts"][:-1]
        body["categorical"]["c_region"] = [[{"__reduce__": "os.system"}, 1]]
        set_payload(tower, day, json.dumps(body), rehash=True)
    else:  # another day's intact payload and digest copied over this day's
        other = kept_rows(tower)[data.day(4).date()]
        k = monitoring_kept_days.c
        with tower.begin() as conn:
            conn.execute(sa.update(monitoring_kept_days).where(k.day == day.date()).values(
                payload=other["payload"], payload_digest=other["payload_digest"]))
    binned.clear()
    kept, sql = both(wh, tower, mapping, profile, *WEEK)
    assert len(binned) == 2, "the tampered window is computed from SQL"
    assert_same(kept.to_json(), sql.to_json())
    assert not marker.exists()
    assert "computed from SQL" in caplog.text


def test_the_decoder_refuses_anything_but_the_payload_it_writes(warehouse, tower):
    wh, mapping = warehouse
    run_job(wh, tower, mapping)
    profile = load_or_compute(tower, wh.reader(), mapping)
    good = json.loads(kept_rows(tower)[data.day(3).date()]["payload"])
    kept_days.decode(json.dumps(good), mapping, profile)  # the real one decodes
    column = next(iter(good["numerical"]))
    bad = [
        {**good, "format": 2},
        {**good, "rows": -1},
        {**good, "rows": True},
        {**good, "extra": 1},
        {**good, "numerical": {**good["numerical"], column: {**good["numerical"][column], "nulls": "1"}}},
        {**good, "categorical": {**good["categorical"], "c_region": [[1, 2]]}},
        {**good, "fairness": {"gender": [["F", 1, 1, 1, 1, 1]]}},
        {**good, "classification": {**good["classification"], "confusion": [1, 2, 3]}},
        {**good, "classification": {**good["classification"], "scores": {"levels": [0.5, 0.1], "positives": [1, 1],
                                                                         "negatives": [1, 1]}}},
    ]
    for body in bad:
        with pytest.raises(kept_days.KeptDayInvalid, match="kept day payload"):
            kept_days.decode(json.dumps(body), mapping, profile)


def test_a_tower_state_that_cannot_be_read_leaves_the_report_to_sql(warehouse, tower):
    wh, mapping = warehouse
    profile = load_or_compute(tower, wh.reader(), mapping)

    def down() -> sa.Engine:
        raise TowerStateUnavailable("The tower state database cannot be reached: refused", "Check TOWER_DB_URL.")

    got = report.window_report(wh.reader(), mapping, profile, *WEEK, kept=KeptDays(down))
    assert_same(got.to_json(), report.window_report(wh.reader(), mapping, profile, *WEEK).to_json())


def test_the_kept_path_sums_the_days_it_reads(warehouse, tower):
    """The kept window's fine histograms are the sums of the days' (what the equality tests rely on)."""
    wh, mapping = warehouse
    run_job(wh, tower, mapping)
    profile = load_or_compute(tower, wh.reader(), mapping)
    week = KeptDays(tower).window(mapping, profile, *WEEK)
    days = [KeptDays(tower).window(mapping, profile, data.day(i), data.day(i + 1)) for i in range(2, DAYS - 1)]
    assert week is not None and all(d is not None for d in days)
    for column, sample in week.numerical.items():
        np.testing.assert_array_equal(sample.counts, sum(d.numerical[column].counts for d in days))
    assert week.rows == sum(d.rows for d in days)


def test_a_tower_state_from_before_kept_days_gains_the_table_at_start(tower):
    monitoring_kept_days.drop(tower)
    assert not sa.inspect(tower).has_table(monitoring_kept_days.name)
    create_schema(tower)  # what every start runs
    assert sa.inspect(tower).has_table(monitoring_kept_days.name)
