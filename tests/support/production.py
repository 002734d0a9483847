"""The production backends of the store-dependent tests (``TOWER_TEST_BACKEND=production``).

The demo is seeded as usual into a folder (DuckDB warehouse, sqlite MLflow store), then served the
way a deployment serves it:

* **warehouse** — every table of the demo's DuckDB file copied (DuckDB ``COPY … TO`` CSV, then
  PostgreSQL ``COPY … FROM STDIN``; ~290k rows in about a second) into a fresh PostgreSQL
  database, row counts checked;
* **tower state** — another fresh PostgreSQL database, filled by ``run_monitoring`` reading the
  PostgreSQL warehouse, so every monitoring result is computed on PostgreSQL;
* **registry** — ``python -m mlflow server --app-name basic-auth`` on a free loopback port over a
  copy of the demo's ``mlflow.db``, with its own permission database, a random admin password and
  a service account (``tower-svc``) that holds EDIT on exactly the registered models the tower
  governs (the ``models`` of tower.yaml) and the server's default READ on everything else. The
  tower reaches it with ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``; no password
  is ever part of a URL.

Isolation. The two PostgreSQL databases built above are templates nobody connects to
(``ALLOW_CONNECTIONS false``); the shared stores of ``demo_env`` and the private stores of each
``demo_dir`` test are ``CREATE DATABASE … TEMPLATE …`` clones (~0.2-0.3 s each), dropped ``WITH
(FORCE)`` afterwards, in a background thread (a drop costs a checkpoint, ~1 s; FORCE also closes
the connections the app's cached engines still hold). The MLflow server is one per session:
starting one costs 8-20 s on this 2-core machine (two Python processes importing MLflow, the auth
app's migrations), i.e. more than the tests that change the registry take, so instead such a test
gets the server's sqlite store restored from the pristine copy (sqlite backup API, ~30 ms) before
and after it. Tests run one at a time, so no request is in flight during a restore, and every test
sees exactly the seeded registry; the server's permission database is never reset (the service
account and its grants are the same for every test).

Database names are unique per session (``tower_prod_<pid>_<random>_…``); databases left
by a run that was killed are dropped by the next one once their process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg
import requests
import sqlalchemy as sa
from psycopg import sql

from services.settings import Settings, load_settings
from tests.support.mlflow_server import free_port, log_tail, stop_process_group

BACKEND_ENV = "TOWER_TEST_BACKEND"
PRODUCTION = "production"
DEFAULT = "default"
ADMIN_USER = "admin"  # basic_auth.ini's admin_username
SERVICE_USER = "tower-svc"
# EDIT is what the tower's writes need (aliases, legacy stage transitions, model and version tags);
# MANAGE would also let it delete the models and grant permissions on them, which it never does.
SERVICE_PERMISSION = "EDIT"
DEFAULT_PERMISSION = "READ"  # every other model, experiment and run: the tower shows them all
DB_PREFIX = "tower_prod_"
STARTUP_TIMEOUT_S = 180.0  # counted from launch; the server comes up while monitoring runs
# The auth app's REST routes (mlflow/server/auth/routes.py; importing that module loads the whole server).
CREATE_USER = "/api/2.0/mlflow/users/create"
GRANT_USER_PERMISSION = "/api/3.0/mlflow/users/permissions/grant"
# DuckDB column type -> PostgreSQL column type (the demo uses the first five).
_PG_TYPES = {
    "VARCHAR": "text", "TIMESTAMP": "timestamp", "INTEGER": "integer", "BIGINT": "bigint",
    "DOUBLE": "double precision", "BOOLEAN": "boolean", "DATE": "date", "FLOAT": "real",
    "SMALLINT": "smallint", "TIMESTAMP WITH TIME ZONE": "timestamptz", "HUGEINT": "numeric",
}


def backend_of(option: str | None) -> str:
    """The backend the session runs on: the pytest option, else TOWER_TEST_BACKEND, else default."""
    value = (option or os.environ.get(BACKEND_ENV) or DEFAULT).strip().lower()
    if value not in (DEFAULT, PRODUCTION):
        raise ValueError(f"{BACKEND_ENV} / --backend must be '{DEFAULT}' or '{PRODUCTION}', not {value!r}")
    return value


def warehouse_file(settings: Settings) -> Path:
    """The DuckDB file holding the rows of the warehouse ``settings`` point at, for the tests' oracles.

    By default that is WAREHOUSE_URL itself. Under the production backends WAREHOUSE_URL is a
    PostgreSQL database loaded from the demo folder's DuckDB file (row counts checked at load), so
    the oracle reads that file while the pages compute their numbers on PostgreSQL.
    """
    if settings.warehouse_url.startswith("duckdb:///"):
        return Path(settings.warehouse_url.removeprefix("duckdb:///"))
    return settings.data_dir / "warehouse.duckdb"


# ----------------------------------------------------------------------------------------------
# PostgreSQL
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Postgres:
    """One PostgreSQL server, reached through the URL of any of its databases."""

    url: str

    def database_url(self, name: str) -> str:
        return sa.make_url(self.url).set(database=name).render_as_string(hide_password=False)

    @contextlib.contextmanager
    def _maintenance(self) -> Iterator[psycopg.Connection]:
        target = sa.make_url(self.url)
        with psycopg.connect(host=target.host, port=target.port, user=target.username, password=target.password,
                             dbname="postgres", autocommit=True, connect_timeout=5) as conn:
            yield conn

    def create(self, name: str, template: str | None = None) -> str:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self._maintenance() as conn:
            conn.execute(statement)
        return name

    def seal(self, name: str) -> None:
        """Make ``name`` a template nobody can connect to (cloning needs it idle)."""
        with self._maintenance() as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))

    def drop(self, *names: str) -> None:
        """Drop the databases, closing any connection still open on them."""
        with self._maintenance() as conn:
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def drop_stale(self) -> list[str]:
        """Drop what interrupted earlier runs left: our databases whose creating process is gone.

        Never forces: a database somebody is connected to stays.
        """
        dropped = []
        with self._maintenance() as conn:
            names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                [DB_PREFIX + "%"])]
            for name in names:
                match = re.match(rf"{DB_PREFIX}(\d+)_", name)
                if match is None or _alive(int(match.group(1))):
                    continue
                with contextlib.suppress(psycopg.Error):
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                    dropped.append(name)
        return dropped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_warehouse(duckdb_path: Path, url: str) -> dict[str, int]:
    """Copy every table of the DuckDB file into the (empty) PostgreSQL database at ``url``.

    Returns the row count per table, after checking PostgreSQL holds exactly as many rows.
    """
    target = sa.make_url(url)
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="tower-wh-") as scratch, \
            duckdb.connect(str(duckdb_path), read_only=True) as source, \
            psycopg.connect(host=target.host, port=target.port, user=target.username, password=target.password,
                            dbname=target.database, connect_timeout=5) as pg:
        # Every schema's tables: the demo keeps its training snapshots in `features` (the registry reference).
        tables = [(r[0], r[1]) for r in source.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "ORDER BY table_schema, table_name").fetchall()]
        for schema, table in tables:
            columns = source.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema, table]).fetchall()
            definition = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(_pg_type(table, name, kind)))
                for name, kind in columns)
            target_name = sql.Identifier(table) if schema == "main" else sql.Identifier(schema, table)
            if schema != "main":
                pg.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            pg.execute(sql.SQL("CREATE TABLE {} ({})").format(target_name, definition))
            csv = Path(scratch) / f"{schema}.{table}.csv"
            quoted = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
            # NULL is written as an empty field and '' as "": PostgreSQL's CSV reads them back alike.
            source.execute(f"COPY {quoted} TO '{csv}' (FORMAT csv, HEADER false)")
            with pg.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(target_name)) as copy, \
                    csv.open("rb") as data:
                while chunk := data.read(1 << 20):
                    copy.write(chunk)
            want = source.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
            got = pg.execute(sql.SQL("SELECT count(*) FROM {}").format(target_name)).fetchone()[0]
            if got != want:
                raise RuntimeError(f"{schema}.{table}: {got} rows in PostgreSQL, {want} in {duckdb_path}")
            counts[table if schema == "main" else f"{schema}.{table}"] = int(got)
        pg.commit()
        pg.autocommit = True
        pg.execute("ANALYZE")  # planner statistics, as a warehouse that has been loaded for a while has
    return counts


def _pg_type(table: str, column: str, duckdb_type: str) -> str:
    kind = duckdb_type.upper()
    if kind.startswith("DECIMAL"):
        return kind.replace("DECIMAL", "numeric")
    if kind not in _PG_TYPES:
        raise ValueError(f"{table}.{column}: no PostgreSQL type for DuckDB's {duckdb_type}")
    return _PG_TYPES[kind]


# ----------------------------------------------------------------------------------------------
# MLflow tracking server with basic auth
# ----------------------------------------------------------------------------------------------
def sqlite_copy(source: Path, target: Path) -> None:
    """Copy (or overwrite) a sqlite database with the backup API: consistent even while open."""
    with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src, \
            contextlib.closing(sqlite3.connect(target, timeout=30)) as dst:
        src.backup(dst)


@dataclass
class AuthMlflowServer:
    """``mlflow server --app-name basic-auth`` over a sqlite store that can be reset to a pristine copy."""

    folder: Path
    pristine: Path  # the seeded registry; never opened for writing
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    url: str = ""
    _proc: subprocess.Popen[bytes] | None = None
    _launched: float = 0.0

    @property
    def store(self) -> Path:
        return self.folder / "mlflow.db"

    @property
    def admin_auth(self) -> tuple[str, str]:
        return ADMIN_USER, self.admin_password

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the server process; :meth:`wait_ready` waits for it (do other work in between)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        sqlite_copy(self.pristine, self.store)
        config = self.folder / "basic_auth.ini"
        # auth_cache_ttl_seconds: without it every request re-derives the password hash (PBKDF2,
        # 0.2-0.3 s here), which makes a page with ten registry calls take seconds.
        config.write_text(
            "[mlflow]\n"
            f"default_permission = {DEFAULT_PERMISSION}\n"
            f"database_uri = sqlite:///{self.folder / 'basic_auth.db'}\n"
            f"admin_username = {ADMIN_USER}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "auth_cache_ttl_seconds = 60\n",
            encoding="utf-8",
        )
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
            "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{self.store}",
            "--artifacts-destination", str(self.folder / "artifacts"),
            "--workers", "1",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_AUTH_"))}
        env.update(
            PYTHONUNBUFFERED="1",
            MLFLOW_AUTH_CONFIG_PATH=str(config),
            MLFLOW_AUTH_ADMIN_PASSWORD=self.admin_password,  # read once, when the user store is created
            MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(32),  # the auth app's CSRF key
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
            MLFLOW_DISABLE_TELEMETRY="true",
        )
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(  # fixed argv, our own interpreter
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.folder, env=env, start_new_session=True,
            )
        self._launched = time.monotonic()

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    def wait_ready(self) -> None:
        if self._proc is None:
            raise RuntimeError("the MLflow server was not launched")
        log_path = self.log_path
        deadline = self._launched + STARTUP_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mlflow server (basic-auth) exited with code {self._proc.returncode}.\n"
                                   f"Server log:\n{log_tail(log_path)}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server (basic-auth) did not answer {self.url}/health within "
                                   f"{STARTUP_TIMEOUT_S:.0f} s.\nServer log:\n{log_tail(log_path)}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process_group(self._proc)
            self._proc = None

    def reset_store(self) -> None:
        """Give the registry back its seeded content (between tests; nothing may be in flight)."""
        sqlite_copy(self.pristine, self.store)

    def _admin(self, method: str, path: str, payload: dict) -> None:
        response = requests.request(method, f"{self.url}{path}", json=payload, auth=self.admin_auth, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"{method} {path} as {ADMIN_USER}: HTTP {response.status_code} {response.text[:300]}")

    def create_user(self, username: str, password: str) -> None:
        self._admin("POST", CREATE_USER, {"username": username, "password": password})

    def grant_model(self, username: str, model: str, permission: str) -> None:
        self._admin("POST", GRANT_USER_PERMISSION, {"username": username, "resource_type": "registered_model",
                                                    "resource_id": model, "permission": permission})


# ----------------------------------------------------------------------------------------------
# The stores of a session
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Databases:
    warehouse: str
    tower: str


@dataclass
class ProductionStores:
    """The session's production stores: templates, the shared clones, the registry server."""

    postgres: Postgres
    prefix: str
    templates: Databases
    shared: Databases
    registry: AuthMlflowServer
    service_password: str
    governed: tuple[str, ...]
    warehouse_rows: dict[str, int]
    timings: dict[str, float]
    _clones: int = 0
    # Dropping a database costs a checkpoint (~1 s here): done off the tests' path, one at a time.
    _dropper: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "drop-db"))

    def env(self, databases: Databases) -> dict[str, str]:
        """The tower's environment for these databases and the registry, as the service account."""
        return {
            "WAREHOUSE_URL": self.postgres.database_url(databases.warehouse),
            "TOWER_DB_URL": self.postgres.database_url(databases.tower),
            "MLFLOW_TRACKING_URI": self.registry.url,
            "MLFLOW_TRACKING_USERNAME": SERVICE_USER,
            "MLFLOW_TRACKING_PASSWORD": self.service_password,
        }

    def clone(self) -> Databases:
        """Private copies of the warehouse and the tower state, as seeded and monitored."""
        self._clones += 1
        n = self._clones
        return Databases(
            warehouse=self.postgres.create(f"{self.prefix}_wh_{n}", template=self.templates.warehouse),
            tower=self.postgres.create(f"{self.prefix}_state_{n}", template=self.templates.tower),
        )

    def retire(self, databases: Databases) -> None:
        """Drop the clones (in the background), closing the connections cached engines still hold."""
        self._dropper.submit(self.postgres.drop, databases.warehouse, databases.tower)

    def close(self) -> None:
        self._dropper.shutdown(wait=True)


