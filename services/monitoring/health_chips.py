"""A model's health per dimension (latency, errors, drift, multivariate drift, data quality, fairness,
performance realised or estimated), each with the page that explains it:
the fleet shows these as chips next to the model's name, model detail lists them.

A chip is ``alert`` while an alert episode of its rules is open, ``warning`` when a rule's condition
holds in the latest monitored window without an episode yet, ``ok`` otherwise, and ``unknown`` before
the monitoring job has run. Its link opens the page set to the model, the feature or group behind
the worst finding, and a window that starts at the alert's onset. The verdict is pure
(:func:`chips_from`); :func:`health_chips` reads the tower state for it, :func:`fleet_findings` for every
model of the fleet at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.monitoring.alerts import DATA_QUALITY_RULES
from services.monitoring.data_quality import CHECK_WORDS
from services.monitoring.results import RULE_METRICS
from services.monitoring.segment_rules import split_subject
from services.monitoring.store import ACTIVE_STATUSES, ALL_VERSIONS, CRITICAL, alert_episodes, monitoring_results
from services.monitoring.tower_reads import read_rows
from services.segments import OVERALL
from services.stats.drift import drift_ratio

DIMENSIONS = ("latency", "errors", "drift", "multivariate", "data_quality", "fairness", "performance")
DIMENSION_LABELS = {"latency": "Latency", "errors": "Errors", "drift": "Drift", "multivariate": "Multivariate drift",
                    "data_quality": "Data quality", "fairness": "Fairness", "performance": "Performance"}
# Which dimension each alert rule and result metric speaks for. Performance is realised (labels) or
# estimated (CBPE, before labels): both are the performance chip, its text says which.
_RULE_DIMENSION = {"latency_p95": "latency", "error_rate": "errors", "drift": "drift", "fairness": "fairness",
                   "fairness_dpd": "fairness", "fairness_eod": "fairness", "performance": "performance",
                   "multivariate_drift": "multivariate", "estimated_performance_drop": "performance",
                   "data_quality": "data_quality", **dict.fromkeys(DATA_QUALITY_RULES, "data_quality")}
# The page that explains a dimension, and the query parameter its subject goes into (data quality
# sits next to drift in the drift page's feature table).
_PAGE = {"latency": ("latency", None), "errors": ("latency", None), "drift": ("drift", "feature"),
         "multivariate": ("drift", None), "data_quality": ("drift", "feature"),
         "fairness": ("fairness", "sensitive"), "performance": ("performance", None)}


def explaining_page(rule: str) -> str | None:
    """The url path of the page that explains an alert of ``rule`` (None for a rule no page shows)."""
    dimension = _RULE_DIMENSION.get(rule)
    return _PAGE[dimension][0] if dimension else None


RANK = {"alert": 3, "warning": 2, "ok": 1, "unknown": 0}
# Days of context before an onset, so the page shows the change, not only what came after it.
LEAD_DAYS = 3


@dataclass(frozen=True)
class Finding:
    """One open episode or latest-window breach, reduced to what a chip needs."""

    dimension: str
    status: str  # alert / warning
    subject: str  # feature, sensitive attribute, or ""
    onset: datetime  # the window that opened the episode (or the latest window, for a warning)
    message: str
    severity: float = 0.0  # value over threshold, to pick the worst subject
    segment: str = ""  # issue 14: the segment an episode of a rule naming segments is about ('' = everyone)
    critical: bool = False  # an open episode of critical severity (services.monitoring.severity)


@dataclass(frozen=True)
class Chip:
    dimension: str
    status: str  # alert / warning / ok / unknown
    text: str  # the worst finding in words, or why the dimension is ok/unknown
    page: str  # url path of the page that explains it
    params: Mapping[str, str] = field(default_factory=dict)  # model, feature or sensitive, start (YYYY-MM-DD)
    count: int = 0  # findings behind it
    critical: bool = False  # one of its open alert episodes is critical (the fleet says "critical")

    @property
    def title(self) -> str:
        """The dimension as people read it: 'Data quality', 'Multivariate drift'."""
        return DIMENSION_LABELS.get(self.dimension, self.dimension.replace("_", " ").capitalize())

    @property
    def label(self) -> str:
        """Text, never a symbol alone: 'alert', 'alert ×3', 'ok'."""
        return self.status + (f" ×{self.count}" if self.count > 1 else "")


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=lambda s: RANK.get(s, 0), default="unknown")


def chips_from(model: str, findings: Iterable[Finding], monitored: bool,
               extra: Mapping[str, Finding] | None = None) -> tuple[Chip, ...]:
    """One chip per dimension. ``extra`` adds findings the caller measured itself (the fleet's own
    SLO window), so the latency chip and the fleet's SLO status can never disagree."""
    by_dimension: dict[str, list[Finding]] = {d: [] for d in DIMENSIONS}
    for finding in findings:
        by_dimension.setdefault(finding.dimension, []).append(finding)
    for finding in (extra or {}).values():  # the same breach the job already alerted on counts once
        if not any(f.status == "alert" for f in by_dimension.setdefault(finding.dimension, [])):
            by_dimension[finding.dimension].append(finding)
    chips = []
    for dimension in DIMENSIONS:
        page, subject_param = _PAGE[dimension]
        found = sorted(by_dimension[dimension],
                       key=lambda f: (-RANK[f.status], not f.critical, -f.severity, f.onset, f.subject))
        if not found:
            status = "ok" if monitored else "unknown"
            text = "No rule breached." if monitored else "Not monitored yet."
            chips.append(Chip(dimension, status, text, page, {"model": model}))
            continue
        top = found[0]
        params = {"model": model}
        if subject_param and top.subject:
            params[subject_param] = top.subject
        if top.segment:  # the page opens filtered to the segment (?segment=, read by the monitoring pages)
            params["segment"] = top.segment
        onset = min(f.onset for f in found if f.status == top.status)
        params["start"] = (onset.date() - timedelta(days=LEAD_DAYS)).isoformat()
        chips.append(Chip(dimension, top.status, top.message, page, params,
                          count=sum(f.status == top.status for f in found), critical=top.critical))
    return tuple(chips)


