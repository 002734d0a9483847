"""The production backends themselves: PostgreSQL engines bounded in time and connections, and the
MLflow tracking server with basic auth, where the tower's service account may edit only the models
it governs.

The engine tests need only the local PostgreSQL and run in both passes; the registry tests need the
session's production stores (``--backend production``, make test's second pass).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta

import pytest
import requests
import sqlalchemy as sa
from mlflow import MlflowClient

from services.errors import RegistryUnavailable, WarehouseUnavailable
from services.mapping import parse_model_mapping
from services.settings import load_settings
from services.stores.registry import Registry
from services.stores.tower_db import make_tower_engine
from services.stores.warehouse import logs as warehouse
from services.stores.warehouse.engine import STATEMENT_TIMEOUT_S, make_engine
from tests.support import production as prod
from tests.support.app_test import open_page, texts
from tests.support.databases import ScratchWarehouse, ensure_postgres

# Run again on the production backends by the second pass of `make test`.
pytestmark = pytest.mark.both_backends

UNGOVERNED = "ungoverned-model"
SLEEP_S = 30  # what a slow query would take; every bound below is a small fraction of it


# ----------------------------------------------------------------------------------------------
# PostgreSQL engines: statement timeouts and pool bounds
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres_url() -> str:
    url = ensure_postgres()
    if url is None:
        pytest.skip("PostgreSQL is not installed on this machine (no /etc/postgresql cluster, no pg_ctlcluster)")
    return url


@pytest.fixture
def slow_log(postgres_url: str, tmp_path) -> Iterator[tuple[str, object]]:
    """A log 'table' whose every read sleeps SLEEP_S seconds: a view in a scratch schema."""
    scratch = ScratchWarehouse("postgres", tmp_path, postgres_url)
    writer = sa.create_engine(postgres_url)
    with writer.begin() as conn:
        conn.execute(sa.text(
            f"CREATE VIEW {scratch.schema}.slow_log AS SELECT now()::timestamp AS ts, '1' AS v, 1.0 AS p, "
            f"5.0 AS lat, 'ok' AS st FROM (SELECT pg_sleep({SLEEP_S})) AS s"))
    writer.dispose()
    mapping = parse_model_mapping("slow", {"table": scratch.table("slow_log"), "columns": {
        "timestamp": "ts", "version": "v", "prediction": "p", "latency_ms": "lat", "status": "st"}})
    yield postgres_url, mapping
    scratch.close()


@pytest.mark.postgres
def test_a_slow_warehouse_query_is_cancelled_by_the_statement_timeout(slow_log):
    url, mapping = slow_log
    engine = make_engine(url, statement_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(WarehouseUnavailable, match="did not answer in time") as caught:
        warehouse.window_summary(engine, mapping, datetime(2020, 1, 1), datetime.now() + timedelta(days=1))
    assert time.monotonic() - started < 5
    assert "TOWER_WAREHOUSE_STATEMENT_TIMEOUT_S" in caught.value.hint
    engine.dispose()


@pytest.mark.postgres
def test_the_warehouse_statement_timeout_comes_from_the_setting(postgres_url):
    settings = load_settings({"TOWER_WAREHOUSE_STATEMENT_TIMEOUT_S": "2.5"})
    assert settings.warehouse_statement_timeout_s == 2.5
    assert load_settings({}).warehouse_statement_timeout_s == STATEMENT_TIMEOUT_S == 30
    for timeout_s, shown in ((settings.warehouse_statement_timeout_s, "2500ms"), (None, "30s")):
        kwargs = {} if timeout_s is None else {"statement_timeout_s": timeout_s}
        engine = make_engine(postgres_url, **kwargs)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == shown
            assert conn.execute(sa.text("SHOW default_transaction_read_only")).scalar() == "on"
        engine.dispose()


@pytest.mark.postgres
def test_a_slow_tower_state_statement_is_cancelled_by_the_statement_timeout(postgres_url):
    engine = make_tower_engine(postgres_url, statement_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(sa.exc.OperationalError, match="statement timeout"), engine.connect() as conn:
        conn.execute(sa.text(f"SELECT pg_sleep({SLEEP_S})"))
    assert time.monotonic() - started < 5
    engine.dispose()
    default = make_tower_engine(postgres_url)
    with default.connect() as conn:
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "30s"
    default.dispose()


@pytest.mark.postgres
def test_warehouse_pool_is_bounded_and_a_full_pool_fails_fast_with_a_clear_message(slow_log):
    url, mapping = slow_log
    engine = make_engine(url, connect_timeout_s=1)
    assert engine.pool.size() == 5
    with ExitStack() as held:
        for _ in range(10):  # the pool and its overflow
            held.enter_context(engine.connect())
        started = time.monotonic()
        with pytest.raises(WarehouseUnavailable, match="busy"):
            warehouse.log_bounds(engine, mapping)
        assert time.monotonic() - started < 5
    engine.dispose()


@pytest.mark.postgres
def test_tower_state_pool_is_bounded(postgres_url):
    engine = make_tower_engine(postgres_url, connect_timeout_s=1)
    assert engine.pool.size() == 5
    with ExitStack() as held:
        for _ in range(15):  # the pool and its overflow
            held.enter_context(engine.connect())
        started = time.monotonic()
        with pytest.raises(sa.exc.TimeoutError):
            engine.connect()
        assert time.monotonic() - started < 5
    engine.dispose()


# ----------------------------------------------------------------------------------------------
# The MLflow server with basic auth and the service account
# ----------------------------------------------------------------------------------------------
def as_admin(stores: prod.ProductionStores, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", prod.ADMIN_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", stores.registry.admin_password)
    return MlflowClient(tracking_uri=stores.registry.url, registry_uri=stores.registry.url)


def permission(stores: prod.ProductionStores, model: str) -> str:
    response = requests.get(f"{stores.registry.url}/api/3.0/mlflow/users/permissions/get",
                            params={"username": prod.SERVICE_USER, "resource_type": "registered_model",
                                    "resource_id": model}, auth=stores.registry.admin_auth, timeout=10)
    response.raise_for_status()
    return str(response.json())


@pytest.fixture
def with_ungoverned_model(demo_dir, production_stores, monkeypatch) -> Iterator[Registry]:
    """A model the tower does not govern, registered by the admin; the service account's Registry."""
    admin = as_admin(production_stores, monkeypatch)
    source = admin.get_model_version("credit-risk", "1")
    admin.create_registered_model(UNGOVERNED, tags={"owner": "someone-else"})
    admin.create_model_version(UNGOVERNED, source.source, run_id=source.run_id,
                               model_id=source.source.removeprefix("models:/"), await_creation_for=0)
    admin.set_registered_model_alias(UNGOVERNED, "production", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", prod.SERVICE_USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", production_stores.service_password)
    yield Registry(load_settings().mlflow_tracking_uri, timeout_s=5, max_retries=1)


