"""services.stores.tower_db on real sqlite files: the engine's settings, the schema, the upgrades, ping."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.errors import TowerStateUnavailable
from services.stores import tower_db

# Declared on METADATA by the modules of TABLE_MODULES (monitoring store, governance ledger).
OWNED_TABLES = {"monitoring_results", "monitoring_references", "alert_episodes", "governance_ledger",
                "governance_requests", "governance_evidence", "governance_projections"}


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _pragma(engine: sa.Engine, name: str) -> object:
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_the_embedded_engine_creates_the_folders_of_its_file(tmp_path):
    path = tmp_path / "state" / "nested" / "tower.db"
    tower_db.ping(tower_db.make_tower_engine(_url(path)))
    assert path.is_file()


def test_every_sqlite_connection_gets_wal_a_busy_timeout_and_foreign_keys(tmp_path):
    engine = tower_db.make_tower_engine(_url(tmp_path / "tower.db"))
    assert _pragma(engine, "journal_mode") == "wal"
    assert _pragma(engine, "busy_timeout") == 15000
    assert _pragma(engine, "foreign_keys") == 1


def test_a_second_writer_waits_for_the_first_to_commit_instead_of_failing(tmp_path):
    engine = tower_db.make_tower_engine(_url(tmp_path / "tower.db"))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (writer TEXT)")
    second: dict[str, object] = {}

    def write_second() -> None:
        started = time.perf_counter()
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES ('second')")
        except Exception as exc:  # recorded, so the assertion below names it
            second["error"] = exc
        second["waited_s"] = time.perf_counter() - started

    with engine.begin() as first:
        first.exec_driver_sql("INSERT INTO t VALUES ('first')")  # holds the write lock until commit
        thread = threading.Thread(target=write_second)
        thread.start()
        time.sleep(0.5)
    thread.join(timeout=30)

    assert "error" not in second, second
    assert second["waited_s"] >= 0.4, "the second writer must have waited for the first to commit"
    with engine.connect() as conn:
        assert sorted(r[0] for r in conn.exec_driver_sql("SELECT writer FROM t")) == ["first", "second"]


def test_a_writer_commits_while_a_reader_holds_an_open_read_transaction(tmp_path):
    """WAL: a page reading the tower state never holds up a decision being recorded (with a rollback
    journal the commit would wait for the reader, then fail)."""
    engine = tower_db.make_tower_engine(_url(tmp_path / "tower.db"))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with engine.connect() as reader:
        reader.exec_driver_sql("BEGIN")
        assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
        started = time.perf_counter()
        with engine.begin() as writer:
            writer.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert time.perf_counter() - started < 5
        assert reader.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0, "the reader keeps its snapshot"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1


def test_create_schema_creates_every_owned_table_and_is_idempotent(tmp_path):
    engine = tower_db.make_tower_engine(_url(tmp_path / "tower.db"))
    tower_db.create_schema(engine)
    assert OWNED_TABLES <= set(sa.inspect(engine).get_table_names())
    assert OWNED_TABLES <= set(tower_db.METADATA.tables)

    with engine.begin() as conn:
        conn.execute(sa.insert(tower_db.METADATA.tables["monitoring_references"]).values(
            reference_id="r", model="m", definition="{}", payload="{}", rows=1, computed_at=datetime(2026, 1, 1)))
    tower_db.create_schema(engine)  # again, on a database that already holds rows
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(
            tower_db.METADATA.tables["monitoring_references"])).scalar() == 1


def test_create_schema_runs_the_registered_upgrades_after_the_tables_exist(tmp_path, monkeypatch):
    seen: list[set[str]] = []
    monkeypatch.setattr(tower_db, "UPGRADES", [*tower_db.UPGRADES,
                                               lambda engine: seen.append(set(sa.inspect(engine).get_table_names()))])
    engine = tower_db.make_tower_engine(_url(tmp_path / "tower.db"))
    tower_db.create_schema(engine)
    tower_db.create_schema(engine)
    assert len(seen) == 2 and all(OWNED_TABLES <= tables for tables in seen)


def test_an_unopenable_database_is_tower_state_unavailable_naming_the_setting(tmp_path):
    folder = tmp_path / "tower.db"
    folder.mkdir()  # a folder where the database file should be: sqlite cannot open it
    engine = tower_db.make_tower_engine(_url(folder))
    for call in (tower_db.create_schema, tower_db.ping):
        with pytest.raises(TowerStateUnavailable) as caught:
            call(engine)
        assert "cannot be reached" in caught.value.message and "TOWER_DB_URL" in caught.value.hint


def test_ping_refuses_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "tower.db"
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(TowerStateUnavailable, match="not a database"):
        tower_db.ping(tower_db.make_tower_engine(_url(path)))