def severity(value: Any, threshold: Any, method: str = "") -> float:
    """How far past its limit a finding is, to pick the worst subject. A drift score goes through
    ``stats.drift.drift_ratio``, so for a p-value test the smaller p is the worse; otherwise value ÷ limit."""
    try:
        if method:
            ratio = drift_ratio(method, float(value), float(threshold))
            return 0.0 if ratio is None else ratio
        return abs(float(value)) / abs(float(threshold)) if threshold else 0.0
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class TowerFindings:
    """What the tower state says of one model's health: its findings, and whether the job has run on it."""

    findings: tuple[Finding, ...]
    monitored: bool


_EPISODE_COLUMNS = ("rule", "subject", "opened_window", "message", "value", "threshold", "severity")
_WARNING_COLUMNS = ("metric", "column_name", "slice_key", "value", "threshold", "method")
IN_CHUNK = 500  # models per IN list of the fleet's reads (SQLite takes at most 32 766 bound values)


def health_chips(tower: Engine, model: str, extra: Mapping[str, Finding] | None = None) -> tuple[Chip, ...]:
    """The model's chips from its open alert episodes and the latest monitored window."""
    found = tower_findings(tower, model)
    return chips_from(model, found.findings, monitored=found.monitored, extra=extra)


def tower_findings(tower: Engine, model: str) -> TowerFindings:
    """One model's findings: its open alert episodes and the latest monitored window's breaches."""
    r, e = monitoring_results.c, alert_episodes.c
    latest = read_rows(tower, sa.select(r.window_start).where(
        r.model == model, r.segment == OVERALL, r.version == ALL_VERSIONS, r.metric == "rows", r.value > 0)
        .order_by(r.window_start.desc()).limit(1))
    # An episode does not store its statistic; the latest window's drift rows say which each feature uses.
    methods = read_rows(tower, sa.select(r.column_name, r.method).where(
        r.model == model, r.segment == OVERALL, r.version == ALL_VERSIONS, r.window_start == latest[0][0],
        r.metric == "drift_score")) if latest else []
    episodes = read_rows(tower, sa.select(*(e[c] for c in _EPISODE_COLUMNS))
                         .where(e.model == model, e.status.in_(ACTIVE_STATUSES)).order_by(e.id))
    warnings = read_rows(tower, sa.select(*(r[c] for c in _WARNING_COLUMNS)).where(
        r.model == model, r.segment == OVERALL, r.version == ALL_VERSIONS, r.window_start == latest[0][0],
        r.metric.in_(list(RULE_METRICS)), r.alert.is_(True)).order_by(r.id)) if latest else []
    return findings_from(latest[0][0] if latest else None, methods, episodes, warnings)