@contextlib.contextmanager
def build_production_stores(postgres_url: str, demo_dir: Path, scratch: Path) -> Iterator[ProductionStores]:
    """Build the production stores from the seeded demo in ``demo_dir``; tear everything down after.

    The MLflow server starts first and comes up while the warehouse loads and monitoring runs.
    """
    from services.monitoring.job import run_monitoring

    postgres = Postgres(postgres_url)
    postgres.drop_stale()
    prefix = f"{DB_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
    templates = Databases(f"{prefix}_wh_template", f"{prefix}_state_template")
    registry = AuthMlflowServer(folder=scratch / "mlflow-server", pristine=scratch / "mlflow-seeded.db")
    stores: ProductionStores | None = None
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        sqlite_copy(demo_dir / "mlflow.db", registry.pristine)
        registry.launch()

        mark = time.perf_counter()
        postgres.create(templates.warehouse)
        rows = load_warehouse(demo_dir / "warehouse.duckdb", postgres.database_url(templates.warehouse))
        timings["warehouse load"] = time.perf_counter() - mark

        mark = time.perf_counter()
        postgres.create(templates.tower)
        settings = load_settings({"TOWER_DATA_DIR": str(demo_dir),
                                  "WAREHOUSE_URL": postgres.database_url(templates.warehouse),
                                  "TOWER_DB_URL": postgres.database_url(templates.tower)})
        failed = [run for run in run_monitoring(settings) if run.error]
        if failed:
            raise RuntimeError(f"monitoring on PostgreSQL failed: {[(r.model, r.error) for r in failed]}")
        timings["monitoring on PostgreSQL"] = time.perf_counter() - mark
        postgres.seal(templates.warehouse)
        postgres.seal(templates.tower)

        mark = time.perf_counter()
        registry.wait_ready()
        service_password = secrets.token_urlsafe(18)
        registry.create_user(SERVICE_USER, service_password)
        governed = tuple(sorted(settings.models))
        for model in governed:
            registry.grant_model(SERVICE_USER, model, SERVICE_PERMISSION)
        timings["mlflow server ready (after that)"] = time.perf_counter() - mark

        shared = Databases(postgres.create(f"{prefix}_wh_shared", template=templates.warehouse),
                           postgres.create(f"{prefix}_state_shared", template=templates.tower))
        timings["production stores in all"] = time.perf_counter() - started
        stores = ProductionStores(postgres=postgres, prefix=prefix, templates=templates, shared=shared,
                                  registry=registry, service_password=service_password, governed=governed,
                                  warehouse_rows=rows, timings=timings)
        yield stores
    finally:
        if stores is not None:
            stores.close()
        registry.stop()
        with contextlib.suppress(psycopg.Error):
            _drop_prefixed(postgres, prefix)
        shutil.rmtree(registry.folder, ignore_errors=True)


def _drop_prefixed(postgres: Postgres, prefix: str) -> None:
    with postgres._maintenance() as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                            [prefix.replace("_", r"\_") + r"\_%"])]
    postgres.drop(*names)