@pytest.mark.production
def test_the_tower_runs_on_postgresql_and_the_server_as_the_service_account(demo_env, demo_template,
                                                                             production_stores):
    assert demo_env.warehouse_url.startswith("postgresql+psycopg://")
    assert demo_env.tower_db_url.startswith("postgresql+psycopg://")
    assert demo_env.mlflow_tracking_uri == production_stores.registry.url  # no credentials in the URI
    assert set(production_stores.governed) == set(load_settings().models)
    assert sum(production_stores.warehouse_rows.values()) > 250_000
    for model in production_stores.governed:
        assert prod.SERVICE_PERMISSION in permission(production_stores, model)
    at = open_page("app_pages/fleet.py")
    assert not at.exception and not at.error
    assert set(at.dataframe[0].value["Model"]) == set(production_stores.governed)
    # Nothing fell back to the embedded stores of the demo folder.
    assert not (demo_template / "tower.db").exists()


@pytest.mark.production
def test_the_service_account_moves_aliases_and_writes_tags_on_a_governed_model(with_ungoverned_model):
    registry = with_ungoverned_model
    registry.set_alias("credit-risk", "staging", "4")
    registry.set_version_tag("credit-risk", "4", "tower_state", "staging")
    registry.set_model_tag("credit-risk", "tower_holder_staging", "4")
    assert registry.model_aliases("credit-risk")["staging"] == "4"
    assert registry.version_tags("credit-risk", "4")["tower_state"] == "staging"
    assert registry.model_tags("credit-risk")["tower_holder_staging"] == "4"


