"""Settings: environment over tower.yaml over defaults; bad values are refused with their source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.errors import ConfigError
from services.mapping import parse_model_mapping
from services.settings import PROJECT_ROOT, SETTINGS, load_settings

MINIMAL_MODEL = {"table": "preds", "columns": {"timestamp": "ts", "version": "v", "prediction": "p",
                                               "latency_ms": "lat", "status": "st"}}


def write_config(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "tower.yaml"
    path.write_text(text, encoding="utf-8")
    return {"TOWER_CONFIG": str(path)}


def test_defaults_put_every_embedded_store_under_the_data_folder(tmp_path):
    s = load_settings({"TOWER_DATA_DIR": str(tmp_path)})
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.warehouse_url == f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    assert s.tower_db_url == f"sqlite:///{tmp_path / 'tower.db'}"
    assert s.demo is False


def test_environment_wins_over_yaml_and_yaml_over_defaults(tmp_path):
    env = write_config(tmp_path, "warehouse_url: sqlite:///from-yaml.db\nmlflow_timeout_s: 3\n")
    s = load_settings(env)
    assert s.warehouse_url == "sqlite:///from-yaml.db"
    assert s.mlflow_timeout_s == 3.0
    s = load_settings({**env, "WAREHOUSE_URL": "postgresql+psycopg://db/x", "TOWER_MLFLOW_TIMEOUT_S": "7.5"})
    assert s.warehouse_url == "postgresql+psycopg://db/x"
    assert s.mlflow_timeout_s == 7.5


def test_bad_value_is_refused_naming_its_source(tmp_path):
    with pytest.raises(ConfigError, match="TOWER_MLFLOW_TIMEOUT_S is invalid"):
        load_settings({"TOWER_MLFLOW_TIMEOUT_S": "-1"})
    env = write_config(tmp_path, "demo: perhaps\n")
    with pytest.raises(ConfigError, match=r"tower.yaml: demo is invalid"):
        load_settings(env)


def test_missing_or_broken_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"TOWER_CONFIG": str(tmp_path / "nope.yaml")})
    env = write_config(tmp_path, "models: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(env)


def test_the_committed_demo_config_maps_four_models_with_their_slos():
    s = load_settings({})
    assert set(s.models) == {"credit-risk", "loan-approval", "fraud-detection", "demand-forecast"}
    forecast = s.models["demand-forecast"]
    assert forecast.task == "regression"
    assert forecast.column("timestamp") == "event_time" and "score" not in forecast.columns
    assert s.models["fraud-detection"].slo.latency_p95_ms == 250
    assert s.stage_aliases == {"Production": "production", "Staging": "staging"}


@pytest.mark.parametrize("bad_name", ["x; DROP TABLE y", "a b", "", "1abc", "x\"y", "a.b.c"])
def test_table_names_outside_the_identifier_set_are_refused(bad_name):
    with pytest.raises(ConfigError, match="not a valid table or column name"):
        parse_model_mapping("m", {**MINIMAL_MODEL, "table": bad_name})


def test_mapping_requires_the_columns_every_page_reads():
    columns = dict(MINIMAL_MODEL["columns"])
    del columns["latency_ms"]
    with pytest.raises(ConfigError, match="missing: latency_ms"):
        parse_model_mapping("m", {**MINIMAL_MODEL, "columns": columns})
    with pytest.raises(ConfigError, match="unknown keys: colour"):
        parse_model_mapping("m", {**MINIMAL_MODEL, "columns": {**columns, "latency_ms": "l", "colour": "c"}})
    with pytest.raises(ConfigError, match="task is 'clustering'"):
        parse_model_mapping("m", {**MINIMAL_MODEL, "task": "clustering"})


def test_schema_qualified_tables_are_accepted():
    assert parse_model_mapping("m", {**MINIMAL_MODEL, "table": "logs.preds"}).table == "logs.preds"


def test_every_setting_is_documented_in_the_readme():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    missing = [spec.env for spec in SETTINGS if spec.env not in documented]
    assert not missing, f"settings missing from the README's configuration table: {missing}"
    assert "`TOWER_CONFIG`" in readme
