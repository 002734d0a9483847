"""The demo seeder, on a real MLflow sqlite registry and a real DuckDB warehouse.

One seed (module fixture) serves every read-only test; the last tests rebuild it with force and
check the rebuild is identical. Table and column names always come from the tower.yaml mapping.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pytest
import yaml
from mlflow import MlflowClient
from sqlalchemy.engine import make_url

from services.demo.seed import MARKER_NAME, SeedSummary, demo_exists, seed_demo
from services.errors import ConfigError
from services.settings import Settings, load_settings

pytestmark = pytest.mark.slow

END = date(2026, 11, 20)
DEMO_MODELS = ("credit-risk", "loan-approval", "fraud-detection", "demand-forecast")
CLASSIFIER_METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc"}
REGRESSOR_METRICS = {"mae", "rmse", "r2"}


@dataclass(frozen=True)
class Seeded:
    settings: Settings
    summary: SeedSummary
    cwd: Path


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    root = tmp_path_factory.mktemp("demo")
    cwd = root / "cwd"
    cwd.mkdir()
    settings = load_settings({"TOWER_DATA_DIR": str(root / "data")})
    previous = os.getcwd()
    os.chdir(cwd)  # so a stray ./mlruns would show up here
    try:
        summary = seed_demo(settings, end_date=END)
    finally:
        os.chdir(previous)
    return Seeded(settings, summary, cwd)


def _client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)


def _warehouse_path(settings: Settings) -> Path:
    return Path(make_url(settings.warehouse_url).database)


@contextmanager
def _warehouse(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(_warehouse_path(settings)), read_only=True)
    try:
        yield connection
    finally:
        connection.close()


def _scalar(settings: Settings, sql: str, *params: object) -> float:
    with _warehouse(settings) as connection:
        return connection.execute(sql, list(params)).fetchone()[0]


def _window_day(day_offset: int) -> datetime:
    """Midnight of the day ``day_offset`` days after the end date (negative: before it)."""
    return datetime.combine(END + timedelta(days=day_offset), datetime.min.time())


def _checksums(settings: Settings) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent hash of every row, per demo table."""
    tables = [t for m in settings.models.values() for t in (m.table, m.reference.table) if t]
    with _warehouse(settings) as connection:
        return {t: connection.execute(f"SELECT count(*), sum(hash(t)) FROM {t} t").fetchone() for t in tables}


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- registry


def test_registers_every_demo_model_with_three_to_six_versions(seeded: Seeded) -> None:
    client = _client(seeded.settings)
    names = {m.name for m in client.search_registered_models()}
    assert names == set(DEMO_MODELS)
    for name in DEMO_MODELS:
        versions = client.search_model_versions(f"name='{name}'")
        assert 3 <= len(versions) <= 6, name
    assert seeded.summary.versions == sum(len(client.search_model_versions(f"name='{n}'")) for n in DEMO_MODELS)
    assert seeded.summary.models == DEMO_MODELS and not seeded.summary.skipped


def test_production_and_staging_aliases_point_at_existing_versions(seeded: Seeded) -> None:
    client = _client(seeded.settings)
    staging_newer = 0
    for name in DEMO_MODELS:
        model = client.get_registered_model(name)  # search results omit aliases in MLflow 3
        production, staging = int(model.aliases["production"]), int(model.aliases["staging"])
        existing = {int(v.version) for v in client.search_model_versions(f"name='{name}'")}
        assert {production, staging} <= existing, name
        staging_newer += staging > production
        assert model.tags["owner"] in {"alice", "bob", "carol", "dave"} and model.tags["team"]
        assert model.description
    assert staging_newer >= 2
    owners = {client.get_registered_model(n).tags["owner"] for n in DEMO_MODELS}
    assert len(owners) == len(DEMO_MODELS)  # one owner per model


