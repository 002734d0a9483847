"""The monitoring job: daily windows stored once, re-runs idempotent, references kept; the CLI around it.

The warehouse is a DuckDB file; the tower state is SQLite and PostgreSQL (a schema of its own).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from services import cli
from services.errors import ConfigError, MappingError, NotFound
from services.mapping import parse_model_mapping
from services.monitoring import job, reference
from services.monitoring.config import MonitoringConfig
from services.monitoring.reference import compute_profile, load_or_compute, stored_profile
from services.monitoring.store import monitoring_references, monitoring_results
from services.settings import load_settings
from tests.support import monitoring_data as data
from tests.support.databases import ScratchWarehouse, tower_state

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAYS = 6
GAP_DAY = 3  # no traffic at all that day


def job_log() -> pd.DataFrame:
    """Six days with a gap day; labels complete except on the last day (a provisional window)."""
    log = data.make_log(seed=11, rows=3000, days=DAYS)
    log = log[log["ts"].dt.floor("D") != pd.Timestamp(data.day(GAP_DAY))].reset_index(drop=True)
    last_day = log["ts"] >= data.day(DAYS - 1)
    rng = np.random.default_rng(3)
    fill = pd.array(rng.integers(0, 2, len(log)), dtype="Int64")
    log["label"] = log["label"].where(log["label"].notna() | last_day, fill)
    return log


LOG = job_log()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ScratchWarehouse, object]]:
    wh = ScratchWarehouse("duckdb", tmp_path_factory.mktemp("wh"))
    mapping = data.mapping(wh.write(LOG, "predictions_synthetic"),
                           wh.write(data.make_reference(rows=2000), "reference_synthetic"))
    yield wh, mapping
    wh.close()


@pytest.fixture(params=["sqlite", "postgres"])
def tower(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    with tower_state(request.param, tmp_path) as engine:
        yield engine


def results(tower: sa.Engine) -> list[tuple]:
    """Every stored cell without its id and computation time, in a stable order."""
    r = monitoring_results.c
    columns = [r.model, r.version, r.window_start, r.window_end, r.slice_key, r.slice_value, r.column_name, r.metric,
               r.method, r.value, r.threshold, r.alert, r.reference_id]
    with tower.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(sa.select(*columns)))


def test_running_the_job_twice_gives_the_same_rows_and_no_duplicates(warehouse, tower):
    wh, mapping = warehouse
    config = MonitoringConfig()
    first = job.run_model(wh.reader(), tower, mapping, config, since=data.day(0).date())
    before = results(tower)
    again = job.run_model(wh.reader(), tower, mapping, config, since=data.day(0).date())
    assert results(tower) == before
    assert first.windows == again.windows == DAYS and first.results == again.results == len(before)
    keys = [row[:8] for row in before]
    assert len(keys) == len(set(keys)), "one row per (model, version, window, slice, column, metric)"


def test_every_day_has_all_versions_and_each_version_and_a_gap_day_has_zero_rows(warehouse, tower):
    wh, mapping = warehouse
    job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=data.day(0).date())
    r = monitoring_results.c
    with tower.connect() as conn:
        query = sa.select(r.window_start, r.value).where(r.metric == "rows", r.version == "*")
        counts = {day: value for day, value in conn.execute(query)}
        versions = set(conn.execute(sa.select(r.version).distinct()).scalars())
    expected = LOG.groupby(LOG["ts"].dt.floor("D")).size()
    assert counts == {**{d.to_pydatetime(): float(n) for d, n in expected.items()}, data.day(GAP_DAY): 0.0}
    assert versions == {"*", "1", "2"}


def test_a_default_run_recomputes_only_the_last_and_still_provisional_windows(warehouse, tower, monkeypatch):
    wh, mapping = warehouse
    job.run_model(wh.reader(), tower, mapping, MonitoringConfig())
    computed = []
    real = job.fetch_aggregates
    monkeypatch.setattr(job, "fetch_aggregates", lambda *a, **k: computed.append(a[3:5]) or real(*a, **k))
    run = job.run_model(wh.reader(), tower, mapping, MonitoringConfig())
    # The last day lacks labels (provisional), so it is the only one recomputed.
    assert (run.first_day, run.last_day, run.windows) == (data.day(DAYS - 1).date(), data.day(DAYS - 1).date(), 1)
    assert computed == [(data.day(DAYS - 1), data.day(DAYS))]


def test_the_first_run_backfills_the_configured_number_of_days(warehouse, tower):
    wh, mapping = warehouse
    run = job.run_model(wh.reader(), tower, mapping, MonitoringConfig(backfill_days=2))
    assert (run.first_day, run.last_day) == (data.day(DAYS - 2).date(), data.day(DAYS - 1).date())


def test_since_and_until_are_clamped_to_the_log(warehouse, tower):
    wh, mapping = warehouse
    run = job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=date(2020, 1, 1),
                        until=data.day(1).date())
    assert (run.first_day, run.last_day, run.windows) == (data.day(0).date(), data.day(1).date(), 2)
    run = job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=date(2030, 1, 1))
    assert run.windows == 0 and run.note == "no day to compute in the requested range"


def test_the_reference_profile_is_computed_once_and_read_back_identically(warehouse, tower, monkeypatch):
    wh, mapping = warehouse
    calls = []
    monkeypatch.setattr(reference, "compute_profile", lambda *a, **k: calls.append(1) or compute_profile(*a, **k))
    first = load_or_compute(tower, wh.reader(), mapping)
    second = load_or_compute(tower, wh.reader(), mapping)
    assert len(calls) == 1
    stored = stored_profile(tower, first.reference_id)
    assert second.reference_id == stored.reference_id == first.reference_id
    for column, ref in first.numerical.items():
        other = stored.numerical[column]
        assert np.array_equal(ref.edges, other.edges) and np.array_equal(ref.deciles, other.deciles)
        assert ref.histogram == other.histogram and ref.values == other.values
    assert stored.categorical == first.categorical and stored.rows == first.rows
    assert stored.classification.confusion == first.classification.confusion
    assert stored.classification.scores == first.classification.scores
    with tower.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(monitoring_references)).scalar() == 1
    load_or_compute(tower, wh.reader(), mapping, refresh=True)
    assert len(calls) == 2


def test_a_changed_reference_definition_gets_its_own_profile_and_recomputes_the_windows(warehouse, tower):
    wh, mapping = warehouse
    job.run_model(wh.reader(), tower, mapping, MonitoringConfig())
    narrower = data.mapping(mapping.table, mapping.reference.table, features={"numerical": ["x_normal"]})
    run = job.run_model(wh.reader(), tower, narrower, MonitoringConfig())
    assert run.reference_id != load_or_compute(tower, wh.reader(), mapping).reference_id
    assert run.first_day == data.day(0).date(), "windows computed against the old reference are recomputed"


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------
@pytest.fixture
def configured(warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TOWER_CONFIG, WAREHOUSE_URL and TOWER_DB_URL pointed at the synthetic model."""
    wh, mapping = warehouse
    config = {"models": {"synthetic": {
        "table": mapping.table, "task": "binary_classification", "columns": data.COLUMNS,
        "features": {"numerical": data.NUMERICAL, "categorical": data.CATEGORICAL}, "sensitive": data.SENSITIVE,
        "reference": {"table": mapping.reference.table}, "slo": {"latency_p95_ms": 250, "error_rate": 0.05}}}}
    path = tmp_path / "tower.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    wh.reader().dispose()  # the CLI opens the DuckDB file itself
    monkeypatch.setenv("TOWER_CONFIG", str(path))
    monkeypatch.setenv("WAREHOUSE_URL", wh.url)
    monkeypatch.setenv("TOWER_DB_URL", f"sqlite:///{tmp_path / 'tower.db'}")
    return path


