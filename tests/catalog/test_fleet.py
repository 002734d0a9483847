"""services.catalog.fleet on real stores: the seeded demo's warehouse and tower state, and either the
demo registry or a small sqlite registry built here through MLflow's client.

The fleet page's own tests (tests/ui) check what the table shows; these check how the rows are
assembled: which models get a row, in what order, and what one failing store costs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import pytest
from mlflow import MlflowClient

from services.catalog import fleet
from services.errors import RegistryUnavailable
from services.mapping import ModelMapping, parse_model_mapping
from services.monitoring import health_chips, tower_reads
from services.settings import Settings, load_settings
from services.stores.registry import Registry
from services.stores.tower_db import make_tower_engine
from services.stores.warehouse import logs
from services.stores.warehouse.fleet_traffic import fleet_traffic
from services.wiring import warehouse_engine

DAYS = 7
END = datetime.combine(datetime.now(UTC).date(), time())  # the page's window: the complete days before today
START = END - timedelta(days=DAYS)
NOT_IN_REGISTRY = "Configured in tower.yaml but not in the registry"


@pytest.fixture(scope="module")
def small_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One mapped model (credit-risk, two versions, production -> 1, staging -> 2, and a second pair of
    aliases) and one the tower.yaml does not map; the other mapped demo models are absent."""
    root = tmp_path_factory.mktemp("fleet-registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("credit-risk", tags={"owner": "alice"}, description="Probability of default.")
    for _ in range(2):
        client.create_model_version("credit-risk", source=str(root / "artifacts" / "model"), run_id=None)
    for alias, version in {"production": "1", "staging": "2", "champion": "2", "challenger": "1"}.items():
        client.set_registered_model_alias("credit-risk", alias, version)
    client.create_registered_model("unmapped-model")
    yield uri


def _overview(settings: Settings, registry: Registry, *, tower_url: str | None = None,
              load_summary=None, calls: list[str] | None = None) -> fleet.FleetOverview:
    """fleet_overview wired as the fleet page wires it, on the real stores of ``settings``."""
    warehouse = warehouse_engine(settings)
    tower = make_tower_engine(tower_url or settings.tower_db_url)

    def summary(mapping: ModelMapping) -> logs.WindowSummary:
        if calls is not None:
            calls.append(mapping.name)
        return logs.window_summary(warehouse, mapping, START, END)

    return fleet.fleet_overview(
        settings,
        load_models=registry.list_models,
        load_summary=load_summary or summary,
        load_daily_requests=lambda m: fleet.requests_per_day(logs.traffic_by_day(warehouse, m, START, END),
                                                              START, DAYS),
        load_health=lambda name: tower_reads.latest_health(tower, name),
    )


@pytest.fixture
def small_settings(demo_env: Settings, small_registry: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", small_registry)
    return load_settings()


def test_registered_models_come_first_by_name_then_the_configured_ones_the_registry_lacks(small_settings):
    overview = _overview(small_settings, Registry(small_settings.mlflow_tracking_uri))

    assert overview.registry_error is None
    assert [r.model for r in overview.rows] == [
        "credit-risk", "unmapped-model", "demand-forecast", "fraud-detection", "loan-approval"]
    rows = {r.model: r for r in overview.rows}
    for name in ("demand-forecast", "fraud-detection", "loan-approval"):
        assert rows[name].problem is not None and rows[name].problem.startswith(NOT_IN_REGISTRY)
        assert small_settings.mlflow_tracking_uri in rows[name].problem
        assert rows[name].production is None and rows[name].owner is None
        assert rows[name].requests_7d and rows[name].requests_7d > 0, "the logs still tell a lot"
    credit = rows["credit-risk"]
    assert (credit.owner, credit.description, credit.problem) == ("alice", "Probability of default.", None)
    assert (credit.production, credit.staging) == ("1", "2")
    assert credit.slo_p95_ms == small_settings.models["credit-risk"].slo.latency_p95_ms


def test_a_registered_model_without_a_mapping_is_not_monitored_and_its_logs_are_never_asked(small_settings):
    calls: list[str] = []
    overview = _overview(small_settings, Registry(small_settings.mlflow_tracking_uri), calls=calls)

    row = next(r for r in overview.rows if r.model == "unmapped-model")
    assert row.status == fleet.UNMONITORED
    assert (row.requests_7d, row.traffic_by_day, row.p95_ms, row.slo_p95_ms) == (None, (), None, None)
    assert row.problem is None
    assert (row.health, row.health_reasons) == ("unknown", ())
    assert "unmapped-model" not in calls and sorted(calls) == sorted(small_settings.models)


def test_the_stage_columns_follow_the_configured_aliases(small_settings):
    renamed = dataclasses.replace(small_settings, stage_aliases={"Production": "champion", "Staging": "challenger"})
    row = next(r for r in _overview(renamed, Registry(renamed.mlflow_tracking_uri)).rows if r.model == "credit-risk")
    assert (row.production, row.staging) == ("2", "1")


def test_an_unreadable_registry_still_gives_every_configured_model_its_row_from_the_logs(demo_env, tmp_path):
    missing = Registry(f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}")
    overview = _overview(demo_env, missing)

    assert isinstance(overview.registry_error, RegistryUnavailable)
    assert [r.model for r in overview.rows] == sorted(demo_env.models)
    for row in overview.rows:
        assert row.production is None and row.owner is None
        assert row.problem is None, "the registry's outage is reported once, not on every row"
        assert row.requests_7d and row.requests_7d > 0 and len(row.traffic_by_day) == DAYS
    assert {r.model: r.status for r in overview.rows}["fraud-detection"] == fleet.BREACH


def test_one_models_unreadable_log_costs_only_its_own_row(demo_env):
    registry = Registry(demo_env.mlflow_tracking_uri)
    warehouse = warehouse_engine(demo_env)

    def summary(mapping: ModelMapping) -> logs.WindowSummary:
        if mapping.name == "fraud-detection":
            mapping = dataclasses.replace(mapping, table="predictions_gone")
        return logs.window_summary(warehouse, mapping, START, END)

    rows = {r.model: r for r in _overview(demo_env, registry, load_summary=summary).rows}

    broken = rows["fraud-detection"]
    assert broken.status == fleet.UNAVAILABLE
    assert broken.problem and "predictions_gone" in broken.problem
    assert (broken.requests_7d, broken.traffic_by_day) == (None, ())
    assert broken.production is not None, "the registry's columns survive a broken log"
    for name in ("credit-risk", "loan-approval", "demand-forecast"):
        assert rows[name].status != fleet.UNAVAILABLE and rows[name].requests_7d and rows[name].problem is None


def test_health_is_the_stored_verdict_and_an_unreadable_tower_state_says_why(demo_env, tmp_path):
    registry = Registry(demo_env.mlflow_tracking_uri)
    healthy = {r.model: r for r in _overview(demo_env, registry).rows}
    assert healthy["credit-risk"].health == "alert"
    assert any("income" in reason for reason in healthy["credit-risk"].health_reasons)
    assert healthy["demand-forecast"].health == "ok"

    garbage = tmp_path / "tower.db"
    garbage.write_bytes(b"not a database " * 100)
    rows = _overview(demo_env, registry, tower_url=f"sqlite:///{garbage}").rows
    for row in rows:
        assert row.health == "unknown"
        assert len(row.health_reasons) == 1 and row.health_reasons[0].startswith("The tower state cannot be read")
    assert [(r.model, r.status, r.requests_7d) for r in rows] == [
        (r.model, r.status, r.requests_7d) for r in healthy.values()], "health failures touch nothing else"


def _mapping(**slo: float) -> ModelMapping:
    return parse_model_mapping("m", {"table": "t", "columns": {
        "request_id": "id", "timestamp": "ts", "version": "v", "prediction": "p", "latency_ms": "l", "status": "s"},
        **({"slo": slo} if slo else {})})


def _summary(requests: int, errors: int = 0, p95_ms: float | None = 100.0) -> logs.WindowSummary:
    return logs.WindowSummary(requests=requests, errors=errors, error_rate=errors / requests if requests else None,
                              p50_ms=p95_ms, p95_ms=p95_ms, p99_ms=p95_ms, last_prediction_at=None)


def test_latency_status_breaches_only_strictly_above_the_slo():
    mapping = _mapping(latency_p95_ms=250, error_rate=0.01)
    assert fleet.latency_status(_summary(1000, p95_ms=250.0), mapping) == fleet.OK
    assert fleet.latency_status(_summary(1000, p95_ms=250.5), mapping) == fleet.BREACH
    assert fleet.latency_status(_summary(1000, errors=10), mapping) == fleet.OK
    assert fleet.latency_status(_summary(1000, errors=11), mapping) == fleet.BREACH


def test_latency_status_without_traffic_or_without_an_slo():
    assert fleet.latency_status(_summary(0, p95_ms=None), _mapping(latency_p95_ms=250)) == fleet.NO_TRAFFIC
    assert fleet.latency_status(_summary(10, errors=10, p95_ms=1e6), _mapping()) == fleet.OK


def test_requests_per_day_adds_up_the_versions_and_zero_fills_the_days_without_traffic(demo_env):
    warehouse = warehouse_engine(demo_env)
    mapping = demo_env.models["credit-risk"]
    daily = fleet.requests_per_day(logs.traffic_by_day(warehouse, mapping, START, END), START, DAYS)
    assert len(daily) == DAYS and min(daily) > 0
    assert sum(daily) == logs.window_summary(warehouse, mapping, START, END).requests

    # The demo's log ends with yesterday: a window reaching three days past it ends in zeros.
    late = END - timedelta(days=4)
    tail = fleet.requests_per_day(logs.traffic_by_day(warehouse, mapping, late, late + timedelta(days=DAYS)),
                                  late, DAYS)
    assert tail[:4] == daily[-4:] and tail[4:] == [0, 0, 0]


def test_requests_per_day_of_an_empty_frame_is_all_zeros(demo_env):
    empty = logs.traffic_by_day(warehouse_engine(demo_env), demo_env.models["credit-risk"],
                                END + timedelta(days=30), END + timedelta(days=31))
    assert len(empty) == 0
    assert fleet.requests_per_day(empty, END, 3) == [0, 0, 0]



def _batched(settings: Settings, registry: Registry, *, tower_url: str | None = None,
             mappings_seen: list[tuple[str, ...]] | None = None, broken: str | None = None,
             per_model: list[str] | None = None) -> fleet.FleetOverview:
    """fleet_overview with the fleet's batched reads (as the page wires them, uncached); ``broken``: that
    model's log table renamed to one that does not exist."""
    warehouse = warehouse_engine(settings)
    tower = make_tower_engine(tower_url or settings.tower_db_url)

    def damaged(mapping: ModelMapping) -> ModelMapping:
        return dataclasses.replace(mapping, table="predictions_gone") if mapping.name == broken else mapping

    def traffic(mappings: tuple[ModelMapping, ...]) -> dict[str, fleet.ModelTraffic]:
        if mappings_seen is not None:
            mappings_seen.append(tuple(m.name for m in mappings))
        read = fleet_traffic(warehouse, [damaged(m) for m in mappings], START, END)
        return fleet.model_traffic(read, START, DAYS)

    def summary(mapping: ModelMapping) -> logs.WindowSummary:
        if per_model is not None:
            per_model.append(mapping.name)
        return logs.window_summary(warehouse, damaged(mapping), START, END)

    return fleet.fleet_overview(
        settings,
        load_models=registry.list_models,
        load_summary=summary,
        load_daily_requests=lambda m: fleet.requests_per_day(logs.traffic_by_day(warehouse, damaged(m), START, END),
                                                              START, DAYS),
        load_findings=lambda names: health_chips.fleet_findings(tower, names),
        window_start=START,
        load_traffic=traffic,
    )


def _per_model(settings: Settings, registry: Registry) -> fleet.FleetOverview:
    """The same rows read model by model: window summary, traffic per day and chips of each."""
    warehouse = warehouse_engine(settings)
    tower = make_tower_engine(settings.tower_db_url)
    per_model_chips = {name: health_chips.tower_findings(tower, name) for name in settings.models}
    return fleet.fleet_overview(
        settings,
        load_models=registry.list_models,
        load_summary=lambda m: logs.window_summary(warehouse, m, START, END),
        load_daily_requests=lambda m: fleet.requests_per_day(logs.traffic_by_day(warehouse, m, START, END),
                                                              START, DAYS),
        load_findings=lambda names: {name: per_model_chips[name] for name in names},
        window_start=START,
    )


def test_the_fleets_batched_reads_give_the_rows_the_per_model_reads_give(demo_env):
    registry = Registry(demo_env.mlflow_tracking_uri)
    seen: list[tuple[str, ...]] = []
    per_model: list[str] = []
    batched = _batched(demo_env, registry, mappings_seen=seen, per_model=per_model)

    assert seen == [tuple(r.model for r in batched.rows if r.model in demo_env.models)], "one call, every model"
    assert per_model == [], "nothing read model by model"
    assert batched.rows == _per_model(demo_env, registry).rows
    assert {r.health for r in batched.rows} >= {"alert", "ok"}, "the demo's stories give chips to compare"


def test_a_broken_log_among_good_ones_costs_only_its_row_and_is_read_alone(demo_env):
    registry = Registry(demo_env.mlflow_tracking_uri)
    per_model: list[str] = []
    rows = {r.model: r for r in _batched(demo_env, registry, broken="fraud-detection", per_model=per_model).rows}
    healthy = {r.model: r for r in _per_model(demo_env, registry).rows}

    assert per_model == ["fraud-detection"], "the batch left it out; its own read says why"
    broken = rows["fraud-detection"]
    assert broken.status == fleet.UNAVAILABLE and broken.problem and "predictions_gone" in broken.problem
    assert (broken.requests_7d, broken.traffic_by_day) == (None, ())
    assert broken.chips and broken.health != "unknown", "its chips still come from the tower state"
    for name in ("credit-risk", "loan-approval", "demand-forecast"):
        assert rows[name] == healthy[name]


def test_an_unreadable_tower_state_leaves_the_fleets_traffic_and_says_why_on_each_row(demo_env, tmp_path):
    garbage = tmp_path / "tower.db"
    garbage.write_bytes(b"not a database " * 100)
    registry = Registry(demo_env.mlflow_tracking_uri)
    rows = _batched(demo_env, registry, tower_url=f"sqlite:///{garbage}").rows
    healthy = _per_model(demo_env, registry).rows
    for row in rows:
        assert (row.health, row.chips) == ("unknown", ())
        assert len(row.health_reasons) == 1 and row.health_reasons[0].startswith("The tower state cannot be read")
    assert [(r.model, r.status, r.requests_7d, r.traffic_by_day) for r in rows] == [
        (r.model, r.status, r.requests_7d, r.traffic_by_day) for r in healthy]
