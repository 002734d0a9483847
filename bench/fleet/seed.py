"""A fleet of registered models for the fleet benchmark: a real MLflow sqlite registry, DuckDB logs, tower.yaml.

``seed_fleet(folder, models=200, versions=5)`` writes, under ``folder``:

* ``mlflow.db`` -- ``models`` registered models of ``versions`` versions each, with an owner tag,
  a description and the ``production``/``staging`` aliases, through MLflow's own store API
  (``SqlAlchemyStore``, as ``mlflow server`` would write them; one store for the whole seeding, so no
  client round trip, no run and no artifact per version: 200 x 5 is a couple of minutes, not an hour);
* ``warehouse.duckdb`` -- one log table per model (``fleet_log_000`` ...), generated in DuckDB with SQL
  over the 35 complete days up to today (UTC): features, prediction/score/label, latency, status.
  Every fifth model breaches its latency SLO, every seventh drifts in the last week;
* ``tower.yaml`` -- the mapping of every model (reference: the log's first week), and the job's
  ``backfill_days`` (14).

A ``fleet.json`` written last marks a complete seeding; a folder without it is seeded again.
"""

# ruff: noqa: S608 -- every statement here is built from this module's constant names and numbers
from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

DAYS = 35
OWNERS = ("risk-team", "growth-team", "ops-team", "fraud-team", "pricing-team")
MARKER = "fleet.json"
BACKFILL_DAYS = 14


def model_name(index: int) -> str:
    return f"fleet-model-{index:03d}"


def table_name(index: int) -> str:
    return f"fleet_log_{index:03d}"


def first_day(today: datetime | None = None) -> datetime:
    """Midnight (UTC, naive) ``DAYS`` days before today: the logs end with yesterday, the fleet window's last day."""
    now = today or datetime.now(UTC).replace(tzinfo=None)
    return datetime(now.year, now.month, now.day) - timedelta(days=DAYS)


def mapping_raw(index: int, day0: datetime) -> dict[str, Any]:
    return {
        "table": table_name(index), "task": "binary_classification",
        "columns": {"request_id": "request_id", "timestamp": "ts", "version": "model_version",
                    "prediction": "prediction", "score": "score", "label": "label", "latency_ms": "latency_ms",
                    "status": "status"},
        "features": {"numerical": ["income", "age"], "categorical": ["region"]},
        "sensitive": ["gender"],
        "reference": {"start": f"{day0:%Y-%m-%d}", "end": f"{day0 + timedelta(days=7):%Y-%m-%d}"},
        "slo": {"latency_p95_ms": 250, "error_rate": 0.02},
    }


def _log_sql(index: int, rows: int, day0: datetime, versions: int) -> str:
    """One model's log: ``rows`` predictions spread evenly over ``DAYS`` days (deterministic per model)."""
    step = DAYS * 86_400_000_000 // rows
    drift_from = (DAYS - 7) * 86_400_000_000 // step
    drifts = index % 7 == 0
    slow = 1.6 if index % 5 == 0 else 1.0  # p95 over the 250 ms SLO
    u = lambda k: f"((hash(i * 16 + {k} + {index} * 1000003) >> 11)::DOUBLE + 0.5) * 1.1102230246251565e-16"  # noqa: E731
    z = f"(sqrt(-2 * ln({u(1)})) * cos(6.283185307179586 * {u(2)}))"
    shift = f"CASE WHEN {str(drifts).upper()} AND i >= {drift_from} THEN 1 ELSE 0 END"
    return f"""
        SELECT i AS request_id,
               TIMESTAMP '{day0:%Y-%m-%d %H:%M:%S}' + to_microseconds(i * {step}) AS ts,
               (1 + floor({versions} * i / {rows}))::INTEGER::VARCHAR AS model_version,
               50000 + 15000 * {z} + 8000 * {shift} AS income,
               floor(20 + 50 * {u(3)})::DOUBLE AS age,
               CASE WHEN {u(4)} < 0.5 - 0.25 * {shift} THEN 'north' WHEN {u(4)} < 0.8 THEN 'south' ELSE 'east' END
                   AS region,
               CASE WHEN {u(5)} < 0.5 THEN 'F' ELSE 'M' END AS gender,
               {u(6)} AS score,
               ({u(6)} >= 0.5)::INTEGER AS prediction,
               ({u(7)} < 0.3 + 0.4 * {u(6)})::INTEGER AS label,
               exp(ln(120 * {slow}) + 0.4 * {z.replace('(1)', '(8)').replace('(2)', '(9)')}) AS latency_ms,
               CASE WHEN {u(10)} < 0.005 THEN 'error' ELSE 'ok' END AS status
        FROM range({rows}) r(i)"""


