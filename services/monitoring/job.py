"""The monitoring job: daily windows of every model, written to ``monitoring_results``, then alerts.

``tower monitor run [--model NAME] [--since DATE]`` calls `run_monitoring`. First the
warehouse must hold every mapped table and column of the models to run: one MappingError names all
that are missing, before anything is computed or written. Then per model:

1. the reference profile is loaded from tower state (computed and kept the first time);
2. the days to (re)compute are chosen: from ``--since``, else from the last stored window, or
   earlier if a stored window is still provisional (labels arriving) or used another reference;
   on the first run ``backfill_days`` back from the log's last day. Never before the log's first
   day, never after its last;
3. the days are aggregated in chunks of ``chunk_days`` with one set of statements per chunk,
   grouped by day and version (about seven warehouse round trips per chunk, whatever its size);
4. each chunk's windows are replaced in one transaction (delete, then insert): re-running gives the
   same rows, never duplicates;
5. alert episodes are derived again and new ones are owed to the alert webhook and delivered
   (``services.monitoring.alerts``, ``services.notify``); ``monitor run`` then delivers whatever else
   is due, promotions included (``services.notify.sender.deliver_due``).

Windows are UTC days ``[00:00, 24:00)``. Results exist for all versions together (``version = '*'``)
and for each version that served in the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from services.errors import ConfigError, MappingError, NotFound, TowerStateUnavailable, WarehouseUnavailable
from services.mapping import ModelMapping
from services.monitoring import data_quality, kept_days, multivariate
from services.monitoring.alerts import AlertSummary, evaluate_alerts
from services.monitoring.config import MonitoringConfig, monitoring_config
from services.monitoring.estimated_performance import calibration_for
from services.monitoring.reference import ReferenceProfile, load_or_compute
from services.monitoring.registry_reference import reference_for
from services.monitoring.report import WindowAggregates, build_report, fetch_aggregates
from services.monitoring.store import ALL_VERSIONS, monitoring_results
from services.notify.config import ALERTS, NotificationConfig, notification_config
from services.segments import OVERALL
from services.stores.warehouse.logs import log_bounds
from services.stores.warehouse.mapping_check import check_mappings

_VERSION_MAX, _SLICE_VALUE_MAX = 255, 1000  # the column sizes of monitoring_results (a log may hold anything)
Progress = Callable[[str, int, int], None]
"""Called as ``progress(model, days_done, days_total)`` after each chunk."""


@dataclass(frozen=True)
class ModelRun:
    """What one model's run did."""

    model: str
    first_day: date | None
    last_day: date | None
    windows: int
    results: int
    seconds: float
    reference_id: str | None
    alerts: AlertSummary | None
    note: str | None = None  # why nothing was computed, if nothing was
    error: str | None = None  # the model could not be monitored (the others still were)
    segment_errors: tuple[str, ...] = ()  # segments that could not be monitored (the rest was)
    reference: str | None = None  # which registry dataset the reference is, or why it fell back (from_registry)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _tower_failed(exc: sa_exc.DBAPIError) -> TowerStateUnavailable:
    return TowerStateUnavailable(f"The tower state cannot be written: {str(exc.orig).splitlines()[0]}",
                                 "Check TOWER_DB_URL.")


def choose_days(tower: Engine, mapping: ModelMapping, profile: ReferenceProfile, bounds: tuple[datetime, datetime],
                config: MonitoringConfig, *, since: date | None = None, until: date | None = None
                ) -> tuple[date, date] | None:
    """The first and last day to compute (see the module docstring), or None when there is none."""
    first_log, last_log = bounds[0].date(), bounds[1].date()
    last = min(until, last_log) if until else last_log
    if since is None:
        backfill_start = last - timedelta(days=config.backfill_days - 1)
        r = monitoring_results.c
        mine = sa.and_(r.model == mapping.name, r.segment == _segment_name(mapping), r.version == ALL_VERSIONS,
                       r.window_start >= _midnight(backfill_start))
        with tower.connect() as conn:
            latest = conn.execute(sa.select(sa.func.max(r.window_start)).where(mine)).scalar()
            provisional = conn.execute(sa.select(sa.func.min(r.window_start)).where(
                mine, r.metric == "provisional", r.value == 1.0)).scalar()
            stale = conn.execute(sa.select(sa.func.min(r.window_start)).where(
                mine, r.metric == "drift_score", r.reference_id != profile.reference_id)).scalar()
        candidates = [d.date() if isinstance(d, datetime) else d for d in (latest, provisional, stale) if d is not None]
        since = min(candidates) if candidates else backfill_start
    first = max(since, first_log)
    return None if first > last else (first, last)