def test_every_version_run_records_params_metrics_dataset_code_version_and_signature(seeded: Seeded) -> None:
    client = _client(seeded.settings)
    for name in DEMO_MODELS:
        mapping = seeded.settings.models[name]
        expected_metrics = CLASSIFIER_METRICS if mapping.task == "binary_classification" else REGRESSOR_METRICS
        for version in client.search_model_versions(f"name='{name}'"):
            run = client.get_run(version.run_id)
            assert run.data.params.get("algorithm"), (name, version.version)
            assert expected_metrics <= set(run.data.metrics)
            assert re.fullmatch(r"[0-9a-f]{40}", run.data.tags["mlflow.source.git.commit"])
            assert run.data.tags["data_version"]
            inputs = run.inputs.dataset_inputs
            assert len(inputs) == 1 and inputs[0].dataset.digest and inputs[0].dataset.source
            assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
            assert run.info.status == "FINISHED" and run.info.end_time > run.info.start_time
            assert version.description
            # The signature, read from the logged model's MLmodel file; the model is never loaded.
            model_id = version.model_id or version.source.removeprefix("models:/")
            logged = client.get_logged_model(model_id)
            assert logged.source_run_id == version.run_id
            mlmodel = yaml.safe_load((Path(urlparse(logged.artifact_location).path) / "MLmodel").read_text())
            signature_inputs = {column["name"] for column in yaml.safe_load(mlmodel["signature"]["inputs"])}
            assert signature_inputs == set(mapping.numerical + mapping.categorical)


def test_model_artifacts_live_under_the_data_folder_and_no_mlruns_appears(seeded: Seeded) -> None:
    client = _client(seeded.settings)
    artifacts = Path(seeded.settings.data_dir) / "artifacts"
    for name in DEMO_MODELS:
        location = client.get_experiment_by_name(name).artifact_location
        assert Path(urlparse(location).path).is_relative_to(artifacts)
    assert not (seeded.cwd / "mlruns").exists() and not Path("mlruns").exists()


def test_a_tuning_run_is_the_parent_of_credit_risk_candidates(seeded: Seeded) -> None:
    client = _client(seeded.settings)
    parents = {client.get_run(v.run_id).data.tags.get("mlflow.parentRunId")
               for v in client.search_model_versions("name='credit-risk'")} - {None}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.info.run_name == "credit-risk-tuning" and parent.data.params["search"]


# ---------------------------------------------------------------- warehouse


def test_prediction_logs_cover_the_window_with_enough_rows(seeded: Seeded) -> None:
    total = 0
    for name in DEMO_MODELS:
        m = seeded.settings.models[name]
        ts = m.column("timestamp")
        rows, first, last = _warehouse_row(seeded.settings, f"SELECT count(*), min({ts}), max({ts}) FROM {m.table}")
        total += rows
        assert (last - first).days >= 30, name
        assert _window_day(-34) <= first and last < _window_day(1), name
    assert total >= 250_000 and total == seeded.summary.log_rows


def _warehouse_row(settings: Settings, sql: str) -> tuple:
    with _warehouse(settings) as connection:
        return connection.execute(sql).fetchone()


def test_tables_use_the_physical_column_names_of_the_mapping(seeded: Seeded) -> None:
    with _warehouse(seeded.settings) as connection:
        for name in DEMO_MODELS:
            m = seeded.settings.models[name]
            columns = {row[0] for row in connection.execute(f"DESCRIBE {m.table}").fetchall()}
            expected = set(m.columns.values()) | set(m.numerical + m.categorical + m.sensitive)
            assert expected <= columns, (name, expected - columns)
            reference = {row[0] for row in connection.execute(f"DESCRIBE {m.reference.table}").fetchall()}
            wanted = {m.column(c) for c in ("prediction", "score", "label") if c in m.columns}
            assert wanted | set(m.numerical + m.categorical + m.sensitive) <= reference, name
            assert 5_000 <= connection.execute(f"SELECT count(*) FROM {m.reference.table}").fetchone()[0] <= 10_000
    demand = seeded.settings.models["demand-forecast"]
    assert demand.column("timestamp") == "event_time" and "score" not in demand.columns