def _seed_registry(uri: str, models: int, versions: int, day0: datetime) -> None:
    from mlflow.entities.model_registry import RegisteredModelTag
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(uri)
    for index in range(models):
        name = model_name(index)
        store.create_registered_model(name, tags=[RegisteredModelTag("owner", OWNERS[index % len(OWNERS)])],
                                      description=f"Synthetic fleet model {index} (bench/fleet)")
        for version in range(1, versions + 1):
            store.create_model_version(name, source=f"s3://fleet-bench/{name}/{version}",
                                       description=f"trained {day0 + timedelta(days=version):%Y-%m-%d}")
        store.set_registered_model_alias(name, "production", str(versions - 1))
        store.set_registered_model_alias(name, "staging", str(versions))
    store.engine.dispose()


def seed_fleet(folder: Path, models: int = 200, versions: int = 5, rows_per_model: int = 20_000, *,
               quiet: bool = False) -> dict[str, Any]:
    """Seed (or reuse) the fleet under ``folder``; what was seeded and how long each part took."""
    import duckdb

    marker = folder / MARKER
    if marker.is_file():
        done = json.loads(marker.read_text())
        wanted = {"models": models, "versions": versions, "rows_per_model": rows_per_model}
        if {k: done.get(k) for k in wanted} == wanted and done.get("day0") == f"{first_day():%Y-%m-%d}":
            return done
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    day0 = first_day()
    started = time.perf_counter()
    _seed_registry(f"sqlite:///{folder / 'mlflow.db'}", models, versions, day0)
    registry_s = time.perf_counter() - started
    started = time.perf_counter()
    con = duckdb.connect(str(folder / "warehouse.duckdb"))
    try:
        con.execute("SET enable_progress_bar = false")
        for index in range(models):
            con.execute(f"CREATE TABLE {table_name(index)} AS {_log_sql(index, rows_per_model, day0, versions)}")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    warehouse_s = time.perf_counter() - started
    # The job's first run backfills two weeks: what the fleet page reads (7 days, and the 7 before for
    # "since last week"); 35 days x 200 models would be 7000 windows for nothing the page shows.
    config = {"models": {model_name(i): mapping_raw(i, day0) for i in range(models)},
              "monitoring": {"backfill_days": BACKFILL_DAYS}}
    (folder / "tower.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    done = {"models": models, "versions": versions, "rows_per_model": rows_per_model, "day0": f"{day0:%Y-%m-%d}",
            "registry_s": round(registry_s, 1), "warehouse_s": round(warehouse_s, 1)}
    marker.write_text(json.dumps(done))
    if not quiet:
        print(f"seeded {models} models x {versions} versions in {registry_s:.1f} s (registry) + "
              f"{warehouse_s:.1f} s (logs, {models * rows_per_model:,} rows): {folder}", flush=True)
    return done


def environment(folder: Path) -> dict[str, str]:
    """The environment that points the tower (settings, app, job) at the seeded fleet."""
    return {"TOWER_CONFIG": str(folder / "tower.yaml"), "TOWER_DATA_DIR": str(folder),
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "WAREHOUSE_URL": f"duckdb:///{folder / 'warehouse.duckdb'}",
            "TOWER_DB_URL": f"sqlite:///{folder / 'tower.db'}", "TOWER_DEMO": "1"}