def _reports_rows(mapping: ModelMapping, profile: ReferenceProfile, config: MonitoringConfig, day: date,
                  groups: dict[str | None, WindowAggregates],
                  multivariate_of: dict[str | None, multivariate.MultivariateResult] | None = None,
                  ranges: data_quality.Ranges | None = None, outside_of: dict[str | None, dict[str, int]] | None = None
                  ) -> list[dict[str, Any]]:
    """Result rows of one day: all versions, then each version; a day without traffic gets a zero."""
    start, end = _midnight(day), _midnight(day + timedelta(days=1))
    rules = config.rules_for(mapping.name)
    if None not in groups:
        base = {"version": ALL_VERSIONS, "slice_key": "", "slice_value": "", "column_name": "", "method": "",
                "threshold": None, "alert": None, "reference_id": None, "value": 0.0,
                "lower": None, "upper": None, "noise": None}
        return [{**base, "metric": "rows"}, {**base, "metric": "requests"}]
    rows: list[dict[str, Any]] = []
    for version in sorted(groups, key=lambda v: (v is not None, v or "")):
        outside = None if outside_of is None else outside_of.get(version, {})  # data quality: out-of-range counts
        # Drift intervals (issue 15): every window where the verdict mode judges them (beyond_noise, material);
        # in the fixed mode the all-versions windows only, which the drift page and the report read. Bounding
        # each version's windows too would triple a backfill for verdicts that do not use them
        # (bench/RESULTS.md, "Drift intervals").
        report = build_report(mapping, profile, groups[version], start=start, end=end, version=version, rules=rules,
                              ranges=ranges, outside=outside, intervals=version is None)
        if multivariate_of and version in multivariate_of:  # multivariate drift (monitoring/multivariate.py)
            report = replace(report, multivariate=multivariate_of[version])
        rows += report.result_rows()
    return rows


def _segment_name(mapping: ModelMapping) -> str:
    return OVERALL if mapping.segment is None else mapping.segment.name


def write_windows(tower: Engine, model: str, windows: dict[date, list[dict[str, Any]]], computed_at: datetime,
                  *, segment: str = OVERALL, kept: list[dict[str, Any]] | None = None) -> int:
    """Replace the results of these daily windows (of one segment) in one transaction; the rows written.

    In the same transaction the kept aggregates of these days are replaced by ``kept`` (issue 16): a day
    recomputed without a row there (not over yet, no traffic) is no longer kept."""
    r = monitoring_results.c
    records = [{**row, "model": model, "window_start": _midnight(day), "window_end": _midnight(day + timedelta(days=1)),
                "segment": segment, "computed_at": computed_at, "version": row["version"][:_VERSION_MAX],
                "slice_value": row["slice_value"][:_SLICE_VALUE_MAX]}
               for day, rows in windows.items() for row in rows]
    for attempt in range(3):
        try:
            with tower.begin() as conn:
                conn.execute(sa.delete(monitoring_results).where(
                    r.model == model, r.segment == segment, r.window_start.in_([_midnight(d) for d in windows])))
                if records:
                    conn.execute(sa.insert(monitoring_results), records)
                kept_days.replace_days(conn, model, segment, windows, kept or [])
            return len(records)
        except sa_exc.IntegrityError as exc:
            # Another run wrote the same windows between our delete and insert (PostgreSQL, READ
            # COMMITTED): delete theirs and insert again; both computed the same numbers.
            if attempt == 2:
                raise _tower_failed(exc) from exc
        except sa_exc.DBAPIError as exc:
            raise _tower_failed(exc) from exc
    return len(records)


