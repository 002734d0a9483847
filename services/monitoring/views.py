"""What pages and the governance evidence read from monitoring: small typed answers, one query each.

Everything here reads the tower state (``monitoring_results``, ``alert_episodes``) except
`feature_distributions`, which bins one feature of one window in the warehouse against the kept
reference profile. A tower state whose monitoring tables do not exist yet reads as "no results".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from services.errors import ConfigError, TowerStateUnavailable
from services.mapping import ModelMapping
from services.monitoring.reference import ReferenceProfile
from services.monitoring.results import RULE_METRICS, WindowReport
from services.monitoring.store import (
    ACTIVE_STATUSES,
    ALL_VERSIONS,
    alert_episodes,
    monitoring_results,
)
from services.stats.histogram import BinnedSample, coarsen
from services.stores.warehouse.histograms import numeric_histograms, value_counts
from services.stores.warehouse.rows import log_rows
from services.stores.warehouse.sql import WHOLE

Status = Literal["ok", "warning", "alert", "unknown"]
_MISSING_TABLE = re.compile(r"no such table|does not exist|undefined table", re.IGNORECASE)
_ALERT_COLUMNS = ["id", "model", "rule", "subject", "metric", "status", "opened_window", "last_window",
                  "resolved_window", "value", "threshold", "message", "opened_at", "notified_at", "resolved_at",
                  "notify_attempts", "notify_error"]
DISPLAY_BINS = 20  # feature_distributions: equal-mass reference bins (every 50th of the 1000 edges)


def _rows(tower: Engine, query: Any) -> list[Any]:
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
    latest = _rows(tower, sa.select(r.window_start, r.window_end, r.computed_at)
                   .where(r.model == model, r.version == ALL_VERSIONS, r.metric == "rows", r.value > 0)
                   .order_by(r.window_start.desc()).limit(1))
    if not latest:
        return HealthVerdict(model, "unknown", ("Not monitored yet: run `python -m services.cli monitor run`.",),
                             None, None, None)
    start, end, computed_at = latest[0]
    e = alert_episodes.c
    episodes = _rows(tower, sa.select(e.message).where(e.model == model, e.status.in_(ACTIVE_STATUSES))
                     .order_by(e.rule, e.subject))
    if episodes:
        return HealthVerdict(model, "alert", tuple(row.message for row in episodes), start, end, computed_at)
    breaches = _rows(tower, sa.select(r.metric, r.column_name, r.slice_key, r.value, r.threshold)
                     .where(r.model == model, r.version == ALL_VERSIONS, r.window_start == start,
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
                  version: str = ALL_VERSIONS) -> pd.DataFrame:
    """Feature x day drift: columns day, column, method, score, threshold, drifted (one row per cell)."""
    start, end = _window(start, end)
    r = monitoring_results.c
    rows = _rows(tower, sa.select(r.window_start, r.column_name, r.method, r.value, r.threshold, r.alert)
                 .where(r.model == model, r.version == version, r.metric == "drift_score",
                        r.window_start >= start, r.window_start < end)
                 .order_by(r.window_start, r.id))
    frame = _frame(rows, ["day", "column", "method", "score", "threshold", "drifted"])
    frame["score"] = frame["score"].astype("float64")
    frame["threshold"] = frame["threshold"].astype("float64")
    frame["drifted"] = frame["drifted"].astype("boolean")
    return frame


def fairness_over_time(tower: Engine, model: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Per day and sensitive attribute: columns day, sensitive, group ('' for the differences), metric,
    value, threshold, alert. Metrics: demographic_parity_difference, equalized_odds_difference,
    disparate_impact_ratio (group ''), and per group count, labeled, selection_rate, tpr, fpr."""
    start, end = _window(start, end)
    r = monitoring_results.c
    metrics = ["demographic_parity_difference", "equalized_odds_difference", "disparate_impact_ratio", "count",
               "labeled", "selection_rate", "tpr", "fpr"]
    rows = _rows(tower, sa.select(r.window_start, r.slice_key, r.slice_value, r.metric, r.value, r.threshold,
                                  r.alert)
                 .where(r.model == model, r.version == ALL_VERSIONS, r.slice_key != "", r.metric.in_(metrics),
                        r.window_start >= start, r.window_start < end)
                 .order_by(r.window_start, r.slice_key, r.slice_value, r.metric))
    frame = _frame(rows, ["day", "sensitive", "group", "metric", "value", "threshold", "alert"])
    frame["value"] = frame["value"].astype("float64")
    frame["threshold"] = frame["threshold"].astype("float64")
    frame["alert"] = frame["alert"].astype("boolean")
    return frame