@pytest.mark.production
def test_the_service_account_reads_but_may_not_change_a_model_it_does_not_govern(with_ungoverned_model,
                                                                                  production_stores):
    registry = with_ungoverned_model
    assert UNGOVERNED in {m.name for m in registry.list_models()}  # READ by default: the fleet shows it
    assert registry.model_aliases(UNGOVERNED) == {"production": "1"}
    for write in (lambda: registry.set_alias(UNGOVERNED, "production", "1"),
                  lambda: registry.set_alias(UNGOVERNED, "staging", "1"),
                  lambda: registry.set_version_tag(UNGOVERNED, "1", "tower_state", "x"),
                  lambda: registry.set_model_tag(UNGOVERNED, "tower_holder_staging", "1")):
        with pytest.raises(RegistryUnavailable, match="refused the request.*Permission denied") as caught:
            write()
        assert "MLFLOW_TRACKING_USERNAME" in caught.value.hint
        assert production_stores.service_password not in str(caught.value)
    assert registry.model_aliases(UNGOVERNED) == {"production": "1"}
    assert "tower_holder_staging" not in registry.model_tags(UNGOVERNED)


@pytest.mark.production
def test_wrong_credentials_are_refused_quickly_and_the_password_is_never_shown(demo_env, production_stores,
                                                                               monkeypatch):
    wrong = "not-the-password-" + production_stores.service_password[:6]
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", wrong)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="refused the request.*not authenticated") as caught:
        Registry(demo_env.mlflow_tracking_uri, timeout_s=5, max_retries=1).ping()
    assert time.monotonic() - started < 5  # a 401 is not retried
    assert wrong not in str(caught.value) and "MLFLOW_TRACKING_USERNAME" in caught.value.hint

    # A password put in the URI anyway (not how the tower should be configured) is masked.
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    in_uri = demo_env.mlflow_tracking_uri.replace("http://", f"http://{prod.SERVICE_USER}:{wrong}@")
    registry = Registry(in_uri, timeout_s=5, max_retries=1)
    assert wrong not in repr(registry)
    with pytest.raises(RegistryUnavailable, match="refused the request") as caught:
        registry.ping()
    assert wrong not in str(caught.value) and f"{prod.SERVICE_USER}:***@" in str(caught.value)


@pytest.fixture
def forget_outages() -> Iterator[None]:
    """The app's outage board is one per process and keyed on the store's address, not on the
    credentials: the refusal this module provokes must not greet the next module's pages."""
    from ui.backends import board

    yield
    board.clear()


@pytest.mark.production
def test_pages_say_the_registry_refused_them_without_a_traceback_or_the_password(demo_env, production_stores,
                                                                                 monkeypatch, forget_outages):
    wrong = "wrong-" + production_stores.service_password[:8]
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", wrong)
    # Credentials are not part of the settings the pages cache on: another timeout makes fresh keys.
    monkeypatch.setenv("TOWER_MLFLOW_TIMEOUT_S", "4")
    for page in ("app_pages/model.py", "app_pages/fleet.py"):
        at = open_page(page, model="credit-risk")
        assert not at.exception
        shown = texts(at)
        assert wrong not in shown and production_stores.service_password not in shown
        if page == "app_pages/model.py":  # nothing to show without the registry: it says why
            assert "refused" in shown and "MLFLOW_TRACKING_USERNAME" in shown, shown
