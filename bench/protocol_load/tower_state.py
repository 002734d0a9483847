"""The replicas' shared tower state: a PostgreSQL database of this benchmark's own, with the monitoring results.

The monitoring job fills a template database once per demo (named after the demo's last day, so a
re-seeded demo gets a new one); each run works on a ``CREATE DATABASE … TEMPLATE`` clone, dropped at
the end. Databases are prefixed ``bench_protocol_`` so that no test's clean-up touches them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg

from tests.support.production import Postgres

PREFIX = "bench_protocol_"


def _exists(postgres: Postgres, name: str) -> bool:
    with postgres._maintenance() as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


@contextmanager
def postgres_tower_state(url: str, data_dir: Path, log: Callable[[str], None]) -> Iterator[str]:
    """A fresh clone of the demo's tower state on PostgreSQL; its URL."""
    from services.monitoring.job import run_monitoring
    from services.settings import load_settings
    from tests.support.databases import ensure_postgres

    url = ensure_postgres(url) or url
    postgres = Postgres(url)
    end = json.loads((data_dir / "demo-seed.json").read_text()).get("end_date", "demo").replace("-", "")
    template = f"{PREFIX}template_{end}"
    if not _exists(postgres, template):
        log(f"filling the tower state template {template} on PostgreSQL (the monitoring job, once) …")
        building = f"{template}_building_{os.getpid()}"
        postgres.drop(building)
        postgres.create(building)
        settings = load_settings({"TOWER_DATA_DIR": str(data_dir), "TOWER_DB_URL": postgres.database_url(building)})
        failed = [run for run in run_monitoring(settings) if run.error]
        if failed:
            postgres.drop(building)
            raise RuntimeError(f"monitoring on PostgreSQL failed: {[(r.model, r.error) for r in failed]}")
        with postgres._maintenance() as conn:
            conn.execute(psycopg.sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                psycopg.sql.Identifier(building), psycopg.sql.Identifier(template)))
        postgres.seal(template)
    clone = postgres.create(f"{PREFIX}run_{os.getpid()}_{uuid.uuid4().hex[:8]}", template=template)
    try:
        yield postgres.database_url(clone)
    finally:
        with suppress(psycopg.Error):
            postgres.drop(clone)
