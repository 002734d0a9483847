"""The fleet overview: every registered model on one row, from the registry and the warehouse.

The fetchers are passed in, so the page can hand over its cached calls: a failure then is never
cached, and one model's broken log table costs only that model's row, not the page. The whole fleet's
traffic and tower findings come in one call each (``load_traffic``, ``load_findings``): a fleet of 200
is a few statements, not a thousand; a model the fleet's call could not read falls back to its own
per-model loaders, which raise its own error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from services.errors import TowerError
from services.mapping import ModelMapping
from services.monitoring.health_chips import Chip, Finding, TowerFindings, chips_from, worst
from services.monitoring.tower_reads import HealthVerdict
from services.monitoring.week_changes import WeekChange
from services.settings import Settings
from services.stores.registry_records import ModelSummary
from services.stores.warehouse.fleet_traffic import FleetTraffic
from services.stores.warehouse.logs import WindowSummary

# Status words shown in the fleet table, worst first, so sorting by status surfaces problems.
BREACH, UNAVAILABLE, NO_TRAFFIC, OK, UNMONITORED = "SLO breach", "log unavailable", "no traffic", "ok", "not monitored"


@dataclass(frozen=True)
class FleetRow:
    model: str
    owner: str | None
    description: str
    production: str | None
    staging: str | None
    last_change: datetime | None
    requests_7d: int | None
    traffic_by_day: tuple[int, ...]
    p95_ms: float | None
    slo_p95_ms: float | None
    error_rate: float | None
    slo_error_rate: float | None
    status: str
    health: str  # the worst of the chips (or the latest monitoring results): ok / warning / alert / unknown
    health_reasons: tuple[str, ...]
    problem: str | None  # what is wrong with this row's data, in words, if anything
    chips: tuple[Chip, ...] = ()  # health per dimension, each with the page that explains it
    since_last_week: str | None = None  # "2 new alerts · p95 +40 % · drift share +25 pp" (week_changes.py)


@dataclass(frozen=True)
class ModelTraffic:
    """One model's fleet window: its summary and requests per day (zero-filled, oldest first)."""

    summary: WindowSummary
    daily: tuple[int, ...]


@dataclass(frozen=True)
class FleetOverview:
    rows: tuple[FleetRow, ...]
    registry_error: TowerError | None


def latency_status(summary: WindowSummary, mapping: ModelMapping) -> str:
    """Whether a window of traffic meets the model's SLO; no traffic is a status of its own."""
    if summary.requests == 0:
        return NO_TRAFFIC
    slo = mapping.slo
    if slo.latency_p95_ms is not None and summary.p95_ms is not None and summary.p95_ms > slo.latency_p95_ms:
        return BREACH
    if slo.error_rate is not None and summary.error_rate is not None and summary.error_rate > slo.error_rate:
        return BREACH
    return OK


def slo_findings(summary: WindowSummary, mapping: ModelMapping, start: datetime | None) -> dict[str, Finding]:
    """The fleet window's own SLO breaches as chip findings (latency and errors)."""
    onset = start or datetime(1970, 1, 1)
    slo, found = mapping.slo, {}
    if slo.latency_p95_ms is not None and summary.p95_ms is not None and summary.p95_ms > slo.latency_p95_ms:
        found["latency"] = Finding("latency", "alert", "", onset,
                                   f"p95 latency {summary.p95_ms:.0f} ms over the {slo.latency_p95_ms:.0f} ms SLO "
                                   "in the last 7 days.", summary.p95_ms / slo.latency_p95_ms)
    if slo.error_rate is not None and summary.error_rate is not None and summary.error_rate > slo.error_rate:
        found["errors"] = Finding("errors", "alert", "", onset,
                                  f"Error rate {summary.error_rate:.2%} over the {slo.error_rate:.2%} SLO in the "
                                  "last 7 days.", summary.error_rate / slo.error_rate if slo.error_rate else 0.0)
    return found


def _registry_placeholder(name: str) -> ModelSummary:
    """A row for a configured model when the registry cannot be read: the logs still tell a lot."""
    return ModelSummary(name=name, description="", owner=None, tags={}, aliases={}, latest_version=None,
                        version_count=0, last_updated=None)


