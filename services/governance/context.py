"""What the governance services work on: settings, the registry, the tower state, the evidence sources.

Get it from ``services.wiring.Backends.governance()`` (the app keeps one Backends per settings in
``st.cache_resource``; the CLI builds one per command) and pass it as the first argument of every
governance service function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.engine import Engine

from services.auth.directory import Directory
from services.governance.policy import Policy, policies
from services.governance.validation import InvalidInput
from services.settings import Settings
from services.stores.registry import Registry


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
    # Who holds which rights now: None means the one tower.yaml's auth.directory configures, if any
    # (approver_rights.directory_for). A decision sets one that remembers its answers for its duration.
    directory: Directory | None = None

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
        return policies(self.settings).for_model(model)

    def now(self) -> datetime:
        now = self.clock()
        return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
