"""Cached access to the services for the pages.

Clients and engines are shared resources (one per URL); query results are cached for a minute,
keyed on the settings they were read with. Streamlit never caches an exception, so a page
recovers on its own when a backend returns. Nothing here depends on who is signed in; a cached
call that ever does must take the role as an argument (docs/ARCHITECTURE.md, layers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from sqlalchemy.engine import Engine

from services import wiring
from services.catalog import fleet
from services.errors import NotFound, RegistryUnavailable
from services.governance.context import GovernanceContext
from services.mapping import ModelMapping
from services.monitoring import (
    co_drift,
    data_quality,
    distributions,
    estimated_performance,
    multivariate,
    report,
    tower_reads,
)
from services.monitoring import health_chips as chips
from services.monitoring import week_changes as week_changes_of
from services.monitoring.config import monitoring_config
from services.monitoring.reference import ReferenceProfile, load_or_compute
from services.monitoring.registry_reference import (
    ResolvedReference,
    fallback_reference,
    production_version,
    reference_for,
)
from services.monitoring.results import WindowReport
from services.notify.config import notification_config
from services.notify.sender import deliver_soon
from services.outages import REGISTRY, TOWER, WAREHOUSE, OutageBoard
from services.segments import OVERALL
from services.settings import Settings
from services.stores.registry import Registry
from services.stores.registry_records import Lineage, ModelSummary, VersionInfo
from services.stores.warehouse import fleet_traffic as fleet_warehouse
from services.stores.warehouse import logs as warehouse
from ui.drift_views import heatmap_figure

TTL_S = 60
# What the cached reads key settings and mappings on: their digest (every field, the environment
# included), computed once per object, instead of Streamlit hashing the whole object tree on every
# call. Equal digests are equal objects, so no two different settings ever share an entry.
KEYS: dict[str | type[Any], Callable[[Any], Any]] = {Settings: lambda s: s.fingerprint,
                                                     ModelMapping: lambda m: m.fingerprint}
T = TypeVar("T")
_log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def board() -> OutageBoard:
    """One per process: an outage of a store is the same for every session."""
    return OutageBoard(cooldown_s=10)


def targets(s: Settings) -> dict[str, str]:
    return {REGISTRY: s.mlflow_tracking_uri, WAREHOUSE: s.warehouse_url, TOWER: s.tower_db_url}


def guarded(s: Settings, backend: str, fn: Callable[[], T]) -> T:
    """``fn`` through the outage board: fails at once while its store is known to be down."""
    return board().call(backend, targets(s), fn)


# Keyed on the stores the settings name, not on the whole object: every run reads the settings
# afresh, and a new key for the same stores would open new connection pools that are never closed.
@st.cache_resource(show_spinner=False, hash_funcs={Settings: lambda s: s.stores_key})
def stores(s: Settings) -> wiring.Backends:
    """One set of backends per set of stores, shared by every session: one registry client, one
    warehouse engine and one tower-state engine. Building it touches no store."""
    return wiring.Backends.from_settings(s)


def registry(s: Settings) -> Registry:
    return stores(s).registry


def engine(s: Settings) -> Engine:
    return stores(s).warehouse()


@st.cache_data(ttl=TTL_S, max_entries=16, show_spinner=False, hash_funcs=KEYS)
def list_models(s: Settings) -> list[ModelSummary]:
    return guarded(s, REGISTRY, lambda: registry(s).list_models())


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def get_model(s: Settings, name: str) -> ModelSummary:
    return guarded(s, REGISTRY, lambda: registry(s).get_model(name))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def list_versions(s: Settings, name: str) -> list[VersionInfo]:
    return guarded(s, REGISTRY, lambda: registry(s).list_versions(name))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def stage_holders(s: Settings, name: str) -> dict[str, VersionInfo | None]:
    return guarded(s, REGISTRY, lambda: registry(s).stage_holders(name, s.stage_aliases, legacy=s.use_legacy_stages))


@st.cache_data(ttl=TTL_S, max_entries=256, show_spinner=False, hash_funcs=KEYS)
def lineage(s: Settings, name: str, version: str) -> Lineage:
    return guarded(s, REGISTRY, lambda: registry(s).lineage(name, version))


@st.cache_data(ttl=TTL_S, max_entries=256, show_spinner=False, hash_funcs=KEYS)
def window_summary(s: Settings, mapping: ModelMapping, start: datetime, end: datetime) -> warehouse.WindowSummary:
    return guarded(s, WAREHOUSE, lambda: warehouse.window_summary(engine(s), mapping, start, end))


@st.cache_data(ttl=TTL_S, max_entries=256, show_spinner=False, hash_funcs=KEYS)
def traffic_by_day(s: Settings, mapping: ModelMapping, start: datetime, end: datetime) -> pd.DataFrame:
    return guarded(s, WAREHOUSE, lambda: warehouse.traffic_by_day(engine(s), mapping, start, end))


@st.cache_data(ttl=TTL_S, max_entries=128, show_spinner=False, hash_funcs=KEYS)
def latency_by_day(s: Settings, mapping: ModelMapping, start: datetime, end: datetime) -> pd.DataFrame:
    return guarded(s, WAREHOUSE, lambda: warehouse.latency_by_day(engine(s), mapping, start, end))


@st.cache_data(ttl=TTL_S, max_entries=128, show_spinner=False, hash_funcs=KEYS)
def latency_by_version(s: Settings, mapping: ModelMapping, start: datetime, end: datetime) -> pd.DataFrame:
    return guarded(s, WAREHOUSE, lambda: warehouse.latency_by_version(engine(s), mapping, start, end))


# The fleet page's one warehouse call: every model's window summary and requests per day, batched. Keyed
# on the names (the settings' digest covers their mappings), not on 200 mappings hashed one by one. A
# model whose log failed is left out, so its failure is not cached: the page reads it alone, every run.
@st.cache_data(ttl=TTL_S, max_entries=16, show_spinner=False, hash_funcs=KEYS)
def fleet_traffic(s: Settings, models: tuple[str, ...], start: datetime, end: datetime
                  ) -> dict[str, fleet.ModelTraffic]:
    mappings = [m for m in (s.model(name) for name in models) if m is not None]
    read = guarded(s, WAREHOUSE, lambda: fleet_warehouse.fleet_traffic(engine(s), mappings, start, end))
    return fleet.model_traffic(read, start, (end - start).days)


# The log's first and last prediction: what an empty window names instead of showing nothing. It
# moves only as predictions arrive, so the minute of caching the other reads have is plenty.
@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def log_bounds(s: Settings, mapping: ModelMapping) -> tuple[datetime, datetime] | None:
    return guarded(s, WAREHOUSE, lambda: warehouse.log_bounds(engine(s), mapping))


def governance(s: Settings) -> GovernanceContext:
    """The governance context over the shared backends. It holds clients, engines and policies,
    never who is acting."""
    return guarded(s, TOWER, lambda: stores(s).governance(s))


def tower(s: Settings) -> Engine:
    return stores(s).tower()


def notify_decisions(s: Settings) -> None:
    """Deliver the notifications owed (the decision just recorded among them) in a background thread;
    whatever fails stays in the outbox for ``monitor run``. Never raises: the decision is recorded."""
    try:
        config = notification_config(s)
        deliver_soon(tower(s), config.destinations(), retry=config.retry, public_url=config.public_url)
    except Exception:  # best effort by design (services.notify.sender.deliver_soon logs its own failures)
        _log.exception("Could not start delivering notifications after a decision")


# Monitoring: results come from the tower state; a window's report and a feature's distribution are
# pushed down to the warehouse against the kept reference profile.
@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def _resolved_for_version(s: Settings, mapping: ModelMapping, version: str | None) -> ResolvedReference:
    return guarded(s, WAREHOUSE, lambda: reference_for(s, registry(s), engine(s), mapping, version))


def resolved_reference(s: Settings, mapping: ModelMapping) -> ResolvedReference:
    """The model's configured reference, resolved from the registry when it says ``from_registry``.

    Which version is in production is asked on every call (one registry call, uncached), so the page load
    after a promotion already compares with the new version's training data; resolving that version (its
    dataset, table and digest check) is cached.
    """
    if mapping.reference.from_registry is None or mapping.reference.registry:
        return ResolvedReference(mapping)
    try:
        version = guarded(s, REGISTRY, lambda: production_version(s, registry(s), mapping.name))
    except (RegistryUnavailable, NotFound) as exc:
        return fallback_reference(mapping, f"The production version of {mapping.name} cannot be read from the "
                                           f"registry: {exc.message}")
    return _resolved_for_version(s, mapping, version)


def _reference_mapping(s: Settings, mapping: ModelMapping, start: datetime | None, end: datetime | None
                       ) -> ModelMapping:
    """The mapping a comparison reads its reference through: resolved when it is the configured one."""
    return resolved_reference(s, mapping).mapping if start is None and end is None else mapping


@st.cache_data(ttl=TTL_S, max_entries=32, show_spinner=False, hash_funcs=KEYS)
def _profile(s: Settings, mapping: ModelMapping, start: datetime | None, end: datetime | None) -> ReferenceProfile:
    return guarded(s, WAREHOUSE, lambda: load_or_compute(tower(s), engine(s), mapping, start, end))


def reference_profile(s: Settings, mapping: ModelMapping, start: datetime | None,
                      end: datetime | None) -> ReferenceProfile:
    return _profile(s, _reference_mapping(s, mapping, start, end), start, end)


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def window_report(s: Settings, mapping: ModelMapping, ref: tuple[datetime | None, datetime | None],
                  start: datetime, end: datetime) -> WindowReport:
    mapping = _reference_mapping(s, mapping, *ref)
    profile = reference_profile(s, mapping, *ref)
    pca = guarded(s, WAREHOUSE, lambda: multivariate.reconstruction_model(tower(s), engine(s), mapping, profile))
    ranges = guarded(s, WAREHOUSE, lambda: data_quality.reference_ranges(tower(s), engine(s), mapping, profile))
    # Whole days the job kept are summed instead of binned again (issue 16; services/monitoring/kept_days.py).
    return guarded(s, WAREHOUSE, lambda: report.window_report(
        engine(s), mapping, profile, start, end, rules=monitoring_config(s).rules_for(mapping.name), pca=pca,
        ranges=ranges, kept=stores(s).kept_days()))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def feature_distributions(s: Settings, mapping: ModelMapping, ref: tuple[datetime | None, datetime | None],
                          column: str, start: datetime, end: datetime) -> pd.DataFrame:
    mapping = _reference_mapping(s, mapping, *ref)
    profile = reference_profile(s, mapping, *ref)
    return guarded(s, WAREHOUSE, lambda: distributions.feature_distributions(
        engine(s), mapping, profile, column, start, end))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def drift_heatmap(s: Settings, model: str, start: datetime, end: datetime, segment: str = OVERALL) -> pd.DataFrame:
    return guarded(s, TOWER, lambda: tower_reads.drift_heatmap(tower(s), model, start, end, segment=segment))


# Derived from the cached heat map, the same for everybody: the pairwise correlations over every
# feature pair were a third of the drift page's CPU at each run (bench/RESULTS.md, protocol load).
@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def co_drifting_pairs(s: Settings, model: str, start: datetime, end: datetime,
                      segment: str = OVERALL) -> pd.DataFrame:
    return co_drift.co_drifting_pairs(drift_heatmap(s, model, start, end, segment))


# The heat map's pivots and Plotly figure were the drift page's next dearest step after the pairs
# (about 30 ms of CPU at each run; a cached copy unpickles in 8 ms): built once per heat map, for everybody.
@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def drift_heatmap_figure(s: Settings, model: str, start: datetime, end: datetime,
                         segment: str = OVERALL) -> go.Figure:
    return heatmap_figure(drift_heatmap(s, model, start, end, segment))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def reconstruction_over_time(s: Settings, model: str, start: datetime, end: datetime,
                             segment: str = OVERALL) -> pd.DataFrame:
    return guarded(s, TOWER, lambda: tower_reads.reconstruction_over_time(tower(s), model, start, end,
                                                                          segment=segment))


@st.cache_data(ttl=TTL_S, max_entries=256, show_spinner=False, hash_funcs=KEYS)
def latest_multivariate(s: Settings, model: str) -> tower_reads.LatestMultivariate | None:
    return guarded(s, TOWER, lambda: tower_reads.latest_multivariate(tower(s), model))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def fairness_over_time(s: Settings, model: str, start: datetime, end: datetime,
                       segment: str = OVERALL) -> pd.DataFrame:
    return guarded(s, TOWER, lambda: tower_reads.fairness_over_time(tower(s), model, start, end, segment=segment))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def performance_over_time(s: Settings, model: str, start: datetime, end: datetime,
                          segment: str = OVERALL) -> pd.DataFrame:
    return guarded(s, TOWER, lambda: tower_reads.performance_over_time(tower(s), model, start, end,
                                                                       segment=segment))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def estimated_performance_over_time(s: Settings, model: str, start: datetime, end: datetime,
                                    segment: str = OVERALL) -> pd.DataFrame:
    """CBPE estimates per day and metric, with their bands (services.monitoring.estimated_performance)."""
    return guarded(s, TOWER, lambda: estimated_performance.estimated_over_time(tower(s), model, start, end,
                                                                                segment=segment))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def latest_health(s: Settings, model: str) -> tower_reads.HealthVerdict:
    return guarded(s, TOWER, lambda: tower_reads.latest_health(tower(s), model))


@st.cache_data(ttl=TTL_S, max_entries=16, show_spinner=False, hash_funcs=KEYS)
def alerts(s: Settings, model: str | None, active_only: bool) -> pd.DataFrame:
    if active_only:
        return guarded(s, TOWER, lambda: tower_reads.open_alerts(tower(s), model))
    return guarded(s, TOWER, lambda: tower_reads.alert_history(tower(s), model))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def alert_span(s: Settings, model: str | None) -> tuple[datetime, datetime] | None:
    return guarded(s, TOWER, lambda: tower_reads.alert_span(tower(s), model))


@st.cache_data(ttl=TTL_S, max_entries=64, show_spinner=False, hash_funcs=KEYS)
def alert_history(s: Settings, model: str | None, start: datetime, end: datetime) -> pd.DataFrame:
    """The episodes opened in ``[start, end)``, open or resolved."""
    return guarded(s, TOWER, lambda: tower_reads.alert_history(tower(s), model, start, end))


@st.cache_data(ttl=TTL_S, max_entries=16, show_spinner=False, hash_funcs=KEYS)
def week_changes(s: Settings, models: tuple[str, ...], end: datetime) -> dict[str, week_changes_of.WeekChange]:
    """What changed since last week for the whole fleet (services.monitoring.week_changes)."""
    return guarded(s, TOWER, lambda: week_changes_of.week_changes(tower(s), models, end))


@st.cache_data(ttl=TTL_S, max_entries=16, show_spinner=False, hash_funcs=KEYS)
def fleet_findings(s: Settings, models: tuple[str, ...]) -> dict[str, chips.TowerFindings]:
    """Every model's open alerts and latest-window breaches, in four reads (the fleet's chips)."""
    return guarded(s, TOWER, lambda: chips.fleet_findings(tower(s), models))


@st.cache_data(ttl=TTL_S, max_entries=256, show_spinner=False, hash_funcs=KEYS)
def health_chips(s: Settings, model: str, extra: Mapping[str, chips.Finding]) -> tuple[chips.Chip, ...]:
    return guarded(s, TOWER, lambda: chips.health_chips(tower(s), model, extra))
