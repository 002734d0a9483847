"""What pages read of the stored monitoring: health verdicts, heat maps, series over time, alert episodes.

Small typed answers, one tower-state query each, over ``monitoring_results`` and
``alert_episodes``. A tower state whose monitoring tables do not exist yet reads as "no results";
any other failure to read it is TowerStateUnavailable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from services.errors import ConfigError, TowerStateUnavailable
from services.monitoring.multivariate import LOWER_METRIC as RECONSTRUCTION_LOWER
from services.monitoring.multivariate import METRIC as RECONSTRUCTION
from services.monitoring.results import RULE_METRICS
from services.monitoring.store import (
    ACTIVE_STATUSES,
    ALL_VERSIONS,
    alert_episodes,
    monitoring_results,
)
from services.segments import OVERALL
from services.stats.drift import drift_ratio

Status = Literal["ok", "warning", "alert", "unknown"]
_MISSING_TABLE = re.compile(r"no such table|does not exist|undefined table", re.IGNORECASE)
_ALERT_COLUMNS = ["id", "model", "rule", "subject", "metric", "status", "opened_window", "last_window",
                  "resolved_window", "value", "threshold", "message", "opened_at", "notified_at", "resolved_at",
                  "notify_attempts", "notify_error"]


def read_rows(tower: Engine, query: Any) -> list[Any]:
    """The rows of a tower-state query; none while the monitoring tables do not exist yet."""
    try:
        with tower.connect() as conn:
            return list(conn.execute(query))
    except sa_exc.DBAPIError as exc:
        if _MISSING_TABLE.search(str(exc.orig)):
            return []  # the job has never run against this tower state
        raise TowerStateUnavailable(f"The tower state cannot be read: {str(exc.orig).splitlines()[0]}",
                                    "Check TOWER_DB_URL.") from exc


def _frame(rows: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))


# --------------------------------------------------------------------------------------------
# Health verdict
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HealthVerdict:
    """A model's health from its latest monitoring results.

    ``alert``: an alert episode is open; ``warning``: no episode, but a rule's condition holds in the
    latest window (e.g. a feature drifted once, not yet three days in a row); ``ok``: neither;
    ``unknown``: no monitoring results yet. ``reasons`` say why, one line each.
    """

    model: str
    status: Status
    reasons: tuple[str, ...]
    window_start: datetime | None
    window_end: datetime | None
    computed_at: datetime | None


def latest_health(tower: Engine, model: str) -> HealthVerdict:
    r = monitoring_results.c
    latest = read_rows(tower, sa.select(r.window_start, r.window_end, r.computed_at)
                   .where(r.model == model, r.segment == OVERALL, r.version == ALL_VERSIONS, r.metric == "rows",
                          r.value > 0)
                   .order_by(r.window_start.desc()).limit(1))
    if not latest:
        return HealthVerdict(model, "unknown", ("Not monitored yet: run `tower monitor run`.",),
                             None, None, None)
    start, end, computed_at = latest[0]
    e = alert_episodes.c
    episodes = read_rows(tower, sa.select(e.message).where(e.model == model, e.status.in_(ACTIVE_STATUSES))
                     .order_by(e.rule, e.subject))
    if episodes:
        return HealthVerdict(model, "alert", tuple(row.message for row in episodes), start, end, computed_at)
    breaches = read_rows(tower, sa.select(r.metric, r.column_name, r.slice_key, r.value, r.threshold)
                     .where(r.model == model, r.segment == OVERALL, r.version == ALL_VERSIONS, r.window_start == start,
                            r.metric.in_(list(RULE_METRICS)), r.alert.is_(True))
                     .order_by(r.metric, r.column_name, r.slice_key))
    if breaches:
        reasons = tuple(_breach_text(row) for row in breaches)
        return HealthVerdict(model, "warning", reasons, start, end, computed_at)
    return HealthVerdict(model, "ok", (f"No rule breached in the window of {start:%Y-%m-%d}.",), start, end,
                         computed_at)


def _breach_text(row: Any) -> str:
    value = "n/a" if row.value is None else f"{row.value:.4g}"
    limit = "n/a" if row.threshold is None else f"{row.threshold:.4g}"
    if row.metric == "drift_score":
        return f"Feature '{row.column_name}' drifted in the latest window (score {value}, threshold {limit})."
    if row.column_name:  # data quality: the feature's null, unseen or out-of-range share
        return f"{row.metric.replace('_', ' ')} of '{row.column_name}' is {value} (limit {limit}) in the latest window."
    if row.slice_key:
        return f"{row.metric.replace('_', ' ')} by '{row.slice_key}' is {value} (limit {limit}) in the latest window."
    return f"{row.metric.replace('_', ' ')} is {value} (limit {limit}) in the latest window."


# --------------------------------------------------------------------------------------------
# Time series
# --------------------------------------------------------------------------------------------
def _window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    if start >= end:
        raise ConfigError("The period's start must be before its end.")
    return start, end


def drift_heatmap(tower: Engine, model: str, start: datetime, end: datetime, *,
                  version: str = ALL_VERSIONS, segment: str = OVERALL) -> pd.DataFrame:
    """Feature x day drift, one row per cell: columns day, column, method, score, threshold, drifted,
    ratio (how far past the verdict line, ``stats.drift.drift_ratio``: above 1 drifts, whatever the
    method) and reference_id (the reference definition `monitor run` compared that day with)."""
    start, end = _window(start, end)
    r = monitoring_results.c
    rows = read_rows(tower, sa.select(r.window_start, r.column_name, r.method, r.value, r.threshold, r.alert,
                                      r.reference_id)
                 .where(r.model == model, r.segment == segment, r.version == version, r.metric == "drift_score",
                        r.window_start >= start, r.window_start < end)
                 .order_by(r.window_start, r.id))
    frame = _frame(rows, ["day", "column", "method", "score", "threshold", "drifted", "reference_id"])
    frame["score"] = frame["score"].astype("float64")
    frame["threshold"] = frame["threshold"].astype("float64")
    frame["drifted"] = frame["drifted"].astype("boolean")
    ratios = [drift_ratio(m, None if pd.isna(v) else v, None if pd.isna(t) else t)
              for m, v, t in zip(frame["method"], frame["score"], frame["threshold"], strict=True)]
    frame.insert(6, "ratio", pd.Series(ratios, index=frame.index, dtype="float64"))
    return frame


def fairness_over_time(tower: Engine, model: str, start: datetime, end: datetime, *,
                       segment: str = OVERALL) -> pd.DataFrame:
    """Per day and sensitive attribute: columns day, sensitive, group ('' for the differences), metric,
    value, threshold, alert. Metrics: demographic_parity_difference, equalized_odds_difference,
    disparate_impact_ratio (group ''), and per group count, labeled, selection_rate, tpr, fpr."""
    start, end = _window(start, end)
    r = monitoring_results.c
    metrics = ["demographic_parity_difference", "equalized_odds_difference", "disparate_impact_ratio", "count",
               "labeled", "selection_rate", "tpr", "fpr"]
    rows = read_rows(tower, sa.select(r.window_start, r.slice_key, r.slice_value, r.metric, r.value, r.threshold,
                                  r.alert)
                 .where(r.model == model, r.segment == segment, r.version == ALL_VERSIONS, r.slice_key != "",
                        r.metric.in_(metrics),
                        r.window_start >= start, r.window_start < end)
                 .order_by(r.window_start, r.slice_key, r.slice_value, r.metric))
    frame = _frame(rows, ["day", "sensitive", "group", "metric", "value", "threshold", "alert"])
    frame["value"] = frame["value"].astype("float64")
    frame["threshold"] = frame["threshold"].astype("float64")
    frame["alert"] = frame["alert"].astype("boolean")
    return frame


def performance_over_time(tower: Engine, model: str, start: datetime, end: datetime, *,
                          version: str = ALL_VERSIONS, segment: str = OVERALL) -> pd.DataFrame:
    """Per day and metric: columns day, metric, value, threshold, alert, label_coverage, labeled,
    provisional (labels still arriving: coverage below the rule's minimum), rule_metric (the
    metric the performance alert watches)."""
    start, end = _window(start, end)
    r = monitoring_results.c
    names = ["accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse", "label_coverage", "labeled",
             "provisional"]
    rows = read_rows(tower, sa.select(r.window_start, r.metric, r.value, r.threshold, r.alert, r.method)
                 .where(r.model == model, r.segment == segment, r.version == version, r.column_name == "",
                        r.slice_key == "",
                        r.metric.in_(names), r.window_start >= start, r.window_start < end)
                 .order_by(r.window_start, r.metric))
    raw = _frame(rows, ["day", "metric", "value", "threshold", "alert", "method"])
    columns = ["day", "metric", "value", "threshold", "alert", "label_coverage", "labeled", "provisional",
               "rule_metric"]
    if raw.empty:
        return pd.DataFrame(columns=columns)
    per_day = raw.pivot_table(index="day", columns="metric", values="value", aggfunc="first")
    metrics = raw[~raw["metric"].isin(["label_coverage", "labeled", "provisional"])].copy()
    for name in ("label_coverage", "labeled", "provisional"):
        series = per_day[name] if name in per_day else pd.Series(dtype="float64")
        metrics[name] = metrics["day"].map(series)
    metrics["provisional"] = metrics["provisional"].map(lambda v: None if pd.isna(v) else bool(v)).astype("boolean")
    metrics["rule_metric"] = metrics["method"] == "rule"
    metrics["value"] = metrics["value"].astype("float64")
    metrics["threshold"] = metrics["threshold"].astype("float64")
    metrics["alert"] = metrics["alert"].astype("boolean")
    return metrics[columns].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Multivariate drift (services/monitoring/multivariate.py)
# --------------------------------------------------------------------------------------------
_RECONSTRUCTION_COLUMNS = ["day", "value", "lower", "upper", "drifted", "reference_id"]


def _reconstruction_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """One row per window from the stored (window_start, metric, value, threshold, alert, reference_id) rows."""
    per_day: dict[Any, dict[str, Any]] = {}
    for row in rows:
        entry = per_day.setdefault(row.window_start, {"day": row.window_start, "value": None, "lower": None,
                                                      "upper": None, "drifted": None, "reference_id": None})
        if row.metric == RECONSTRUCTION:
            entry.update(value=row.value, upper=row.threshold, drifted=row.alert, reference_id=row.reference_id)
        else:
            entry["lower"] = row.value
    frame = pd.DataFrame(list(per_day.values()), columns=_RECONSTRUCTION_COLUMNS)
    for name in ("value", "lower", "upper"):
        frame[name] = frame[name].astype("float64")
    frame["drifted"] = frame["drifted"].astype("boolean")
    return frame


def reconstruction_over_time(tower: Engine, model: str, start: datetime, end: datetime, *,
                             version: str = ALL_VERSIONS, segment: str = OVERALL) -> pd.DataFrame:
    """Per day the PCA reconstruction error and its reference band: columns day, value, lower (NaN when
    the band has none), upper, drifted (outside the band), reference_id."""
    start, end = _window(start, end)
    r = monitoring_results.c
    rows = read_rows(tower, sa.select(r.window_start, r.metric, r.value, r.threshold, r.alert, r.reference_id)
                     .where(r.model == model, r.segment == segment, r.version == version, r.column_name == "",
                            r.slice_key == "", r.metric.in_([RECONSTRUCTION, RECONSTRUCTION_LOWER]),
                            r.window_start >= start, r.window_start < end)
                     .order_by(r.window_start, r.metric))
    return _reconstruction_frame(rows)


@dataclass(frozen=True)
class LatestMultivariate:
    """A model's latest stored window with a reconstruction error (for the fleet)."""

    model: str
    window_start: datetime
    value: float | None
    lower: float | None
    upper: float | None
    drifted: bool | None