def test_labels_arrive_late(seeded: Seeded) -> None:
    m = seeded.settings.models["fraud-detection"]
    sql = (f"SELECT avg(CASE WHEN {m.column('label')} IS NULL THEN 0 ELSE 1 END) FROM {m.table} "
           f"WHERE {m.column('timestamp')} >= ? AND {m.column('timestamp')} < ?")
    last_day = _scalar(seeded.settings, sql, _window_day(0), _window_day(1))
    ten_days_before = _scalar(seeded.settings, sql, _window_day(-10), _window_day(-9))
    assert last_day < 0.2 and ten_days_before > 0.99


def test_served_versions_end_on_the_alias_holders(seeded: Seeded) -> None:
    client = _client(seeded.settings)
    for name in DEMO_MODELS:
        m = seeded.settings.models[name]
        aliases = client.get_registered_model(name).aliases
        with _warehouse(seeded.settings) as connection:
            served = dict(connection.execute(
                f"SELECT {m.column('version')}, count(*) FROM {m.table} WHERE {m.column('timestamp')} >= ? "
                "GROUP BY 1", [_window_day(0)]).fetchall())
        assert max(served, key=served.get) == str(aliases["production"]), name
        assert set(served) <= {str(aliases["production"]), str(aliases["staging"])}, name


def test_credit_risk_income_drifts_down_from_mid_window(seeded: Seeded) -> None:
    m = seeded.settings.models["credit-risk"]
    sql = f"SELECT avg({{col}}) FROM {m.table} WHERE {m.column('timestamp')} {{op}} ?"
    middle = _window_day(-17)
    income_before = _scalar(seeded.settings, sql.format(col="income", op="<"), middle)
    income_after = _scalar(seeded.settings, sql.format(col="income", op=">="), middle)
    debt_before = _scalar(seeded.settings, sql.format(col="debt_ratio", op="<"), middle)
    debt_after = _scalar(seeded.settings, sql.format(col="debt_ratio", op=">="), middle)
    age_before = _scalar(seeded.settings, sql.format(col="age", op="<"), middle)
    age_after = _scalar(seeded.settings, sql.format(col="age", op=">="), middle)
    assert income_after < 0.9 * income_before
    assert debt_after > debt_before + 0.05
    assert abs(age_after - age_before) < 1.0  # the other features stay put


def _selection_gap(settings: Settings, model: str, group: str) -> float:
    m = settings.models[model]
    with _warehouse(settings) as connection:
        rates = [r for (r,) in connection.execute(
            f"SELECT avg({m.column('prediction')}) FROM {m.table} WHERE {m.column('status')} = 'ok' "
            f"GROUP BY {group}").fetchall()]
    return max(rates) - min(rates)


def test_loan_approval_is_unfair_between_genders_while_credit_risk_is_fair(seeded: Seeded) -> None:
    assert _selection_gap(seeded.settings, "loan-approval", "gender") > 0.1
    assert _selection_gap(seeded.settings, "credit-risk", "gender") < 0.05


def _p95_latency(settings: Settings, model: str, start: datetime, end: datetime) -> float:
    m = settings.models[model]
    return _scalar(settings, f"SELECT quantile_cont({m.column('latency_ms')}, 0.95) FROM {m.table} "
                             f"WHERE {m.column('timestamp')} >= ? AND {m.column('timestamp')} < ?", start, end)


def test_fraud_detection_p95_latency_regresses_after_the_version_change(seeded: Seeded) -> None:
    slo = seeded.settings.models["fraud-detection"].slo.latency_p95_ms
    assert _p95_latency(seeded.settings, "fraud-detection", _window_day(-6), _window_day(1)) > slo
    assert _p95_latency(seeded.settings, "fraud-detection", _window_day(-20), _window_day(-12)) < slo