def fleet_findings(tower: Engine, models: Sequence[str]) -> dict[str, TowerFindings]:
    """:func:`tower_findings` of every model in four reads (per chunk of models), not four per model."""
    r, e = monitoring_results.c, alert_episodes.c
    out: dict[str, TowerFindings] = {}
    for at in range(0, len(models), IN_CHUNK):
        names = list(dict.fromkeys(models[at:at + IN_CHUNK]))
        latest = (sa.select(r.model, sa.func.max(r.window_start).label("window_start"))
                  .where(r.model.in_(names), r.segment == OVERALL, r.version == ALL_VERSIONS, r.metric == "rows",
                         r.value > 0)
                  .group_by(r.model).subquery("latest"))
        in_latest = sa.and_(r.model == latest.c.model, r.window_start == latest.c.window_start,
                            r.segment == OVERALL, r.version == ALL_VERSIONS)
        starts = {row[0]: row[1] for row in read_rows(tower, sa.select(latest.c.model, latest.c.window_start))}
        methods = _by_model(read_rows(tower, sa.select(r.model, r.column_name, r.method)
                                      .join(latest, in_latest).where(r.metric == "drift_score")))
        episodes = _by_model(read_rows(tower, sa.select(e.model, *(e[c] for c in _EPISODE_COLUMNS))
                                       .where(e.model.in_(names), e.status.in_(ACTIVE_STATUSES)).order_by(e.id)))
        warnings = _by_model(read_rows(tower, sa.select(r.model, *(r[c] for c in _WARNING_COLUMNS))
                                       .join(latest, in_latest)
                                       .where(r.metric.in_(list(RULE_METRICS)), r.alert.is_(True)).order_by(r.id)))
        for name in names:
            out[name] = findings_from(starts.get(name), methods.get(name, []), episodes.get(name, []),
                                      warnings.get(name, []))
    return out


def _by_model(rows: Iterable[Any]) -> dict[str, list[Any]]:
    """Rows whose first column is the model, grouped by it (the rest of each row kept, in order)."""
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(tuple(row)[1:])
    return grouped


def findings_from(latest: datetime | None, methods: Iterable[Sequence[Any]], episodes: Iterable[Sequence[Any]],
                  warnings: Iterable[Sequence[Any]]) -> TowerFindings:
    """The findings from the rows read: ``latest`` window start (None: never monitored), (column, method)
    of its drift rows, the open episodes and the latest window's breaches (columns as read above)."""
    method_of = {column: method for column, method in methods}
    findings: list[Finding] = []
    for rule, subject_text, opened, message, value, threshold, level in episodes:
        dimension = _RULE_DIMENSION.get(rule)
        if dimension is not None:
            segment, subject = split_subject(subject_text or "")  # issue 14: "segment:<name>/<subject>"
            method = method_of.get(subject, "") if dimension == "drift" and not segment else ""
            findings.append(Finding(dimension, "alert", subject, opened, message,
                                    severity(value, threshold, method), segment=segment,
                                    critical=level == CRITICAL))
    if latest is not None:
        alerting = {(f.dimension, f.subject) for f in findings if not f.segment}  # a segment's alert is not the whole's
        for metric, column_name, slice_key, value, threshold, method in warnings:
            dimension = _RULE_DIMENSION.get(RULE_METRICS[metric])
            subject = column_name or slice_key or ""
            if dimension is None or (dimension, subject) in alerting:
                continue
            findings.append(Finding(dimension, "warning", subject, latest,
                                    _warning_text(metric, subject, value, threshold),
                                    severity(value, threshold, method if metric == "drift_score" else "")))
    return TowerFindings(tuple(findings), monitored=latest is not None)


def _warning_text(metric: str, subject: str, value: Any, threshold: Any) -> str:
    shown = "n/a" if value is None else f"{value:.4g}"
    limit = "n/a" if threshold is None else f"{threshold:.4g}"
    what = f"Feature '{subject}' drifted" if metric == "drift_score" else metric.replace("_", " ")
    if metric in CHECK_WORDS:  # data quality: the feature and the check, as shares
        shown, limit = ("n/a" if v is None else f"{v:.1%}" for v in (value, threshold))
        what = f"Feature '{subject}': {CHECK_WORDS[metric]}"
    return f"{what} in the latest window ({shown}, limit {limit}); no alert yet."


def onset_day(chip: Chip) -> date | None:
    start = chip.params.get("start")
    return date.fromisoformat(start) if start else None