def test_report_command_prints_the_documented_json_and_exits_0(configured, capsys):
    code = cli.main(["report", "--model", "synthetic", "--start", "2026-03-01", "--end", "2026-03-03T00:00:00+00:00",
                     "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert list(out) == ["model", "rows", "drift", "fairness", "latency", "performance", "multivariate_drift",
                         "estimated_performance", "estimation", "data_quality", "segment", "segments"]
    assert out["segment"] is None and out["segments"] == []  # the model declares none
    assert set(out["estimated_performance"]) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert out["model"] == "synthetic" and out["rows"]["reference"] == 2000
    assert out["rows"]["current"] == len(data.in_window(LOG, data.day(0), data.day(2)))
    assert [d["column"] for d in out["drift"]] == data.NUMERICAL + data.CATEGORICAL
    assert [f["sensitive"] for f in out["fairness"]] == data.SENSITIVE


def test_report_with_a_reference_range_uses_the_log(configured, capsys):
    code = cli.main(["report", "--model", "synthetic", "--start", "2026-03-03", "--end", "2026-03-05",
                     "--reference-start", "2026-03-01", "--reference-end", "2026-03-03", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["rows"]["reference"] == len(data.in_window(LOG, data.day(0), data.day(2)))


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "nope", "--start", "2026-03-01", "--end", "2026-03-02"],
     "error: No monitored model named 'nope'. Models mapped in tower.yaml: synthetic."),
    (["--model", "synthetic", "--start", "2026-03-02", "--end", "2026-03-02"], "--start must be before --end"),
    (["--model", "synthetic", "--start", "2026-03-03", "--end", "2026-03-02"], "--start must be before --end"),
    (["--model", "synthetic", "--start", "2026-03-01", "--end", "2026-03-02", "--reference-start", "2026-03-01"],
     "Give both --reference-start and --reference-end"),
])
def test_report_command_exits_2_with_a_clear_message(configured, capsys, argv, message):
    assert cli.main(["report", *argv, "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_report_command_refuses_a_date_that_is_not_iso(configured, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["report", "--model", "synthetic", "--start", "yesterday", "--end", "2026-03-02"])
    assert exited.value.code == 2 and "'yesterday' is not an ISO date" in capsys.readouterr().err


def test_monitor_run_command_stores_windows_and_prints_a_summary_per_model(configured, capsys):
    assert cli.main(["monitor", "run", "--since", "2026-03-01"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"synthetic: {DAYS} daily window(s) 2026-03-01..2026-03-06")
    assert f"[{'#' * 30}] {DAYS}/{DAYS} days" in captured.err
    assert cli.main(["monitor", "run", "--model", "ghost"]) == 2
    assert "No monitored model named 'ghost'" in capsys.readouterr().err


def test_report_runs_as_a_module_with_the_environment(configured):
    done = subprocess.run(  # the documented entry point, in a fresh interpreter
        [sys.executable, "-m", "services.cli", "report", "--model", "synthetic", "--start", "2026-03-01",
         "--end", "2026-03-02", "--format", "json"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
        check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == "synthetic"


def test_run_monitoring_refuses_an_unknown_model_and_an_inverted_range(configured):
    settings = load_settings()
    with pytest.raises(NotFound, match="No monitored model named 'x'"):
        job.run_monitoring(settings, model="x")
    with pytest.raises(ConfigError, match="is after"):
        job.run_monitoring(settings, since=date(2026, 3, 5), until=date(2026, 3, 1))


def test_a_log_that_breaks_while_it_is_computed_fails_its_model_only(warehouse, configured):
    wh, mapping = warehouse
    fractional = LOG.assign(prediction=0.5)  # every mapped column is there, but no 0/1 predictions
    settings = load_settings()
    settings.models["broken"] = data.mapping(wh.write(fractional, "predictions_fractional"), mapping.reference.table,
                                             name="broken")
    runs = {run.model: run for run in job.run_monitoring(settings, since=data.day(0).date())}
    assert runs["synthetic"].error is None and runs["synthetic"].windows == DAYS
    assert "0/1 predictions" in runs["broken"].error


def broken_models(wh: ScratchWarehouse, table: str, reference_table: str) -> dict[str, dict]:
    """Two models that do not match the warehouse: one lacks two columns, the other its table."""
    columns = {**data.COLUMNS, "latency_ms": "latency_gone", "status": "status_gone"}
    common = {"task": "binary_classification", "features": {"numerical": ["x_normal"]},
              "reference": {"table": reference_table}}
    return {"credit-risk": {**common, "table": table, "columns": columns},
            "fraud-detection": {**common, "table": wh.table("predictions_nowhere"), "columns": data.COLUMNS}}


def test_monitor_run_names_every_missing_table_and_column_before_computing_anything(warehouse, configured,
                                                                                    monkeypatch):
    wh, mapping = warehouse
    settings = load_settings()
    for name, raw in broken_models(wh, mapping.table, mapping.reference.table).items():
        settings.models[name] = parse_model_mapping(name, raw)
    computed: list[str] = []
    monkeypatch.setattr(job, "run_model", lambda _w, _t, m, *a, **k: computed.append(m.name))
    with pytest.raises(MappingError) as caught:
        job.run_monitoring(settings, since=data.day(0).date())
    message = caught.value.message
    assert f"credit-risk: table {mapping.table} has no columns latency_gone, status_gone" in message
    assert f"fraud-detection: no table {wh.table('predictions_nowhere')}" in message
    assert "synthetic:" not in message  # the model whose mapping fits is not named
    assert computed == [], "nothing is computed while any mapping is broken"


def test_monitor_run_command_refuses_broken_mappings_with_one_error_and_exit_2(warehouse, configured, capsys):
    wh, mapping = warehouse
    config = yaml.safe_load(configured.read_text(encoding="utf-8"))
    config["models"].update(broken_models(wh, mapping.table, mapping.reference.table))
    configured.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert cli.main(["monitor", "run", "--since", "2026-03-01", "--quiet"]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("error: ") and "latency_gone, status_gone" in line and "predictions_nowhere" in line
    assert captured.out == ""
    # --model checks only the model it runs: a broken neighbour does not block it
    assert cli.main(["monitor", "run", "--model", "synthetic", "--since", "2026-03-01", "--quiet"]) == 0


def test_windows_are_utc_days(warehouse, tower):
    wh, mapping = warehouse
    job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=data.day(0).date(), until=data.day(0).date())
    r = monitoring_results.c
    with tower.connect() as conn:
        windows = set(conn.execute(sa.select(r.window_start, r.window_end).distinct()))
    assert windows == {(data.day(0), data.day(0) + timedelta(days=1))}


def test_two_runs_at_once_leave_one_copy_of_every_window(warehouse, tower):
    wh, mapping = warehouse
    job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=data.day(0).date())
    expected = results(tower)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            job.run_model(wh.reader(), tower, mapping, MonitoringConfig(), since=data.day(0).date(), chunk_days=2)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results(tower) == expected