def test_demand_forecast_stays_healthy_and_errors_are_rare(seeded: Seeded) -> None:
    assert _p95_latency(seeded.settings, "demand-forecast", _window_day(-34), _window_day(1)) < 400
    for name in DEMO_MODELS:
        m = seeded.settings.models[name]
        error_rate = _scalar(seeded.settings, f"SELECT avg(CASE WHEN {m.column('status')} = 'ok' THEN 0 ELSE 1 END) "
                                              f"FROM {m.table}")
        assert 0.0005 < error_rate < 0.006, name


# ---------------------------------------------------------------- idempotence, safety, determinism


def test_seeding_finishes_within_the_budget(seeded: Seeded) -> None:
    assert seeded.summary.seconds < 90


def test_a_complete_seed_leaves_a_marker_and_no_temporary_files(seeded: Seeded) -> None:
    data_dir = Path(seeded.settings.data_dir)
    assert (data_dir / MARKER_NAME).is_file() and demo_exists(seeded.settings)
    assert not list(data_dir.glob("*.seeding*"))


def test_reseeding_without_force_skips_and_changes_nothing(seeded: Seeded) -> None:
    files = [Path(make_url(seeded.settings.mlflow_tracking_uri).database), _warehouse_path(seeded.settings)]
    before = [_file_digest(f) for f in files]
    summary = seed_demo(seeded.settings, end_date=END)
    assert summary.skipped and summary.seconds < 5
    assert summary.log_rows == seeded.summary.log_rows and summary.models == seeded.summary.models
    assert [_file_digest(f) for f in files] == before


def test_a_copied_data_folder_is_still_a_complete_demo(seeded: Seeded, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(seeded.settings.data_dir, copy)
    settings = load_settings({"TOWER_DATA_DIR": str(copy)})
    assert demo_exists(settings) and seed_demo(settings).skipped


def test_force_refuses_to_wipe_a_warehouse_that_is_not_an_embedded_file(tmp_path: Path) -> None:
    settings = load_settings({"TOWER_DATA_DIR": str(tmp_path),
                              "WAREHOUSE_URL": "postgresql://tower:secret@db.example/warehouse"})
    with pytest.raises(ConfigError, match="WAREHOUSE_URL is a postgresql: URL") as raised:
        seed_demo(settings, force=True)
    assert "secret" not in str(raised.value)


def test_force_refuses_to_wipe_a_registry_server(tmp_path: Path) -> None:
    settings = load_settings({"TOWER_DATA_DIR": str(tmp_path), "MLFLOW_TRACKING_URI": "http://mlflow.example:5000"})
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI is a http: URL"):
        seed_demo(settings, force=True)
    assert not demo_exists(settings)


def test_force_refuses_to_delete_files_outside_the_data_folder(tmp_path: Path) -> None:
    settings = load_settings({"TOWER_DATA_DIR": str(tmp_path / "data"),
                              "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"})
    with pytest.raises(ConfigError, match="outside the data folder"):
        seed_demo(settings, force=True)


def test_seeding_never_overwrites_a_registry_that_is_not_a_complete_demo(tmp_path: Path) -> None:
    (tmp_path / "mlflow.db").write_bytes(b"")  # someone's registry, or an interrupted older seed
    settings = load_settings({"TOWER_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="does not hold a complete demo"):
        seed_demo(settings, end_date=END)
    assert (tmp_path / "mlflow.db").read_bytes() == b""


def test_force_reseed_rebuilds_identical_content_and_reads_see_the_new_registry(seeded: Seeded) -> None:
    client = _client(seeded.settings)  # keeps MLflow's cached engine on the old file alive
    old_run = client.get_model_version("credit-risk", "1").run_id
    before = _checksums(seeded.settings)

    summary = seed_demo(seeded.settings, end_date=END, force=True)

    assert not summary.skipped and summary.log_rows == seeded.summary.log_rows
    assert _checksums(seeded.settings) == before  # same end date, same content
    new_run = _client(seeded.settings).get_model_version("credit-risk", "1").run_id
    assert new_run != old_run  # a rebuilt registry, and not a stale read of the deleted file
    assert demo_exists(seeded.settings)