def _days_to_keep(per_day: dict[date, dict[str | None, WindowAggregates]], now: datetime
                  ) -> dict[date, WindowAggregates]:
    """The all-versions aggregates worth keeping (issue 16): those of days that are over by the clock.
    Provisional days too: a report reads fairness and performance (what arriving labels change) from the
    log again, and the next run recomputes them anyway. Rows logged late into a kept day are caught when
    it is read (the window's row count differs: computed from SQL). A day without traffic is not kept: a
    window over it is computed from SQL. Latency and CBPE cells are left out (neither is kept)."""
    keep = {}
    for day, groups in per_day.items():
        whole = groups.get(None)
        if whole is not None and _midnight(day + timedelta(days=1)) <= now:
            keep[day] = replace(whole, latency=None, estimated=None)
    return keep


def _run_population(warehouse: Engine, tower: Engine, mapping: ModelMapping, config: MonitoringConfig,
                    bounds: tuple[datetime, datetime], *, since: date | None, until: date | None,
                    progress: Progress | None, chunk_days: int, refresh_reference: bool, now: datetime
                    ) -> tuple[ReferenceProfile, tuple[date, date] | None, int, int]:
    """Compute and store the daily windows of one population (the whole log, or one segment of it):
    its profile, the days computed (None: none), the windows and the result rows written."""
    profile = load_or_compute(tower, warehouse, mapping, refresh=refresh_reference)
    pca = multivariate.reconstruction_model(tower, warehouse, mapping, profile, refresh=refresh_reference)
    # CBPE: the reference's calibration map, kept beside the profile (None: no estimate for this model)
    calibration = calibration_for(tower, warehouse, mapping, profile, refresh=refresh_reference)
    # data quality: the reference's value ranges, kept beside the profile (services/monitoring/data_quality.py)
    ranges = data_quality.reference_ranges(tower, warehouse, mapping, profile, refresh=refresh_reference)
    days = choose_days(tower, mapping, profile, bounds, config, since=since, until=until)
    if days is None:
        return profile, None, 0, 0
    first, last = days
    total = (last - first).days + 1
    label = mapping.name if mapping.segment is None else f"{mapping.name} / {mapping.segment.name}"
    done = results = 0
    if progress:
        progress(label, 0, total)
    chunk_start = first
    while chunk_start <= last:
        chunk_end = min(chunk_start + timedelta(days=chunk_days - 1), last)
        aggregates = fetch_aggregates(warehouse, mapping, profile, _midnight(chunk_start),
                                      _midnight(chunk_end + timedelta(days=1)), by_day=True, by_version=True,
                                      calibration=calibration)
        errors = multivariate.window_results(warehouse, mapping, pca, _midnight(chunk_start),
                                             _midnight(chunk_end + timedelta(days=1)), by_day=True, by_version=True)
        outside = data_quality.window_outside(warehouse, mapping, ranges, _midnight(chunk_start),
                                              _midnight(chunk_end + timedelta(days=1)), by_day=True, by_version=True)
        per_day_dq: dict[date, dict[str | None, dict[str, int]]] = {}
        per_day: dict[date, dict[str | None, WindowAggregates]] = {}
        per_day_mv: dict[date, dict[str | None, multivariate.MultivariateResult]] = {}
        day: date | None  # a group's day (datetime or None), then each day of the chunk
        for (day, version), counts in outside.items():
            if day is not None:
                per_day_dq.setdefault(day.date(), {})[version] = counts
        for (day, version), agg in aggregates.items():
            if day is not None:
                per_day.setdefault(day.date(), {})[version] = agg
        for (day, version), found in errors.items():
            if day is not None:
                per_day_mv.setdefault(day.date(), {})[version] = found
        windows = {}
        day = chunk_start
        while day <= chunk_end:
            windows[day] = _reports_rows(mapping, profile, config, day, per_day.get(day, {}), per_day_mv.get(day),
                                         ranges, per_day_dq.get(day, {}))
            day += timedelta(days=1)
        keep = _days_to_keep(per_day, now)
        results += write_windows(tower, mapping.name, windows, now, segment=_segment_name(mapping),
                                 kept=kept_days.kept_rows(mapping, profile, keep, now))
        done += len(windows)
        if progress:
            progress(label, done, total)
        chunk_start = chunk_end + timedelta(days=1)
    return profile, days, done, results


