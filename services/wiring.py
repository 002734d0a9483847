"""The one place that builds the backends from the settings.

Every entry point goes through here: the app (``ui/backends.py`` keeps one :class:`Backends` per
settings in ``st.cache_resource``), the CLI, the monitoring job and the benchmarks. So each process
holds one registry client, one warehouse engine and one tower-state engine, and a promotion
requested by CI sees the same evidence sources as one requested in the browser.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from services.auth.directory import directory_of
from services.auth.identity import actor_from_claims, auth_config
from services.demo.identities import DEMO_USERS
from services.errors import TowerError
from services.governance.context import GovernanceContext
from services.governance.policy import Person, check_satisfiable, policies
from services.monitoring import reference_sources
from services.monitoring.config import monitoring_config
from services.monitoring.evidence import TowerMonitoringEvidence
from services.monitoring.kept_days import KeptDays
from services.notify.config import notification_config
from services.settings import PROJECT_ROOT, Settings
from services.settings import load_settings as read_settings
from services.stores import tower_db
from services.stores.registry import Registry
from services.stores.warehouse import engine as warehouse_db
from services.stores.warehouse import resources as warehouse_resources


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings, with every feature's section of tower.yaml parsed now: a bad one is refused at start.

    From the process environment (``environ`` None, as the app reads them at every script run) the
    same settings object comes back while neither the environment nor tower.yaml has changed
    (its path, size, modification time and inode): parsing and checking tower.yaml cost every page
    run a few milliseconds of the one core all sessions share. An edit is read at the next run.
    """
    if environ is not None:
        return _load(environ)
    env = dict(os.environ)
    key = (tuple(sorted(env.items())), _config_stamp(env))
    with _SETTINGS_LOCK:
        kept = _SETTINGS.get(key)
    if kept is not None:
        return kept
    settings = _load(env)  # a ConfigError is raised, never kept: the next run reads again
    with _SETTINGS_LOCK:
        if len(_SETTINGS) >= 4:
            _SETTINGS.clear()
        _SETTINGS[key] = settings
    return settings


_SETTINGS: dict[tuple[object, ...], Settings] = {}
_SETTINGS_LOCK = threading.Lock()


def _config_stamp(env: Mapping[str, str]) -> tuple[object, ...] | None:
    path = env.get("TOWER_CONFIG") or str(PROJECT_ROOT / "tower.yaml")
    try:
        stat = os.stat(path)
    except OSError:
        return (path, None)
    return (path, stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _load(environ: Mapping[str, str]) -> Settings:
    settings = read_settings(environ)
    auth = auth_config(settings)
    directory_of(settings)  # a directory configured without its token is refused now, not at a decision
    rules = policies(settings)
    monitoring_config(settings)
    settings.parsed(reference_sources.SECTION, reference_sources.parse_reference_sources)
    settings.parsed(warehouse_resources.SECTION, warehouse_resources.parse_warehouse_resources)
    notification_config(settings)
    # In the demo the identity provider and its people are known, so every policy must be one they can
    # meet. A config that maps none of their groups to roles is not about those people: not checked.
    if settings.demo and auth.role_mapping:
        people = [Person(u.sub, actor_from_claims({"iss": "demo", **u.claims()}, auth).roles) for u in DEMO_USERS]
        check_satisfiable(rules, sorted({*settings.models, *rules.per_model}), people)
    return settings


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
    resources = settings.parsed(warehouse_resources.SECTION, warehouse_resources.parse_warehouse_resources)
    return warehouse_db.make_engine(settings.warehouse_url, connect_timeout_s=settings.warehouse_timeout_s,
                                    statement_timeout_s=settings.warehouse_statement_timeout_s,
                                    duckdb_config=resources.duckdb_config())


@dataclass
class Backends:
    """One registry client, one tower-state engine and (once it opens) one warehouse engine.

    Building it touches no store: the tower schema is created on first use of :meth:`tower` and the
    warehouse engine opened on first use of :meth:`warehouse`, each tried again after a failure. So
    an outage of one store never keeps the pages that only need another from working.
    """

    settings: Settings
    registry: Registry
    _tower: Engine
    _create_schema: bool = True
    _schema_ready: bool = False
    _warehouse: Engine | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, create_schema: bool = True) -> Backends:
        return cls(settings=settings, registry=registry(settings), _tower=tower_engine(settings),
                   _create_schema=create_schema)

    def tower(self) -> Engine:
        """The tower-state engine, its tables created (or upgraded) on first use."""
        with self._lock:
            if self._create_schema and not self._schema_ready:
                tower_db.create_schema(self._tower)
                self._schema_ready = True
        return self._tower

    def warehouse(self) -> Engine:
        """The warehouse engine; WarehouseUnavailable while it cannot be opened."""
        with self._lock:
            if self._warehouse is None:
                self._warehouse = warehouse_engine(self.settings)
            return self._warehouse

    def governance(self, settings: Settings | None = None) -> GovernanceContext:
        """The governance context: registry, tower state, latency evidence from the warehouse (None
        while it cannot be opened, which the evidence reports as "no data") and the stored monitoring
        results (drift and fairness evidence). Cheap: it only bundles the shared clients.

        ``settings`` (naming the same stores) supplies the policies, so an edited tower.yaml reaches
        the next decision while the engines stay shared."""
        tower = self.tower()
        try:
            warehouse: Engine | None = self.warehouse()
        except TowerError:
            warehouse = None
        return GovernanceContext(settings=settings or self.settings, registry=self.registry, engine=tower,
                                 warehouse=warehouse, monitoring=TowerMonitoringEvidence(
                                     tower, settings=settings or self.settings, registry=self.registry,
                                     warehouse=warehouse))

    def kept_days(self) -> KeptDays:
        """The daily aggregates the job kept, which a window report of whole days sums (issue 16). The tower
        state is opened when they are read; while it cannot be, the report is computed from the warehouse."""
        return KeptDays(self.tower)

    def close(self) -> None:
        self._tower.dispose()
        if self._warehouse is not None:
            self._warehouse.dispose()


def governance_context(settings: Settings, *, create_schema: bool = True) -> GovernanceContext:
    """The governance context of fresh backends (for a one-shot command)."""
    return Backends.from_settings(settings, create_schema=create_schema).governance()
