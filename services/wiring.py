"""The one place that builds the backends from the settings (DESIGN.md §2).

The app (``app_pages/cached.py``, which keeps the results in ``st.cache_resource``), the CLI
(``services.governance.commands``, ``services.monitoring.commands``) and the monitoring job all
build their registry client, engines and governance context here, so a promotion requested by CI
sees the same evidence sources as one requested in the browser.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from services import tower_db
from services import warehouse as warehouse_db
from services.errors import TowerError
from services.governance.context import GovernanceContext
from services.monitoring.views import TowerMonitoringEvidence
from services.registry import Registry
from services.settings import Settings


def registry(settings: Settings) -> Registry:
    """The MLflow registry client (``MLFLOW_TRACKING_URI``) with the configured timeout and retries."""
    return Registry(settings.mlflow_tracking_uri, timeout_s=settings.mlflow_timeout_s,
                    max_retries=settings.mlflow_max_retries)


def tower_engine(settings: Settings, *, create_schema: bool = False) -> Engine:
    """An engine on the tower state (``TOWER_DB_URL``); its tables are created first if ``create_schema``."""
    engine = tower_db.make_tower_engine(settings.tower_db_url)
    if create_schema:
        try:
            tower_db.create_schema(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine


def warehouse_engine(settings: Settings) -> Engine:
    """A read-only engine on the warehouse (``WAREHOUSE_URL``); WarehouseUnavailable if it cannot be opened."""
    return warehouse_db.make_engine(settings.warehouse_url, connect_timeout_s=settings.warehouse_timeout_s,
                                    statement_timeout_s=settings.warehouse_statement_timeout_s)


def governance_context(settings: Settings, *, create_schema: bool = True) -> GovernanceContext:
    """The governance context every caller uses: the registry, the tower state, the warehouse (latency
    evidence; None when it cannot be opened, which the evidence reports as "no data") and the stored
    monitoring results over the tower state (drift and fairness evidence)."""
    engine = tower_engine(settings, create_schema=create_schema)
    try:
        warehouse: Engine | None = warehouse_engine(settings)
    except TowerError:
        warehouse = None  # latency evidence says why: "no data"
    return GovernanceContext(settings=settings, registry=registry(settings), engine=engine, warehouse=warehouse,
                             monitoring=TowerMonitoringEvidence(engine))
