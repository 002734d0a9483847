"""Training–serving skew for the promotion gate: the candidate's own logged training data against the
last days of traffic, with intervals and noise levels, on a real sqlite MLflow registry and SQLite and
DuckDB warehouses."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from services.governance.evidence import VersionEvidence, evaluate_gates
from services.governance.policy import parse_policies
from services.governance.skew_gate import SkewGate, judge
from services.monitoring.evidence import TowerMonitoringEvidence
from services.monitoring.training_skew import training_skew
from services.settings import Settings
from services.stores.registry import Registry
from services.stores.warehouse.engine import make_engine
from tests.support import registry_reference as demo

NOW = demo.WINDOW[1]


def served_like_traffic(rows: int = 3000) -> pd.DataFrame:
    """A training set drawn from the distribution the window's traffic comes from (demo.window_log)."""
    rng = np.random.default_rng(11)
    return pd.DataFrame({"income": rng.normal(60.0, 12.0, rows), "age": rng.integers(25, 45, rows),
                         "region": rng.choice(["north", "south", "east", "west"], rows).astype(object),
                         "label": rng.integers(0, 2, rows)})


# version 1 was trained on older, lower incomes and younger people; version 2 on data like today's traffic
VERSIONS = {1: demo.VERSIONS[1], 2: ("2026.10.01", served_like_traffic())}


@pytest.fixture(scope="module")
def registry_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("skew") / "mlflow.db"
    demo.build_registry(path, versions=VERSIONS, production=1)
    return path


@pytest.fixture(params=["sqlite", "duckdb"])
def world(request, registry_file, tmp_path, tower) -> tuple[Settings, Registry]:
    url = f"{request.param}:///{tmp_path / ('warehouse.' + request.param)}"
    demo.write_warehouse(url, training=demo.training_table(VERSIONS))
    settings = demo.tower_settings(tmp_path, f"sqlite:///{registry_file}", url)
    return settings, Registry(f"sqlite:///{registry_file}")


def read(world, tower, version: str, gate: SkewGate | None = None):
    gate = gate or SkewGate(max_share=0.0)
    settings, registry = world
    warehouse = make_engine(settings.warehouse_url)
    try:
        return training_skew(settings, registry, tower, warehouse, demo.MODEL, version, gate, NOW)
    finally:
        warehouse.dispose()


def test_a_candidate_trained_on_other_data_is_skewed_beyond_noise_with_scipys_numbers(world, tower):
    reading = read(world, tower, "1")
    assert reading.missing is None and "of version 1" in reading.dataset and "verified" in reading.dataset
    by = {f.column: f for f in reading.features}
    assert set(by) == {"income", "age", "region"}
    training, log = demo.VERSIONS[1][1], demo.window_log()
    income = by["income"]
    assert income.statistic == "wasserstein" and income.skewed
    oracle = stats.wasserstein_distance(training["income"], log["income"]) / np.std(training["income"])
    assert income.value == pytest.approx(oracle, rel=0.02, abs=1e-3)
    assert income.lower < income.value < income.upper and income.lower > income.noise
    assert (income.training_rows, income.serving_rows) == (len(training), len(log))
    status, share, detail = judge(SkewGate(max_share=0.5), reading)
    assert status == "failed" and share is not None and share > 0.5 and "income: wasserstein" in detail


def test_a_candidate_trained_on_data_like_todays_traffic_is_not_skewed(world, tower):
    reading = read(world, tower, "2")
    assert reading.missing is None and "of version 2" in reading.dataset
    assert [f.column for f in reading.features if f.skewed] == []
    assert all(f.noise is not None and f.upper is not None for f in reading.features)
    assert judge(SkewGate(max_share=0.0), reading)[0] == "passed"


def test_a_material_threshold_ignores_a_real_but_small_shift(world, tower):
    big = SkewGate(max_share=0.0, verdict="material", material=5.0)  # five reference standard deviations
    assert [f.column for f in read(world, tower, "1", big).features if f.skewed] == []


def test_no_traffic_in_the_window_is_no_data_saying_so(world, tower):
    settings, registry = world
    warehouse = make_engine(settings.warehouse_url)
    try:
        reading = training_skew(settings, registry, tower, warehouse, demo.MODEL, "1", SkewGate(max_share=0.2),
                                datetime(2025, 1, 1))
    finally:
        warehouse.dispose()
    assert reading.features == () and "Nothing was served" in (reading.missing or "")


def test_an_unknown_version_or_model_is_no_data_never_the_production_reference(world, tower):
    reading = read(world, tower, "9")
    assert reading.features == () and "Version '9'" in (reading.missing or "")
    settings, registry = world
    warehouse = make_engine(settings.warehouse_url)
    try:
        other = training_skew(settings, registry, tower, warehouse, "nope", "1", SkewGate(max_share=0.2), NOW)
    finally:
        warehouse.dispose()
    assert "no prediction-log mapping" in (other.missing or "")


def test_the_gate_reads_it_through_the_monitoring_evidence(world, tower):
    settings, registry = world
    warehouse = make_engine(settings.warehouse_url)
    try:
        source = TowerMonitoringEvidence(tower, settings=settings, registry=registry, warehouse=warehouse)
        policy = parse_policies({demo.MODEL: {"training_skew": {"max_share": 0.2}}}).for_model(demo.MODEL)
        assert policy.training_skew is not None
        reading = source.training_skew(demo.MODEL, "1", policy.training_skew, NOW)
    finally:
        warehouse.dispose()
    candidate = VersionEvidence(version="1", metrics={}, p95_ms=None, requests=0, drift_share=None)
    (gate,) = [g for g in evaluate_gates(policy, candidate, None, None, skew=reading) if g.name == "training_skew"]
    assert gate.status == "failed" and "[" in gate.detail and "noise" in gate.detail
    without = TowerMonitoringEvidence(tower).training_skew(demo.MODEL, "1", policy.training_skew, NOW)
    assert without.features == () and "cannot be compared" in (without.missing or "")
