"""Shared fixtures: the demo built once per session, copied per test that breaks or changes it.

Tests never read the developer's own settings: every variable the tower reads is cleared first.

Two backends (``--backend`` or ``TOWER_TEST_BACKEND``; ``make test`` runs both):

* ``default`` — the embedded stores of the demo folder: DuckDB warehouse, sqlite MLflow store,
  sqlite tower state.
* ``production`` — the same seeded demo served by PostgreSQL (warehouse and tower state) and by an
  MLflow tracking server with its basic-auth app, reached as a service account that may edit only
  the governed models (tests/support/production.py). ``demo_env`` and ``demo_dir`` point the
  environment at those stores; tests that use neither, or that simulate an embedded file going
  missing, are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.settings import SETTINGS, Settings, load_settings
from tests.support import production as prod

# MLflow's client also reads its credentials from the environment.
TOWER_ENV = [spec.env for spec in SETTINGS] + [
    "TOWER_CONFIG", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
]
STORE_FIXTURES = {"demo_env", "demo_dir", "production_stores"}
TIMINGS = pytest.StashKey[dict[str, float]]()  # how long building the session's stores took
# Tests of an embedded store's own failure modes: meaningless when the stores are servers.
EMBEDDED_ONLY = {
    "warehouse_missing": "simulates a missing DuckDB warehouse file (embedded store); the default pass runs it",
    "test_missing_registry_file_is_reported_and_not_created":
        "checks a missing sqlite registry file is not created (embedded store); the default pass runs it",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=(prod.DEFAULT, prod.PRODUCTION), default=None,
                     help=f"stores of the demo fixtures (default: ${prod.BACKEND_ENV} or '{prod.DEFAULT}')")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "production: needs the production backends (--backend production)")


def pytest_report_header(config: pytest.Config) -> str:
    return f"tower test backend: {prod.backend_of(config.getoption('--backend'))}"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    timings = config.stash.get(TIMINGS, {})
    if timings:
        terminalreporter.write_line("demo stores built in: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    backend = prod.backend_of(config.getoption("--backend"))
    for item in items:
        reason = _skip_reason(backend, item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def _skip_reason(backend: str, item: pytest.Item) -> str | None:
    needs_production = item.get_closest_marker("production") is not None
    if backend != prod.PRODUCTION:
        return "needs the production backends: run with --backend production (make test's second pass)" \
            if needs_production else None
    fixtures = set(getattr(item, "fixturenames", ()))
    for key, reason in EMBEDDED_ONLY.items():
        if key in fixtures or getattr(item, "originalname", item.name) == key:
            return reason
    on_postgres = item.get_closest_marker("postgres") is not None  # cheap, and about the production stores
    if not (needs_production or on_postgres) and not fixtures & STORE_FIXTURES:
        return "uses no demo store, so the production backends change nothing; the default pass runs it"
    return None


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TOWER_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def backend(pytestconfig: pytest.Config) -> str:
    """'default' (embedded stores) or 'production' (PostgreSQL and an MLflow server with basic auth)."""
    return prod.backend_of(pytestconfig.getoption("--backend"))


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory, backend: str, pytestconfig: pytest.Config) -> Path:
    """The full demo as `make seed` builds it (registry, warehouse, monitoring results), once per session.

    Treat it as read-only; copy it (``demo_dir``) to change it. Under the production backends the
    monitoring results are computed on PostgreSQL instead (``production_stores``), so the folder
    holds the seeded registry and warehouse only.
    """
    from services.demo.seed import seed_demo
    from services.monitoring.job import run_monitoring

    timings = pytestconfig.stash.setdefault(TIMINGS, {})
    data_dir = tmp_path_factory.mktemp("demo")
    settings = load_settings({"TOWER_DATA_DIR": str(data_dir)})
    started = time.perf_counter()
    seed_demo(settings)
    timings["demo seed"] = time.perf_counter() - started
    if backend == prod.DEFAULT:
        started = time.perf_counter()
        run_monitoring(settings)
        timings["monitoring"] = time.perf_counter() - started
    return data_dir


@pytest.fixture(scope="session")
def production_stores(demo_template: Path, tmp_path_factory: pytest.TempPathFactory,
                      pytestconfig: pytest.Config) -> Iterator[prod.ProductionStores]:
    """The demo on PostgreSQL and an MLflow server with basic auth (tests/support/production.py)."""
    from tests.support.databases import ensure_postgres

    url = ensure_postgres()
    if url is None:
        pytest.skip("PostgreSQL is not installed on this machine (no /etc/postgresql cluster, no pg_ctlcluster): "
                    "the production backends need it")
    with prod.build_production_stores(url, demo_template, tmp_path_factory.mktemp("production")) as stores:
        pytestconfig.stash.setdefault(TIMINGS, {}).update(stores.timings)
        yield stores


@pytest.fixture
def demo_dir(demo_template: Path, tmp_path: Path, backend: str, request: pytest.FixtureRequest,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private copy of the demo for a test that changes or breaks it.

    Under the production backends the environment also points at private stores: clones of the
    PostgreSQL databases and the session's MLflow server with its registry reset to the seeded one.
    """
    target = tmp_path / "demo"
    shutil.copytree(demo_template, target)
    if backend != prod.PRODUCTION:
        yield target
        return
    stores: prod.ProductionStores = request.getfixturevalue("production_stores")
    databases = stores.clone()
    stores.registry.reset_store()
    for name, value in stores.env(databases).items():
        monkeypatch.setenv(name, value)
    try:
        yield target
    finally:
        stores.registry.reset_store()
        stores.retire(databases)