def performance_over_time(tower: Engine, model: str, start: datetime, end: datetime, *,
                          version: str = ALL_VERSIONS) -> pd.DataFrame:
    """Per day and metric: columns day, metric, value, threshold, alert, label_coverage, labeled,
    provisional (labels still arriving: coverage below the rule's minimum), rule_metric (the
    metric the performance alert watches)."""
    start, end = _window(start, end)
    r = monitoring_results.c
    names = ["accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse", "label_coverage", "labeled",
             "provisional"]
    rows = _rows(tower, sa.select(r.window_start, r.metric, r.value, r.threshold, r.alert, r.method)
                 .where(r.model == model, r.version == version, r.column_name == "", r.slice_key == "",
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


def drift_table(report: WindowReport) -> pd.DataFrame:
    """One row per feature of a window report, for the drift explorer's table: column, kind, method,
    score, threshold, drifted, psi, psi_band, js_distance, wasserstein_normed, ks_statistic,
    chi2_pvalue, null_share, reference_null_share, unseen_categories (comma-separated), unseen_share."""
    columns = ["column", "kind", "method", "score", "threshold", "drifted", "psi", "psi_band", "js_distance",
               "wasserstein_normed", "ks_statistic", "chi2_pvalue", "null_share", "reference_null_share",
               "unseen_categories", "unseen_share"]
    rows = [{**{c: getattr(d, c) for c in columns if c != "unseen_categories"},
             "unseen_categories": ", ".join(d.unseen_categories)} for d in report.drift]
    frame = pd.DataFrame(rows, columns=columns)
    frame["drifted"] = frame["drifted"].astype("boolean")
    return frame


# --------------------------------------------------------------------------------------------
# Alerts
# --------------------------------------------------------------------------------------------
def _episodes(tower: Engine, *conditions: Any) -> pd.DataFrame:
    e = alert_episodes.c
    rows = _rows(tower, sa.select(*(e[c] for c in _ALERT_COLUMNS)).where(*conditions)
                 .order_by(e.opened_window.desc(), e.model, e.rule, e.subject))
    return _frame(rows, _ALERT_COLUMNS)


def open_alerts(tower: Engine, model: str | None = None) -> pd.DataFrame:
    """Episodes whose condition still holds (status open, notifying or notified), newest first."""
    e = alert_episodes.c
    conditions = [e.status.in_(ACTIVE_STATUSES)] + ([e.model == model] if model else [])
    return _episodes(tower, *conditions)


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


# --------------------------------------------------------------------------------------------
# One feature, reference against a window (from the warehouse)
# --------------------------------------------------------------------------------------------
def _label(lower: float | None, upper: float | None) -> str:
    if lower is None:
        return f"< {upper:.4g}"
    if upper is None:
        return f">= {lower:.4g}"
    return f"[{lower:.4g}, {upper:.4g})"


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.full(counts.shape, np.nan)


def feature_distributions(engine: Engine, mapping: ModelMapping, reference: ReferenceProfile, column: str,
                          start: datetime, end: datetime) -> pd.DataFrame:
    """Reference and window distribution of one feature, for an overlay chart.

    Numerical features: ``DISPLAY_BINS`` equal-mass reference bins (open tails: ``lower``/``upper``
    None); features with few values: one row per value; categorical: one row per category (NULLs
    excluded). Columns: bin, lower, upper, reference_count, current_count, reference_share,
    current_share. One warehouse statement.
    """
    rows = log_rows(mapping, start, end)
    if column in mapping.categorical:
        current = value_counts(engine, mapping, rows, [column], numeric=False).get(WHOLE, {}).get(column, {})
        ref: dict[str | None, int] | dict[float | None, int] = reference.categorical.get(column, {})
        keys = sorted({k for k in (*ref, *current) if k is not None})
        ref_counts = np.array([ref.get(k, 0) for k in keys], dtype=float)
        cur_counts = np.array([current.get(k, 0) for k in keys], dtype=float)
        labels, lower, upper = keys, [None] * len(keys), [None] * len(keys)
    elif column in mapping.numerical:
        ref_column = reference.numerical[column]
        if ref_column.value_counted:
            current = value_counts(engine, mapping, rows, [column], numeric=True).get(WHOLE, {}).get(column, {})
            ref = ref_column.values or {}
            values = sorted({k for k in (*ref, *current) if k is not None})
            ref_counts = np.array([ref.get(v, 0) for v in values], dtype=float)
            cur_counts = np.array([current.get(v, 0) for v in values], dtype=float)
            labels, lower, upper = [f"{v:g}" for v in values], list(values), list(values)
        else:
            sample = numeric_histograms(
                engine, mapping, rows, {column: ref_column.edges},
                shifts={column: cast(BinnedSample, ref_column.histogram).shift})[WHOLE][column]
            step = max((ref_column.edges.size + 1) // DISPLAY_BINS, 1)  # 999 edges: every 50th, 5 % each
            display = ref_column.edges[step - 1::step][:DISPLAY_BINS - 1]
            ref_coarse = coarsen(cast(BinnedSample, ref_column.histogram), display)
            cur_coarse = coarsen(sample, display)
            ref_counts, cur_counts = ref_coarse.counts.astype(float), cur_coarse.counts.astype(float)
            bounds = [None, *display.tolist(), None]
            lower, upper = bounds[:-1], bounds[1:]
            labels = [_label(lo, hi) for lo, hi in zip(lower, upper, strict=True)]
    else:
        raise ConfigError(f"'{column}' is not a feature of model '{mapping.name}'.")
    return pd.DataFrame({
        "bin": labels, "lower": pd.Series(lower, dtype="float64"), "upper": pd.Series(upper, dtype="float64"),
        "reference_count": ref_counts.astype("int64"), "current_count": cur_counts.astype("int64"),
        "reference_share": _shares(ref_counts), "current_share": _shares(cur_counts),
    })


# --------------------------------------------------------------------------------------------
# Governance evidence
# --------------------------------------------------------------------------------------------
class TowerMonitoringEvidence:
    """``services.governance.context.MonitoringEvidence`` from the stored monitoring results."""

    def __init__(self, tower: Engine) -> None:
        self.tower = tower

    def latest_drift_share(self, model: str, version: str) -> float | None:
        """Share of drifted features in the latest window in which ``version`` served (None: never seen)."""
        r = monitoring_results.c
        rows = _rows(self.tower, sa.select(r.value).where(
            r.model == model, r.version == str(version), r.metric == "drift_share", r.value.is_not(None))
            .order_by(r.window_start.desc()).limit(1))
        return None if not rows else float(rows[0].value)

    def latest_fairness_dpd(self, model: str) -> float | None:
        """The worst demographic parity difference over the sensitive attributes, in the latest window."""
        r = monitoring_results.c
        latest = (sa.select(sa.func.max(r.window_start)).where(
            r.model == model, r.version == ALL_VERSIONS, r.metric == "demographic_parity_difference",
            r.value.is_not(None)).scalar_subquery())
        rows = _rows(self.tower, sa.select(sa.func.max(r.value)).where(
            r.model == model, r.version == ALL_VERSIONS, r.metric == "demographic_parity_difference",
            r.window_start == latest))
        return None if not rows or rows[0][0] is None else float(rows[0][0])
