"""The tower's stores for one data set, built as every entry point builds them: through services.wiring."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bench.monitoring.data import FORMAT, MODEL, bench_mapping, mapping_raw

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from services.settings import Settings
    from services.wiring import Backends


MEMORY_LIMIT_ENV = "BENCH_WAREHOUSE_MEMORY_LIMIT"


def tower_url(data_dir: Path, rows: int, reference_rows: int) -> str:
    """The tower state (SQLite) that keeps this data set's reference profile."""
    return f"sqlite:///{data_dir / f'tower_{rows}_{reference_rows}_v{FORMAT}.db'}"


def settings(db: Path, tower: str) -> Settings:
    """The settings of the data set ``db`` (its DuckDB file) and the tower state ``tower``.

    They name only the benchmark's model, in a tower.yaml beside the data file, so the project's own
    tower.yaml and the caller's environment never reach a measurement; with ``BENCH_WAREHOUSE_MEMORY_LIMIT``
    set (bench/scale sets it for its children) that tower.yaml also gives the warehouse's DuckDB
    ``memory_limit`` (its ``warehouse`` section; otherwise the tower's default applies).
    """
    from services.wiring import load_settings

    memory = os.environ.get(MEMORY_LIMIT_ENV)
    raw: dict[str, Any] = {"models": {MODEL: mapping_raw()}}
    if memory:
        raw["warehouse"] = {"memory_limit": memory}
    config = db.with_suffix(f".{memory}.tower.yaml" if memory else ".tower.yaml")
    if not config.is_file():  # written whole, then renamed: children starting at once never read half of it
        part = config.with_suffix(f".{os.getpid()}.part")
        part.write_text(yaml.safe_dump(raw), encoding="utf-8")
        part.replace(config)
    return load_settings({"TOWER_CONFIG": str(config), "TOWER_DATA_DIR": str(db.parent),
                          "WAREHOUSE_URL": f"duckdb:///{db}", "TOWER_DB_URL": tower})


def backends(db: Path, tower: str, *, create_schema: bool = True) -> Backends:
    """The warehouse and tower-state engines of the data set, as ``wiring.Backends``."""
    from services.wiring import Backends

    return Backends.from_settings(settings(db, tower), create_schema=create_schema)


def open_warehouse(stores: Backends) -> Engine:
    """The warehouse engine the tower uses, with one connection opened (not timed)."""
    import sqlalchemy as sa

    engine = stores.warehouse()
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return engine


def keep_profile(db: Path, tower: str) -> float | None:
    """Compute and store the reference profile unless it is kept already; the seconds it took, or None."""
    from services.monitoring import reference

    mapping = bench_mapping()
    stores = backends(db, tower)
    try:
        tower_engine, engine = stores.tower(), stores.warehouse()
        rid = reference.reference_id(reference.reference_definition(mapping))
        if reference.stored_profile(tower_engine, rid) is not None:
            return None
        started = time.perf_counter()
        reference.save_profile(tower_engine, reference.compute_profile(engine, mapping))
        return time.perf_counter() - started
    finally:
        stores.close()