def run_model(warehouse: Engine, tower: Engine, mapping: ModelMapping, config: MonitoringConfig, *,
              since: date | None = None, until: date | None = None, progress: Progress | None = None,
              chunk_days: int = 7, refresh_reference: bool = False, now: datetime | None = None,
              notify: NotificationConfig | None = None) -> ModelRun:
    """Compute, store and alert on one model's daily windows: the whole log, then each segment (alerts go
    to ``notify``'s alert destination; without ``notify``, to ``config.webhook_url`` as generic JSON)."""
    started = time.perf_counter()
    now = now or _now()
    overall = mapping.for_segment(None)
    bounds = log_bounds(warehouse, overall)
    rules = config.rules_for(mapping.name)

    def finish(profile: ReferenceProfile | None, days: tuple[date, date] | None, windows: int, results: int,
               note: str | None, segment_errors: tuple[str, ...] = ()) -> ModelRun:
        if notify is None:
            alerts = evaluate_alerts(tower, overall, rules, webhook_url=config.webhook_url,
                                     timeout_s=config.webhook_timeout_s, now=now)
        else:
            destination = next((d for d in notify.destinations() if d.name == ALERTS), None)
            alerts = evaluate_alerts(tower, overall, rules, destination=destination, retry=notify.retry,
                                     public_url=notify.public_url, now=now)
        first, last = days if days is not None else (None, None)
        return ModelRun(mapping.name, first, last, windows, results, round(time.perf_counter() - started, 3),
                        None if profile is None else profile.reference_id, alerts, note,
                        segment_errors=segment_errors)

    if bounds is None:
        return finish(load_or_compute(tower, warehouse, overall, refresh=refresh_reference), None, 0, 0,
                      "the prediction log is empty")

    def population(of: ModelMapping) -> tuple[ReferenceProfile, tuple[date, date] | None, int, int]:
        return _run_population(warehouse, tower, of, config, bounds, since=since, until=until, progress=progress,
                               chunk_days=chunk_days, refresh_reference=refresh_reference, now=now)

    profile, days, windows, results = population(overall)
    errors = []
    for segment in mapping.segments:
        try:  # one segment whose reference is empty must not stop the model or its other segments
            results += population(mapping.for_segment(segment.name))[3]
        except ConfigError as exc:
            errors.append(f"segment {segment.name}: {exc}")
    return finish(profile, days, windows, results, None if days else "no day to compute in the requested range",
                  tuple(errors))


def run_monitoring(settings: Any, *, model: str | None = None, since: date | None = None, until: date | None = None,
                   progress: Progress | None = None, refresh_reference: bool = False,
                   warehouse: Engine | None = None, tower: Engine | None = None,
                   now: datetime | None = None) -> list[ModelRun]:
    """Run the job for one model or every mapped model (engines made from ``settings`` unless given)."""
    from services import wiring
    from services.stores.tower_db import create_schema

    if model is not None and model not in settings.models:
        known = ", ".join(sorted(settings.models)) or "none"
        raise NotFound(f"No monitored model named '{model}'.", f"Models mapped in tower.yaml: {known}.")
    if since is not None and until is not None and since > until:
        raise ConfigError(f"--since {since} is after --until {until}.")
    names = [model] if model is not None else sorted(settings.models)
    backends = wiring.Backends.from_settings(settings)  # opens only the stores not given
    try:
        warehouse = warehouse or backends.warehouse()
        check_mappings(warehouse, [settings.models[name] for name in names])
        tower = tower or backends.tower()
        create_schema(tower)
        runs = []
        for name in names:
            started = time.perf_counter()
            try:
                # from_registry: the training data of the version in production now (a promotion switches it)
                resolved = reference_for(settings, backends.registry, warehouse, settings.models[name])
                run = run_model(warehouse, tower, resolved.mapping, monitoring_config(settings), since=since,
                                until=until, progress=progress, refresh_reference=refresh_reference, now=now,
                                notify=notification_config(settings))
                runs.append(replace(run, reference=resolved.text))
            except (MappingError, WarehouseUnavailable) as exc:  # one broken log must not stop the others
                runs.append(ModelRun(name, None, None, 0, 0, round(time.perf_counter() - started, 3), None, None,
                                     error=str(exc)))
        return runs
    finally:
        backends.close()