@pytest.fixture
def demo_env(demo_template: Path, backend: str, request: pytest.FixtureRequest,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The process environment pointed at the shared demo, as `make run` would (or at the shared
    production stores)."""
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_template))
    if backend == prod.PRODUCTION:
        stores: prod.ProductionStores = request.getfixturevalue("production_stores")
        for name, value in stores.env(stores.shared).items():
            monkeypatch.setenv(name, value)
    yield load_settings()


# --------------------------------------------------------------------------------------------
# Real databases for the tests that build their own stores
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The local PostgreSQL server (started if it is down); skipped only where no server can exist."""
    from tests.support.databases import ensure_postgres

    url = ensure_postgres()
    if url is None:
        pytest.skip("PostgreSQL is not installed on this machine")
    return url


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[object]:
    """A Spark standalone master, two workers and a Thrift server on loopback, started the first time a
    test asks for it and stopped (every JVM killed) at the end of the session; skipped only without Java."""
    from tests.support.spark_cluster import java_missing_reason, run_spark_cluster

    reason = java_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with run_spark_cluster(tmp_path_factory.mktemp("spark")) as cluster:
        pytestconfig.stash.setdefault(TIMINGS, {})["spark cluster start"] = cluster.started_in_s
        yield cluster


@pytest.fixture(scope="session")
def spark_url(request: pytest.FixtureRequest) -> str:
    """The ``hive://`` URL of the session's Spark Thrift server, or of ``TOWER_TEST_SPARK_URL`` when set
    (a Thrift server already running on this machine: it must read the tests' Parquet files in place)."""
    url = os.environ.get("TOWER_TEST_SPARK_URL")
    return url or str(request.getfixturevalue("spark_cluster").url)


@pytest.fixture
def tower(tmp_path: Path) -> Iterator[object]:
    """A fresh SQLite tower state with the tower's whole schema (a module may override it, e.g. to run
    on PostgreSQL as well)."""
    from services.stores.tower_db import create_schema, make_tower_engine

    engine = make_tower_engine(f"sqlite:///{tmp_path / 'tower.db'}")
    create_schema(engine)
    yield engine
    engine.dispose()
