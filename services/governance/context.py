"""What the governance services work on: settings, the registry, the tower state, the evidence sources.

Build one per process (``GovernanceContext.from_settings``; a page keeps it in
``st.cache_resource``) and pass it as the first argument of every governance service function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.engine import Engine

from services.errors import TowerError
from services.governance.policy import Policy
from services.governance.validation import InvalidInput
from services.registry import Registry
from services.settings import Settings


class MonitoringEvidence(Protocol):
    """Drift and fairness for the evidence, from the monitoring subsystem. None means no data."""

    def latest_drift_share(self, model: str, version: str) -> float | None:
        """Share of the version's features whose latest drift check alerted (0..1)."""

    def latest_fairness_dpd(self, model: str) -> float | None:
        """The model's latest demographic parity difference (worst sensitive attribute)."""


def utc_now() -> datetime:
    """The server clock, UTC (never the browser's)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class GovernanceContext:
    settings: Settings
    registry: Registry
    engine: Engine  # tower state (TOWER_DB_URL)
    warehouse: Engine | None = None  # prediction logs, for latency evidence (None: no data)
    monitoring: MonitoringEvidence | None = None  # drift and fairness (None: no data)
    clock: Callable[[], datetime] = field(default=utc_now)

    @classmethod
    def from_settings(cls, settings: Settings, *, monitoring: MonitoringEvidence | None = None,
                      create_schema: bool = True) -> GovernanceContext:
        from services import tower_db
        from services.warehouse import make_engine

        engine = tower_db.make_tower_engine(settings.tower_db_url)
        if create_schema:
            tower_db.create_schema(engine)
        try:
            warehouse: Engine | None = make_engine(
                settings.warehouse_url, connect_timeout_s=settings.warehouse_timeout_s,
                statement_timeout_s=settings.warehouse_statement_timeout_s)
        except TowerError:
            warehouse = None  # latency evidence says why: "no data"
        registry = Registry(settings.mlflow_tracking_uri, timeout_s=settings.mlflow_timeout_s,
                            max_retries=settings.mlflow_max_retries)
        return cls(settings=settings, registry=registry, engine=engine, warehouse=warehouse, monitoring=monitoring)

    def stage_name(self, text: str) -> str:
        """The configured stage a user typed ("production", "Production" or its alias)."""
        wanted = str(text).strip().lower()
        for stage, alias in self.settings.stage_aliases.items():
            if wanted in (stage.lower(), alias.lower()):
                return stage
        raise InvalidInput(f"Unknown stage {text!r}; the stages are {', '.join(self.settings.stage_aliases)}.")

    def current_holders(self, model: str) -> dict[str, str | None]:
        """Stage -> the version holding it in the registry now (alias, or legacy stage)."""
        stages = self.settings.stage_aliases
        if self.settings.use_legacy_stages:
            holders = self.registry.stage_holders(model, stages, legacy=True)
            return {stage: (None if info is None else info.version) for stage, info in holders.items()}
        aliases = self.registry.model_aliases(model)
        return {stage: aliases.get(alias) for stage, alias in stages.items()}

    def policy(self, model: str) -> Policy:
        return self.settings.policies.for_model(model)

    def now(self) -> datetime:
        now = self.clock()
        return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
