"""Segments: each segment's numbers are the unsegmented code's on a log holding only its rows.

The oracle is the tower's own whole-population report run on tables that pandas filtered to the
segment (log and reference alike), in DuckDB, SQLite and PostgreSQL; the whole-population
numbers themselves are checked against scipy, fairlearn and scikit-learn in test_report.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from services import cli
from services.errors import ConfigError
from services.mapping import ModelMapping, parse_model_mapping
from services.monitoring import job
from services.monitoring.config import MonitoringConfig
from services.monitoring.reference import compute_profile, reference_definition, reference_id
from services.monitoring.report import window_report
from services.monitoring.store import monitoring_results
from services.segments import OVERALL
from services.stores.tower_db import create_schema, make_tower_engine
from tests.support import monitoring_data as data
from tests.support import report_equality
from tests.support.databases import KINDS, ScratchWarehouse, tower_state

SEGMENTS = [
    {"name": "north", "column": "c_region", "values": ["north"]},
    {"name": "mid-x", "column": "x_normal", "range": [9, 11]},
    {"name": "young", "column": "band", "values": ["young"]},
    {"name": "high-x", "column": "x_normal", "range": [12, None]},
]
LOG = pd.concat([data.make_log(seed=1, rows=2500, days=4),
                 data.make_log(seed=3, rows=2500, days=4, shift=1.0, start=data.day(4))], ignore_index=True)
LOG["request_id"] = [f"q{i}" for i in range(len(LOG))]
REFERENCE = data.make_reference(rows=3000)
WINDOW = (data.day(2), data.day(7))


def only(frame: pd.DataFrame, segment: dict[str, Any]) -> pd.DataFrame:
    """The segment's rows, filtered by pandas: NULL and NaN belong to no segment."""
    column = frame[segment["column"]]
    if "values" in segment:
        return frame[column.isin(segment["values"])].reset_index(drop=True)
    lo, hi = segment["range"]
    keep = column.notna() & (column >= lo if lo is not None else True) & (column < hi if hi is not None else True)
    return frame[keep].reset_index(drop=True)


def segmented(mapping: ModelMapping) -> ModelMapping:
    return parse_model_mapping(mapping.name, {
        "table": mapping.table, "task": mapping.task, "columns": data.COLUMNS,
        "features": {"numerical": data.NUMERICAL, "categorical": data.CATEGORICAL}, "sensitive": data.SENSITIVE,
        "reference": {"table": mapping.reference.table}, "slo": {"latency_p95_ms": 250, "error_rate": 0.05},
        "segments": SEGMENTS})


def assert_same(ours: Any, oracle: Any, path: str = "") -> None:
    report_equality.assert_same(ours, oracle, path, ordered_keys=True)


@pytest.fixture(scope="module", params=KINDS)
def warehouse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[ScratchWarehouse, ModelMapping]]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    wh = ScratchWarehouse(request.param, tmp_path_factory.mktemp(request.param), url)
    mapping = segmented(data.mapping(wh.write(LOG, "predictions_synthetic"),
                                     wh.write(REFERENCE, "reference_synthetic")))
    for segment in SEGMENTS:  # the oracle's tables: the same rows, filtered by pandas
        name = segment["name"].replace("-", "_")
        wh.write(only(LOG, segment), f"log_{name}")
        wh.write(only(REFERENCE, segment), f"ref_{name}")
    yield wh, mapping
    wh.close()


@pytest.mark.parametrize("segment", SEGMENTS, ids=[s["name"] for s in SEGMENTS])
def test_a_segments_report_equals_the_unsegmented_report_on_its_rows(warehouse, segment):
    wh, mapping = warehouse
    name = segment["name"].replace("-", "_")
    ours_mapping = mapping.for_segment(segment["name"])
    ours = window_report(wh.reader(), ours_mapping, compute_profile(wh.reader(), ours_mapping), *WINDOW)
    oracle_mapping = data.mapping(wh.table(f"log_{name}"), wh.table(f"ref_{name}"))
    oracle = window_report(wh.reader(), oracle_mapping, compute_profile(wh.reader(), oracle_mapping), *WINDOW)
    assert ours.rows_current == len(data.in_window(only(LOG, segment), *WINDOW)) > 50
    assert ours.rows_reference == len(only(REFERENCE, segment))
    assert_same(ours.to_json(), oracle.to_json())


