"""Pages started from a broken state: each says what is wrong and what to set, never a traceback,
and keeps showing what the working stores can still tell."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from services.settings import PROJECT_ROOT
from tests.support.app_test import DEMO_MODELS, open_page, texts

# Run again on the production backends by the second pass of `make test`.
pytestmark = pytest.mark.both_backends

PAGES = ["app_pages/fleet.py", "app_pages/model.py", "app_pages/latency.py"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry_down(demo_env, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("TOWER_MLFLOW_TIMEOUT_S", "2")
    monkeypatch.setenv("TOWER_MLFLOW_MAX_RETRIES", "0")


@pytest.mark.parametrize("page", PAGES)
def test_unreachable_registry_is_named_on_every_page_without_a_traceback(registry_down, page):
    at = open_page(page, model="credit-risk")
    assert not at.exception
    assert "MLFLOW_TRACKING_URI" in texts(at)


def test_fleet_without_registry_still_shows_configured_models_from_their_logs(registry_down):
    at = open_page("app_pages/fleet.py")
    table = at.dataframe[0].value.set_index("Model")
    assert set(table.index) == DEMO_MODELS
    assert (table["Requests (7 d)"] > 0).all()
    assert table.loc["fraud-detection", "SLO (7 d)"] == "SLO breach"


def test_latency_page_keeps_working_while_the_registry_is_down(registry_down):
    at = open_page("app_pages/latency.py", model="fraud-detection")
    assert not at.exception
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) >= 2


def test_missing_registry_file_is_reported_and_not_created(demo_env, monkeypatch, tmp_path):
    missing = tmp_path / "nowhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    at = open_page("app_pages/model.py")
    assert not at.exception
    assert "MLFLOW_TRACKING_URI" in texts(at)
    assert not missing.exists()


@pytest.fixture
def warehouse_missing(demo_env, monkeypatch, tmp_path) -> Path:
    path = tmp_path / "gone.duckdb"
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{path}")
    return path


def test_fleet_marks_every_log_unavailable_when_the_warehouse_is_missing(warehouse_missing):
    at = open_page("app_pages/fleet.py")
    assert not at.exception
    table = at.dataframe[0].value.set_index("Model")
    assert (table["SLO (7 d)"] == "log unavailable").all()
    assert table["Problem"].str.contains("gone.duckdb").all()
    assert table["Production"].ne("—").all(), "registry columns must survive a warehouse outage"
    assert not warehouse_missing.exists()


def test_latency_page_names_the_missing_warehouse(warehouse_missing):
    at = open_page("app_pages/latency.py", model="credit-risk")
    assert not at.exception
    assert "WAREHOUSE_URL" in texts(at, ("error",))


def test_model_page_is_unaffected_by_a_warehouse_outage(warehouse_missing):
    at = open_page("app_pages/model.py", model="credit-risk")
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) >= 3


@pytest.fixture
def missing_column(demo_env, monkeypatch, tmp_path):
    config = yaml.safe_load((PROJECT_ROOT / "tower.yaml").read_text())
    config["models"]["credit-risk"]["columns"]["latency_ms"] = "latency_in_ms"
    path = tmp_path / "tower.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TOWER_CONFIG", str(path))


def test_a_missing_mapped_column_is_named_and_costs_only_its_model(missing_column):
    at = open_page("app_pages/fleet.py")
    assert not at.exception
    table = at.dataframe[0].value.set_index("Model")
    assert table.loc["credit-risk", "SLO (7 d)"] == "log unavailable"
    assert "latency_in_ms" in table.loc["credit-risk", "Problem"]
    assert (table.drop(index="credit-risk")["SLO (7 d)"] != "log unavailable").all()


def test_latency_page_names_the_missing_column(missing_column):
    at = open_page("app_pages/latency.py", model="credit-risk")
    assert not at.exception
    assert "latency_in_ms" in texts(at, ("error",))


def test_a_missing_mapped_table_is_named(demo_env, monkeypatch, tmp_path):
    config = yaml.safe_load((PROJECT_ROOT / "tower.yaml").read_text())
    config["models"]["fraud-detection"]["table"] = "predictions_nobody_logged"
    (tmp_path / "tower.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TOWER_CONFIG", str(tmp_path / "tower.yaml"))
    table = open_page("app_pages/fleet.py").dataframe[0].value.set_index("Model")
    assert "predictions_nobody_logged" in table.loc["fraud-detection", "Problem"]


@pytest.fixture
def empty_stores(monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_registered_models()  # creates an empty registry
    (tmp_path / "tower.yaml").write_text("models: {}\n")
    monkeypatch.setenv("TOWER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TOWER_CONFIG", str(tmp_path / "tower.yaml"))


@pytest.mark.parametrize("page", PAGES)
def test_no_models_at_all_gives_an_empty_state_not_an_error(empty_stores, page):
    at = open_page(page)
    assert not at.exception and not at.error
    assert "No registered models yet" in texts(at, ("info",))


def test_invalid_configuration_stops_at_the_entry_with_the_reason(monkeypatch, tmp_path):
    (tmp_path / "tower.yaml").write_text(
        "models:\n  m:\n    table: 'x; drop'\n    columns: {timestamp: ts, version: v, prediction: p,"
        " latency_ms: l, status: s}\n")
    monkeypatch.setenv("TOWER_CONFIG", str(tmp_path / "tower.yaml"))
    at = open_page()
    assert not at.exception
    assert "not a valid table or column name" in texts(at, ("error",))