def fleet_overview(
    settings: Settings,
    load_models: Callable[[], list[ModelSummary]],
    load_summary: Callable[[ModelMapping], WindowSummary],
    load_daily_requests: Callable[[ModelMapping], list[int]],
    load_health: Callable[[str], HealthVerdict] | None = None,
    load_findings: Callable[[tuple[str, ...]], Mapping[str, TowerFindings]] | None = None,
    window_start: datetime | None = None,
    load_changes: Callable[[tuple[str, ...]], Mapping[str, WeekChange]] | None = None,
    load_traffic: Callable[[tuple[ModelMapping, ...]], Mapping[str, ModelTraffic]] | None = None,
) -> FleetOverview:
    """One row per registered model (plus configured models missing from the registry).

    ``load_traffic`` is called once with every monitored model's mapping; a model missing from its answer
    (or every model, when it raises) is read with ``load_summary`` and ``load_daily_requests``. With
    ``load_findings`` (called once, every monitored model) the row's health is the worst of its chips,
    and the fleet's own SLO window feeds the latency and errors chips, so Health and the SLO status never
    disagree. ``load_changes`` is called once for every monitored model (what changed since last week,
    from the stored results)."""
    registry_error: TowerError | None = None
    try:
        models = load_models()
    except TowerError as exc:
        registry_error = exc
        models = [_registry_placeholder(name) for name in sorted(settings.models)]
    known = {m.name for m in models}
    if registry_error is None:
        # A mapped model the registry does not know is a configuration mistake worth a row.
        models += [_registry_placeholder(n) for n in sorted(settings.models) if n not in known]

    changes: Mapping[str, WeekChange] = {}
    monitored = tuple(m.name for m in models if settings.model(m.name) is not None)
    if load_changes is not None and monitored:
        try:  # one read for the whole fleet; without it the rows still show everything else
            changes = load_changes(monitored)
        except TowerError:
            changes = {}
    traffic: Mapping[str, ModelTraffic] = {}
    mapped = tuple(m for m in (settings.model(name) for name in monitored) if m is not None)
    if load_traffic is not None and mapped:
        try:  # one call for the whole fleet; whatever it lacks is read model by model below
            traffic = load_traffic(mapped)
        except TowerError:
            traffic = {}
    findings: Mapping[str, TowerFindings] = {}
    findings_error: TowerError | None = None
    if load_findings is not None and monitored:
        try:
            findings = load_findings(monitored)
        except TowerError as exc:
            findings_error = exc
    prod_alias = settings.stage_aliases.get("Production", "production")
    staging_alias = settings.stage_aliases.get("Staging", "staging")
    rows = []
    for model in models:
        mapping = settings.model(model.name)
        summary: WindowSummary | None = None
        daily: list[int] = []
        problem: str | None = None
        if registry_error is None and model.name not in known:
            problem = f"Configured in tower.yaml but not in the registry ({settings.mlflow_tracking_uri})."
        reasons: tuple[str, ...]
        health, reasons = "unknown", ()
        if mapping is not None and load_health is not None:
            try:
                verdict = load_health(model.name)
                health, reasons = verdict.status, verdict.reasons
            except TowerError as exc:
                reasons = (exc.message,)
        if mapping is None:
            status = UNMONITORED
        else:
            try:
                read = traffic.get(model.name)
                if read is not None:
                    summary, daily = read.summary, list(read.daily)
                else:
                    summary = load_summary(mapping)
                    daily = load_daily_requests(mapping)
                status = latency_status(summary, mapping)
            except TowerError as exc:
                status, problem = UNAVAILABLE, exc.message
        chips: tuple[Chip, ...] = ()
        if mapping is not None and load_findings is not None:
            if findings_error is not None:
                reasons = (findings_error.message,)
            else:
                found = findings.get(model.name, TowerFindings((), monitored=False))
                chips = chips_from(model.name, found.findings, monitored=found.monitored,
                                   extra=slo_findings(summary, mapping, window_start) if summary else {})
                health = worst(c.status for c in chips)
                reasons = tuple(c.text for c in chips if c.status == health and health in ("alert", "warning"))
        rows.append(FleetRow(
            model=model.name,
            owner=model.owner,
            description=model.description,
            production=model.aliases.get(prod_alias),
            staging=model.aliases.get(staging_alias),
            last_change=model.last_updated,
            requests_7d=summary.requests if summary else None,
            traffic_by_day=tuple(daily),
            p95_ms=summary.p95_ms if summary else None,
            slo_p95_ms=mapping.slo.latency_p95_ms if mapping else None,
            error_rate=summary.error_rate if summary else None,
            slo_error_rate=mapping.slo.error_rate if mapping else None,
            status=status,
            health=health,
            health_reasons=tuple(reasons),
            problem=problem,
            chips=chips,
            since_last_week=changes[model.name].describe() if model.name in changes else None,
        ))
    return FleetOverview(rows=tuple(rows), registry_error=registry_error)


def model_traffic(read: FleetTraffic, start: datetime, days: int) -> dict[str, ModelTraffic]:
    """The fleet's batched read as rows: each model read, its requests per day over ``days`` days from
    ``start`` zero-filled (as :func:`requests_per_day`). The models it failed on are left out."""
    first = pd.Timestamp(start).normalize().to_pydatetime()
    index = [first + timedelta(days=d) for d in range(days)]
    return {name: ModelTraffic(summary, tuple(int(read.requests_by_day.get(name, {}).get(day, 0)) for day in index))
            for name, summary in read.summaries.items()}


def requests_per_day(traffic: pd.DataFrame, start: datetime, days: int) -> list[int]:
    """Requests per day over ``days`` days from ``start``, zero-filled, for a sparkline."""
    per_day = traffic.groupby("day")["requests"].sum() if len(traffic) else pd.Series(dtype="int64")
    index = pd.date_range(pd.Timestamp(start).normalize(), periods=days, freq="D")
    return [int(v) for v in per_day.reindex(index, fill_value=0).tolist()]