def test_a_segment_changes_the_numbers_so_the_filter_really_applies(warehouse):
    wh, mapping = warehouse
    whole = window_report(wh.reader(), mapping, compute_profile(wh.reader(), mapping), *WINDOW)
    north = mapping.for_segment("north")
    part = window_report(wh.reader(), north, compute_profile(wh.reader(), north), *WINDOW)
    assert 0 < part.rows_current < whole.rows_current
    region = next(d for d in part.to_json()["drift"] if d["column"] == "c_region")
    assert region["psi"] in (0.0, None) or region["psi"] < 1e-9  # one category on both sides: nothing to drift


def test_each_segment_has_its_own_reference_and_the_whole_keeps_its_id(warehouse):
    _, mapping = warehouse
    ids = {reference_id(reference_definition(mapping.for_segment(s["name"]))) for s in SEGMENTS}
    plain = data.mapping(mapping.table, mapping.reference.table)
    assert len(ids) == len(SEGMENTS)
    assert reference_id(reference_definition(mapping)) == reference_id(reference_definition(plain))
    assert reference_id(reference_definition(mapping)) not in ids


# --------------------------------------------------------------------------------------------
# The job stores each segment beside the whole population, which stays as it was
# --------------------------------------------------------------------------------------------
def stored(tower: sa.Engine, segment: str) -> list[tuple]:
    r = monitoring_results.c
    with tower.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(
            sa.select(r.version, r.window_start, r.slice_key, r.slice_value, r.column_name, r.metric, r.value,
                      r.alert).where(r.segment == segment)))


def test_the_job_stores_every_segment_and_the_whole_population_is_unchanged(warehouse, tmp_path: Path):
    wh, mapping = warehouse
    if wh.kind != "duckdb":
        pytest.skip("the job's storage does not depend on the warehouse kind: DuckDB is enough")
    plain = data.mapping(mapping.table, mapping.reference.table)
    towers = []
    for name, m in (("plain", plain), ("segmented", mapping)):
        tower = make_tower_engine(f"sqlite:///{tmp_path / name}.db")
        create_schema(tower)
        for _ in range(2):  # twice: idempotent
            run = job.run_model(wh.reader(), tower, m, MonitoringConfig(), since=data.day(0).date())
        assert run.segment_errors == ()
        towers.append(tower)
    assert stored(towers[1], OVERALL) == stored(towers[0], OVERALL)
    for segment in SEGMENTS:
        rows = stored(towers[1], segment["name"])
        rows_metric = {(r[0], r[1]): r[6] for r in rows if r[5] == "rows" and r[0] == "*"}
        frame = only(LOG, segment)
        for (_, day), value in rows_metric.items():
            assert value == len(data.in_window(frame, day, day + pd.Timedelta(days=1)))
    assert stored(towers[0], "north") == []


def test_a_segment_without_reference_rows_is_reported_and_the_rest_is_monitored(warehouse, tmp_path: Path):
    wh, mapping = warehouse
    if wh.kind != "duckdb":
        pytest.skip("DuckDB is enough for the job's error handling")
    raw_segments = [*SEGMENTS[:1], {"name": "nobody", "column": "c_region", "values": ["atlantis"]}]
    m = parse_model_mapping(mapping.name, {
        "table": mapping.table, "task": mapping.task, "columns": data.COLUMNS,
        "features": {"numerical": data.NUMERICAL, "categorical": data.CATEGORICAL}, "sensitive": data.SENSITIVE,
        "reference": {"table": mapping.reference.table}, "segments": raw_segments})
    tower = make_tower_engine(f"sqlite:///{tmp_path / 't.db'}")
    create_schema(tower)
    run = job.run_model(wh.reader(), tower, m, MonitoringConfig(), since=data.day(0).date())
    assert len(run.segment_errors) == 1 and "segment nobody" in run.segment_errors[0]
    assert "holds no rows" in run.segment_errors[0]
    assert stored(tower, "north") and stored(tower, OVERALL)


