"""Real warehouses for tests: a DuckDB file, a SQLite file, a PostgreSQL schema or a Spark database of its own.

Tests write prediction logs with ``pandas.to_sql`` through a read-write engine (on Spark: as Parquet
files registered with ``CREATE TABLE … USING parquet LOCATION``), then read them through
:func:`services.stores.warehouse.engine.make_engine`, which opens every database read-only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psycopg
import psycopg.sql
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.stores.warehouse.engine import make_engine

POSTGRES_URL = os.environ.get("TOWER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
KINDS = ("duckdb", "sqlite", "postgres")
# Spark SQL on the session's standalone cluster (tests/support/spark_cluster.py), for the modules whose
# numbers it must reproduce; marked so that `-m "not spark"` leaves it out and `-m spark` runs only it.
SPARK = pytest.param("spark", marks=pytest.mark.spark)
KINDS_AND_SPARK = (*KINDS, SPARK)
SERVER_FIXTURES = {"postgres": "postgres_url", "spark": "spark_url"}
_PG_CLUSTERS = Path("/etc/postgresql")


def _postgres_error(url: str) -> str | None:
    """None when ``url`` accepts a connection, else why not."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": 2}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(1))
        return None
    except sa.exc.DBAPIError as exc:
        return str(exc.orig).strip()
    finally:
        engine.dispose()