def latest_multivariate(tower: Engine, model: str) -> LatestMultivariate | None:
    """The latest window's reconstruction error and band (None: never computed for this model)."""
    r = monitoring_results.c
    latest = (sa.select(sa.func.max(r.window_start)).where(
        r.model == model, r.segment == OVERALL, r.version == ALL_VERSIONS, r.metric == RECONSTRUCTION,
        r.value.is_not(None)).scalar_subquery())
    rows = read_rows(tower, sa.select(r.window_start, r.metric, r.value, r.threshold, r.alert, r.reference_id)
                     .where(r.model == model, r.segment == OVERALL, r.version == ALL_VERSIONS,
                            r.window_start == latest, r.metric.in_([RECONSTRUCTION, RECONSTRUCTION_LOWER])))
    if not rows:
        return None
    row = _reconstruction_frame(rows).iloc[0]

    def num(value: Any) -> float | None:
        return None if pd.isna(value) else float(value)

    return LatestMultivariate(model, row["day"], num(row["value"]), num(row["lower"]), num(row["upper"]),
                              None if pd.isna(row["drifted"]) else bool(row["drifted"]))


# --------------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------------
def _episodes(tower: Engine, *conditions: Any) -> pd.DataFrame:
    e = alert_episodes.c
    rows = read_rows(tower, sa.select(*(e[c] for c in _ALERT_COLUMNS)).where(*conditions)
                 .order_by(e.opened_window.desc(), e.model, e.rule, e.subject))
    return _frame(rows, _ALERT_COLUMNS)


def open_alerts(tower: Engine, model: str | None = None) -> pd.DataFrame:
    """Episodes whose condition still holds (status open, notifying or notified), newest first."""
    e = alert_episodes.c
    conditions = [e.status.in_(ACTIVE_STATUSES)] + ([e.model == model] if model else [])
    return _episodes(tower, *conditions)


def alert_span(tower: Engine, model: str | None = None) -> tuple[datetime, datetime] | None:
    """The first and last window an episode was opened in (None: no episode yet), counted in SQL."""
    e = alert_episodes.c
    query = sa.select(sa.func.min(e.opened_window), sa.func.max(e.opened_window))
    rows = read_rows(tower, query.where(e.model == model) if model else query)
    if not rows or rows[0][0] is None:
        return None
    return rows[0][0], rows[0][1]


def alert_history(tower: Engine, model: str | None = None, start: datetime | None = None,
                  end: datetime | None = None) -> pd.DataFrame:
    """Every episode (open and resolved) opened in ``[start, end)`` if given, newest first."""
    e = alert_episodes.c
    conditions = [e.model == model] if model else []
    if start is not None:
        conditions.append(e.opened_window >= start)
    if end is not None:
        conditions.append(e.opened_window < end)
    return _episodes(tower, *conditions)