# --------------------------------------------------------------------------------------------
# Declaring segments: a structured filter, never SQL
# --------------------------------------------------------------------------------------------
def declare(*segments: Any) -> ModelMapping:
    return data.mapping("t", "r", segments=list(segments))


@pytest.mark.parametrize(("segment", "message"), [
    ({"name": "x", "column": "c_region", "where": "1=1"}, "unknown keys: where"),
    ({"name": "x", "column": "c_region", "sql": "region = 'north'"}, "never SQL"),
    ({"name": "x", "column": "c_region; DROP TABLE t", "values": ["a"]}, "is not a feature or sensitive column"),
    ({"name": "x", "column": "latency_ms", "values": [1]}, "is not a feature or sensitive column"),
    ({"name": "x", "column": "c_region", "range": [0, 1]}, "a range needs a numerical column"),
    ({"name": "x", "column": "x_normal", "range": [2, 1]}, "is empty"),
    ({"name": "x", "column": "x_normal", "range": [None, None]}, "open at both ends"),
    ({"name": "x", "column": "x_normal", "range": [float("nan"), 1]}, "finite number"),
    ({"name": "x", "column": "x_normal", "range": [0, float("inf")]}, "finite number"),
    ({"name": "x", "column": "x_normal", "values": [1], "range": [0, 1]}, "exactly one of values or range"),
    ({"name": "x", "column": "c_region", "values": []}, "a list of 1 to"),
    ({"name": "x", "column": "c_region", "values": [["nested"]]}, "is not a string or a number"),
    ({"name": "x", "column": "c_region", "values": ["a" * 5000]}, "longer than"),
    ({"name": "", "column": "c_region", "values": ["a"]}, "not a valid segment name"),
    ({"name": "<script>", "column": "c_region", "values": ["a"]}, "not a valid segment name"),
    ({"name": "x" * 65, "column": "c_region", "values": ["a"]}, "not a valid segment name"),
    ("north", "must be a mapping"),
])
def test_a_bad_segment_is_refused_at_load_time_naming_the_field(segment, message):
    with pytest.raises(ConfigError, match=r"models\.synthetic\.segments") as refused:
        declare(segment)
    assert message in str(refused.value) + refused.value.hint


def test_two_segments_may_not_share_a_name_whatever_its_case():
    with pytest.raises(ConfigError, match="used twice"):
        declare({"name": "North", "column": "c_region", "values": ["north"]},
                {"name": "north", "column": "c_region", "values": ["south"]})


def test_an_unknown_segment_is_refused_with_the_known_ones():
    mapping = declare(SEGMENTS[0])
    with pytest.raises(ConfigError, match="has no segment named 'south'") as refused:
        mapping.for_segment("south")
    assert "north" in refused.value.hint


def test_a_hostile_value_is_a_bound_parameter_and_selects_nothing(warehouse):
    wh, mapping = warehouse
    hostile = "north' OR '1'='1"
    m = data.mapping(mapping.table, mapping.reference.table,
                     segments=[{"name": "evil", "column": "c_region", "values": [hostile]}]).for_segment("evil")
    report = window_report(wh.reader(), m, compute_profile(wh.reader(), mapping), *WINDOW)
    assert report.rows_current == 0


# --------------------------------------------------------------------------------------------
# A tower state written before segments
# --------------------------------------------------------------------------------------------
OLD_TABLE = """CREATE TABLE monitoring_results (
    id INTEGER PRIMARY KEY, model VARCHAR(255) NOT NULL, version VARCHAR(255) NOT NULL,
    window_start TIMESTAMP NOT NULL, window_end TIMESTAMP NOT NULL, slice_key VARCHAR(255) DEFAULT '' NOT NULL,
    slice_value VARCHAR(1000) DEFAULT '' NOT NULL, column_name VARCHAR(255) DEFAULT '' NOT NULL,
    metric VARCHAR(64) NOT NULL, method VARCHAR(64) DEFAULT '' NOT NULL, value FLOAT, threshold FLOAT,
    alert BOOLEAN, reference_id VARCHAR(64), computed_at TIMESTAMP NOT NULL,
    CONSTRAINT uq_monitoring_results_cell UNIQUE (model, version, window_start, window_end, slice_key, slice_value,
                                                   column_name, metric))"""


