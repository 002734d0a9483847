"""tower.yaml's ``warehouse`` section: DuckDB's memory_limit, threads and spill folder reach the engine."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from services.errors import ConfigError
from services.stores.warehouse.engine import make_engine
from services.stores.warehouse.resources import WarehouseResources, parse_warehouse_resources
from services.wiring import Backends, load_settings


def _warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS i FROM range(10)")
    return path


def _settings(tmp_path: Path, section: str) -> dict[str, str]:
    config = tmp_path / "tower.yaml"
    config.write_text(section, encoding="utf-8")
    return {"TOWER_CONFIG": str(config), "TOWER_DATA_DIR": str(tmp_path),
            "WAREHOUSE_URL": f"duckdb:///{_warehouse(tmp_path)}"}


def _current(engine: sa.Engine, *names: str) -> tuple[str, ...]:
    with engine.connect() as conn:
        row = conn.execute(sa.text(", ".join(f"SELECT current_setting('{n}')" if i == 0 else
                                             f"current_setting('{n}')" for i, n in enumerate(names)))).one()
    return tuple(str(v) for v in row)


def test_the_warehouse_section_reaches_duckdb(tmp_path):
    spill = tmp_path / "spill"
    settings = load_settings(_settings(tmp_path, f"warehouse:\n  memory_limit: 512MiB\n  threads: 1\n"
                                                 f"  temp_directory: {spill}\n"))
    backends = Backends.from_settings(settings, create_schema=False)
    try:
        assert _current(backends.warehouse(), "memory_limit", "threads", "temp_directory") == (
            "512.0 MiB", "1", str(spill))
    finally:
        backends.close()


def test_without_the_section_duckdb_gets_a_1gb_limit_and_a_spill_folder_of_its_own(tmp_path):
    backends = Backends.from_settings(load_settings(_settings(tmp_path, "{}\n")), create_schema=False)
    try:
        memory, folder = _current(backends.warehouse(), "memory_limit", "temp_directory")
    finally:
        backends.close()
    assert memory == "953.6 MiB"  # 1GB = 10^9 bytes, as DuckDB shows it
    assert Path(folder) == Path(tempfile.gettempdir()) / f"tower-duckdb-{os.getpid()}"


@pytest.mark.parametrize(("section", "message"), [
    ("warehouse:\n  memory_limit: lots\n", r"warehouse.memory_limit must be a size such as 512MB.*'lots'"),
    ("warehouse:\n  memory_limit: 0GB\n", r"warehouse.memory_limit must be a size"),
    ("warehouse:\n  memory_limit: 1024\n", r"warehouse.memory_limit must be a size"),
    ("warehouse:\n  threads: 0\n", r"warehouse.threads must be a whole number of at least 1, got 0"),
    ("warehouse:\n  threads: two\n", r"warehouse.threads must be a whole number"),
    ("warehouse:\n  threads: true\n", r"warehouse.threads must be a whole number"),
    ("warehouse:\n  temp_directory: ''\n", r"warehouse.temp_directory must be a folder path"),
    ("warehouse:\n  memory: 1GB\n", r"warehouse: unknown key\(s\) memory; known keys are memory_limit, "),
    ("warehouse: 1GB\n", r"warehouse must be a mapping"),
])
def test_a_malformed_warehouse_section_is_refused_when_the_settings_load(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(_settings(tmp_path, section))


def test_sizes_are_written_as_duckdb_spells_them():
    assert parse_warehouse_resources({"memory_limit": "1.5gb"}).memory_limit == "1.5GB"
    assert parse_warehouse_resources({"memory_limit": "2 gib"}).memory_limit == "2GiB"
    assert parse_warehouse_resources(None) == WarehouseResources(memory_limit="1GB", threads=None, temp_directory=None)


def test_an_aggregate_larger_than_the_memory_limit_spills_instead_of_failing(tmp_path):
    spill = tmp_path / "spill"
    config = WarehouseResources(memory_limit="64MB", threads=1, temp_directory=str(spill)).duckdb_config()
    engine = make_engine(f"duckdb:///{_warehouse(tmp_path)}", duckdb_config=config)
    # Four million groups of three aggregates: a hash table of a few hundred MB. Without a spill folder
    # DuckDB fails it ("Out of Memory Error ... no temporary directory is specified").
    query = sa.text("SELECT count(*), sum(n) FROM (SELECT i % 4000000 AS k, count(*) AS n, sum(i) AS s, "
                    "max(i) AS m FROM range(8000000) r(i) GROUP BY k)")
    try:
        with engine.connect() as conn:
            assert tuple(conn.execute(query).one()) == (4_000_000, 8_000_000)
    finally:
        engine.dispose()


def test_a_warehouse_section_edited_while_the_app_runs_does_not_lock_the_new_engine_out(tmp_path):
    """An operator lowers memory_limit in tower.yaml while the app runs: the next page run builds a new
    engine on the same file while the old one still holds its pooled connection. DuckDB refuses a
    second connection to an open file with a different *connect* configuration, so the settings must
    reach it another way; the newest limit applies (it is one database instance per process)."""
    path = _warehouse(tmp_path)
    before = make_engine(f"duckdb:///{path}", duckdb_config=WarehouseResources("1GB").duckdb_config())
    after = make_engine(f"duckdb:///{path}", duckdb_config=WarehouseResources("512MB", threads=1).duckdb_config())
    try:
        with before.connect() as held:  # the old engine's connection stays open, as in its pool
            assert held.execute(sa.text("SELECT count(*) FROM t")).scalar() == 10
            with after.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 10
            assert _current(after, "memory_limit", "threads") == ("488.2 MiB", "1")
    finally:
        before.dispose()
        after.dispose()