def _create_database(url: str) -> None:
    """Create the database ``url`` names, through the server's maintenance database."""
    target = sa.make_url(url)
    with psycopg.connect(host=target.host, port=target.port, user=target.username, password=target.password,
                         dbname="postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(target.database)))


def ensure_postgres(url: str = POSTGRES_URL, wait_s: float = 15.0) -> str | None:
    """The URL of a running PostgreSQL, starting the local cluster if it is down.

    Returns None only when no PostgreSQL is installed here; raises when one is installed but does
    not accept connections within ``wait_s`` seconds.
    """
    error = _postgres_error(url)
    if error is None:
        return url
    if "does not exist" in error and "database" in error:
        _create_database(url)
        return url
    versions = sorted(p.name for p in _PG_CLUSTERS.iterdir()) if _PG_CLUSTERS.is_dir() else []
    pg_ctlcluster = shutil.which("pg_ctlcluster")
    if not versions or pg_ctlcluster is None:
        return None
    subprocess.run(  # a fixed program; its arguments come from a directory listing
        [pg_ctlcluster, "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False, capture_output=True, timeout=30,
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        error = _postgres_error(url)
        if error is None:
            return url
        if "does not exist" in error and "database" in error:
            _create_database(url)
            return url
        time.sleep(0.5)
    raise RuntimeError(
        f"PostgreSQL {versions[-1]} is installed but {url} refused connections for {wait_s:.0f} s: {error}"
    )


def scratch_warehouse(kind: str, folder: Path, request: pytest.FixtureRequest) -> ScratchWarehouse:
    """A ScratchWarehouse of ``kind``, asking the session for its server (PostgreSQL, Spark) when it has one."""
    fixture = SERVER_FIXTURES.get(kind)
    return ScratchWarehouse(kind, folder, request.getfixturevalue(fixture) if fixture else None)


class ScratchWarehouse:
    """One throw-away warehouse of a given kind; ``close()`` removes it.

    PostgreSQL warehouses are a schema ``tower_test_<uuid>`` in the test database, Spark ones a
    database of that name on the session's cluster, so parallel or interrupted runs never see each
    other's tables; :meth:`table` gives the name to put in a mapping (schema-qualified there).
    """

    def __init__(self, kind: str, folder: Path, postgres_url: str | None = None) -> None:
        """``postgres_url``: the server's URL for the server kinds (PostgreSQL, or Spark's ``hive://``)."""
        self.kind = kind
        self.schema: str | None = None
        self.folder = folder
        if kind == "duckdb":
            self.url = f"duckdb:///{folder / 'warehouse.duckdb'}"
        elif kind == "sqlite":
            self.url = f"sqlite:///{folder / 'warehouse.db'}"
        elif kind == "postgres":
            if postgres_url is None:
                raise ValueError("a PostgreSQL scratch warehouse needs the server's URL")
            self.url = postgres_url
            self.schema = f"tower_test_{uuid.uuid4().hex}"
        elif kind == "spark":
            if postgres_url is None:
                raise ValueError("a Spark scratch warehouse needs the Thrift server's hive:// URL")
            self.url = postgres_url
            self.schema = f"tower_test_{uuid.uuid4().hex}"
        else:
            raise ValueError(f"unknown warehouse kind {kind!r}")
        self._writer: Engine | None = sa.create_engine(self.url)
        self._reader: Engine | None = None
        if self.schema:
            with self._writer.begin() as conn:
                conn.execute(sa.schema.CreateSchema(self.schema))

    def table(self, name: str) -> str:
        return f"{self.schema}.{name}" if self.schema else name

    def write(self, frame: pd.DataFrame, name: str) -> str:
        """Write ``frame`` as table ``name`` (replacing it); return its name for a mapping."""
        if self._reader is not None:  # DuckDB will not open one file read-only and read-write at once
            self._reader.dispose()
            self._reader = None
        if self._writer is None:
            self._writer = sa.create_engine(self.url)
        if self.kind == "spark":
            write_spark_table(self._writer, frame, f"{self.schema}.{name}", self.folder)
            return self.table(name)
        frame.to_sql(name, self._writer, schema=self.schema, index=False, if_exists="replace",
                     method="multi", chunksize=500)
        if self.kind == "duckdb":
            self._writer.dispose()
            self._writer = None
        return self.table(name)

    def reader(self) -> Engine:
        """The engine the tower reads with: services.stores.warehouse.engine.make_engine."""
        if self._reader is None:
            if self.kind == "duckdb" and self._writer is not None:
                self._writer.dispose()
                self._writer = None
            self._reader = make_engine(self.url)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.dispose()
        if self.schema:
            writer = self._writer or sa.create_engine(self.url)
            with writer.begin() as conn:
                if self.kind == "spark":  # its tables are external: their Parquet files stay in the test's folder
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {self.schema} CASCADE"))
                else:
                    conn.execute(sa.schema.DropSchema(self.schema, cascade=True))
            writer.dispose()
        elif self._writer is not None:
            self._writer.dispose()


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as Spark reads it: timestamps in microseconds (Spark has no nanoseconds), NaN as
    NULL (as ``to_sql`` writes it), a column of nothing but NULLs as text (Parquet's NULL type is
    unreadable to Spark)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = []
    for item in table.schema:
        if pa.types.is_timestamp(item.type):
            item = item.with_type(pa.timestamp("us", tz=item.type.tz))
        elif pa.types.is_null(item.type):
            item = item.with_type(pa.string())
        fields.append(item)
    return table.cast(pa.schema(fields))


def write_spark_table(writer: Engine, frame: pd.DataFrame, qualified: str, folder: Path) -> None:
    """Write ``frame`` as a Parquet file under ``folder`` and (re)register it as table ``qualified``.

    A fresh directory per write: Spark caches a table's file listing, so rewriting files in place
    would leave it reading the old ones.
    """
    location = folder / "spark-tables" / f"{qualified.replace('.', '__')}-{uuid.uuid4().hex[:8]}"
    location.mkdir(parents=True)
    pq.write_table(_arrow_table(frame), location / "part-00000.parquet")
    with writer.begin() as conn:
        schema = qualified.partition(".")[0]
        conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS {schema}"))
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {qualified}"))
        conn.execute(sa.text(f"CREATE TABLE {qualified} USING parquet LOCATION '{location.as_uri()}'"))


def spark_put_nan(url: str, qualified: str, column: str, request_ids: list[str]) -> None:
    """Store IEEE NaN in these rows of a Spark table: rewrite its Parquet file, then refresh the table."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            rows = conn.execute(sa.text(f"DESCRIBE TABLE EXTENDED {qualified}")).all()
            location = next(str(r[1]).strip() for r in rows if str(r[0]).strip() == "Location")
            path = Path(location.removeprefix("file:")) / "part-00000.parquet"
            table = pq.read_table(path)
            hit = pc.is_in(table["request_id"], value_set=pa.array(request_ids))
            nan = pa.scalar(float("nan"), table.schema.field(column).type)
            patched = pc.if_else(hit, nan, table[column])
            pq.write_table(table.set_column(table.schema.get_field_index(column), column, patched), path)
            conn.execute(sa.text(f"REFRESH TABLE {qualified}"))
    finally:
        engine.dispose()


@contextmanager
def tower_state(kind: str, folder: Path, *, with_schema: bool = True, name: str = "tower.db") -> Iterator[Engine]:
    """A fresh tower state: a SQLite file in ``folder``, or a private schema on the local PostgreSQL
    (dropped afterwards; skipped only where no server can exist). ``with_schema=False`` leaves it empty,
    for a test that writes an older tower's tables first."""
    from services.stores.tower_db import create_schema, make_tower_engine

    if kind == "sqlite":
        engine = make_tower_engine(f"sqlite:///{folder / name}")
        if with_schema:
            create_schema(engine)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    url = ensure_postgres()
    if url is None:
        pytest.skip("PostgreSQL is not installed on this machine")
    schema = f"tower_test_{uuid.uuid4().hex}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        if with_schema:
            create_schema(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()