@pytest.fixture(params=["sqlite", "postgres"])
def old_tower(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with tower_state(request.param, tmp_path, with_schema=False, name="old.db") as engine:
        yield engine


def test_an_older_tower_state_gains_the_segment_column_and_keeps_its_results(old_tower):
    old = OLD_TABLE if old_tower.dialect.name == "sqlite" else \
        OLD_TABLE.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY")
    cell = {"model": "m", "version": "*", "window_start": data.day(0), "window_end": data.day(1), "slice_key": "",
            "slice_value": "", "column_name": "", "metric": "rows", "method": "", "value": 7.0,
            "computed_at": data.day(1)}
    with old_tower.begin() as conn:
        conn.execute(sa.text(old))
        conn.execute(sa.text("INSERT INTO monitoring_results (model, version, window_start, window_end, slice_key, "
                             "slice_value, column_name, metric, method, value, computed_at) VALUES (:model, "
                             ":version, :window_start, :window_end, :slice_key, :slice_value, :column_name, :metric, "
                             ":method, :value, :computed_at)"), cell)
    create_schema(old_tower)
    create_schema(old_tower)  # a second start finds it done
    with old_tower.begin() as conn:
        kept = conn.execute(sa.select(monitoring_results.c.segment, monitoring_results.c.value)).all()
        conn.execute(sa.insert(monitoring_results), [{**cell, "segment": "north", "value": 3.0}])
        with pytest.raises(sa.exc.IntegrityError):  # the cell is still unique, per segment
            with conn.begin_nested():
                conn.execute(sa.insert(monitoring_results), [{**cell, "segment": "north", "value": 4.0}])
    assert kept == [(OVERALL, 7.0)]


# --------------------------------------------------------------------------------------------
# The report command
# --------------------------------------------------------------------------------------------
@pytest.fixture
def configured(warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wh, mapping = warehouse
    if wh.kind != "duckdb":
        pytest.skip("the command reads any warehouse through the same code: DuckDB is enough")
    config = {"models": {"synthetic": {
        "table": mapping.table, "task": "binary_classification", "columns": data.COLUMNS,
        "features": {"numerical": data.NUMERICAL, "categorical": data.CATEGORICAL}, "sensitive": data.SENSITIVE,
        "reference": {"table": mapping.reference.table}, "segments": SEGMENTS[:2]}}}
    path = tmp_path / "tower.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    wh.reader().dispose()
    monkeypatch.setenv("TOWER_CONFIG", str(path))
    monkeypatch.setenv("WAREHOUSE_URL", wh.url)
    monkeypatch.setenv("TOWER_DB_URL", f"sqlite:///{tmp_path / 'tower.db'}")


def test_the_report_command_gives_each_segments_report(configured, capsys):
    args = ["report", "--model", "synthetic", "--start", WINDOW[0].isoformat(), "--end", WINDOW[1].isoformat()]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["segment"] is None
    assert [s["segment"]["name"] for s in out["segments"]] == ["north", "mid-x"]
    assert out["segments"][1]["segment"] == {"name": "mid-x", "column": "x_normal", "range": [9.0, 11.0]}
    north = out["segments"][0]
    assert north["rows"]["current"] == len(data.in_window(only(LOG, SEGMENTS[0]), *WINDOW))
    assert cli.main([*args, "--segment", "north"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["segment"]["name"] == "north" and "segments" not in alone
    assert_same({k: v for k, v in alone.items() if k != "segment"},
                {k: v for k, v in north.items() if k != "segment"})
    assert cli.main([*args, "--segment", "atlantis"]) == 2
    assert "has no segment named 'atlantis'" in capsys.readouterr().err
