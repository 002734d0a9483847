"""Alert episodes from the stored monitoring results, and the notification each one is owed.

The rules (``monitoring.alerts`` of tower.yaml) read the per-window verdicts the job stored in
``monitoring_results`` for all versions together (``version = '*'``):

============  =====================================  ==============================================
rule          series (metric, subject)               condition in a window
============  =====================================  ==============================================
drift         drift_score per feature                the feature's drift verdict is positive
latency_p95   p95_ms                                 p95 latency over ``slo.latency_p95_ms``
error_rate    error_rate                             error rate over ``slo.error_rate``
fairness_dpd  demographic_parity_difference / attr   over ``fairness.demographic_parity_difference``
fairness_eod  equalized_odds_difference / attr       over ``fairness.equalized_odds_difference``
performance   the rule metric (roc_auc, mae, ...)    worse than the reference by over ``max_drop``
multivariate  reconstruction_error                   outside the reference band (``multivariate_drift``)
estimated_    estimated_<metric> (CBPE, classifiers  the estimate's upper bound below the reference
perf...drop   with a score; before labels arrive)    by over ``max_drop``
data_quality  null_share / unseen_share /            over the reference's null share + ``max_null_
_nulls|       out_of_range_share per feature         increase``, over ``max_unseen_share``, over
_unseen|                                             ``max_out_of_range_share`` (``data_quality``
_range                                               rule; services.monitoring.data_quality)
============  =====================================  ==============================================

An **episode** opens in the window where the condition has held for ``consecutive`` windows in a
row and lasts while it holds; it is resolved by the first window where it no longer does. Windows
not judged (an empty day, performance still provisional) neither extend nor break a run.

Episodes are derived again from all stored windows on every evaluation, so re-running the job or
recomputing old windows never doubles them; the ``alert_episodes`` row (unique per model, rule,
subject and opening window) keeps what only state can know: whether and when it was notified.
Severity (``warning``/``critical``) is computed here from the rule's ``critical`` level
(``services.monitoring.severity``) and kept on the row. People work episodes
(``services.monitoring.alert_workflow``): an episode a person **resolved** is frozen (the next
evaluation never reopens or extends it) and the derivation is cut after its last window, so a
condition that still holds afterwards opens a NEW episode in the next window; an episode someone acted
on is never deleted, even if the recomputed windows withdraw it; a **snoozed** episode is not
announced until its snooze ends (``announce``).

An episode still open after the evaluation is owed to the alert destination (if one is configured):
one row in the notification outbox (``services.notify.outbox``), keyed by the episode's natural key,
delivered at least once with retries and backoff by ``services.notify.sender.deliver_due``, which
marks the episode ``notified`` (and keeps ``notify_attempts``/``notify_error`` in step) on a 2xx
answer. An episode the recomputed windows withdraw before it was announced takes its pending row
with it. Episodes that opened and resolved within a backfill are history, never sent.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.mapping import ModelMapping
from services.monitoring import data_quality
from services.monitoring.config import AlertRules
from services.monitoring.segment_rules import segment_subject, split_subject
from services.monitoring.severity import CriticalTest, critical_test, episode_severity
from services.monitoring.store import (
    ACTIVE_STATUSES,
    ALL_VERSIONS,
    NOTIFIED,
    NOTIFYING,
    OPEN,
    RESOLVED,
    SNOOZED,
    WARNING,
    alert_episodes,
    monitoring_results,
)
from services.notify import outbox
from services.notify.config import ALERTS, Destination, RetryPolicy
from services.notify.payloads import Notification
from services.notify.sender import deliver_due
from services.segments import OVERALL

_log = logging.getLogger(__name__)
CLAIM_TIMEOUT = outbox.CLAIM_TIMEOUT  # a claim older than this (a crashed run) may be taken over
DATA_QUALITY_RULES = frozenset(data_quality.RULES.values())

RULE_LABELS = {
    "drift": "drift", "latency_p95": "p95 latency over SLO", "error_rate": "error rate over SLO",
    "fairness_dpd": "demographic parity difference over limit",
    "fairness_eod": "equalized odds difference over limit", "performance": "performance drop vs reference",
    "multivariate_drift": "multivariate drift (PCA reconstruction error)",
    "estimated_performance_drop": "estimated performance drop vs reference (before labels)",
    **{rule: f"data quality: {data_quality.CHECK_WORDS[metric]}" for metric, rule in data_quality.RULES.items()},
}


@dataclass(frozen=True)
class Series:
    """One rule's per-window verdicts for one subject, oldest first.

    ``points``: (window start, alert, value, threshold, method) per window.
    """

    rule: str
    subject: str
    metric: str
    consecutive: int
    points: tuple[tuple[datetime, bool | None, float | None, float | None, str], ...]
    critical: CriticalTest | None = field(default=None, compare=False)  # the rule's critical level, if any


@dataclass(frozen=True)
class Episode:
    rule: str
    subject: str
    metric: str
    opened_window: datetime
    last_window: datetime
    resolved_window: datetime | None
    value: float | None
    threshold: float | None
    method: str
    consecutive: int
    severity: str = WARNING

    @property
    def active(self) -> bool:
        return self.resolved_window is None


@dataclass(frozen=True)
class AlertSummary:
    active: int
    opened: int
    resolved: int
    notified: int
    notify_failed: int


# --------------------------------------------------------------------------------------------
# Deriving episodes
# --------------------------------------------------------------------------------------------
def _series_specs(mapping: ModelMapping, rules: AlertRules) -> list[tuple[str, str, int, Callable[[Any], str]]]:
    """(rule, metric, consecutive, subject-of-row) of every enabled rule."""
    specs: list[tuple[str, str, int, Callable[[Any], str]]] = []
    if rules.drift.enabled:
        specs.append(("drift", "drift_score", rules.drift.consecutive, lambda r: r.column_name))
    if rules.latency_p95.enabled and mapping.slo.latency_p95_ms is not None:
        specs.append(("latency_p95", "p95_ms", rules.latency_p95.consecutive, lambda r: ""))
    if rules.error_rate.enabled and mapping.slo.error_rate is not None:
        specs.append(("error_rate", "error_rate", rules.error_rate.consecutive, lambda r: ""))
    if rules.fairness.enabled and rules.fairness.demographic_parity_difference is not None:
        specs.append(("fairness_dpd", "demographic_parity_difference", rules.fairness.consecutive,
                      lambda r: r.slice_key))
    if rules.fairness.enabled and rules.fairness.equalized_odds_difference is not None:
        specs.append(("fairness_eod", "equalized_odds_difference", rules.fairness.consecutive,
                      lambda r: r.slice_key))
    if rules.performance.enabled:
        metric = rules.performance.metric_for(mapping.task)
        specs.append(("performance", metric, rules.performance.consecutive, lambda r: r.metric))
    if rules.multivariate_drift.enabled:
        specs.append(("multivariate_drift", "reconstruction_error", rules.multivariate_drift.consecutive,
                      lambda r: ""))
    estimated = rules.estimated_performance_drop  # CBPE: only classifiers store estimated_<metric> rows
    if estimated.enabled and mapping.task == "binary_classification":
        specs.append(("estimated_performance_drop", "estimated_" + estimated.metric_for(mapping.task),
                      estimated.consecutive, lambda r: r.metric))
    if rules.data_quality.enabled:  # one rule per check, the feature as subject (services.monitoring.data_quality)
        specs += [(rule, metric, rules.data_quality.consecutive, lambda r: r.column_name)
                  for metric, rule in data_quality.RULES.items()]
    return specs


def load_series(conn: Connection, mapping: ModelMapping, rules: AlertRules) -> list[Series]:
    """Every rule's series for the model from the stored results (one statement): the whole population's,
    and those of the segments a rule names (their subjects say so, ``segment_rules.segment_subject``)."""
    specs = _series_specs(mapping, rules)
    if not specs:
        return []
    # issue 14: rule -> the segments it also judges ("fairness_dpd" and "fairness_eod" are the fairness rule)
    named = {spec[0]: rules.segments_for(spec[0].split("_")[0] if spec[0].startswith("fairness") else spec[0])
             for spec in specs}
    r = monitoring_results.c
    query = (sa.select(r.window_start, r.segment, r.metric, r.column_name, r.slice_key, r.slice_value, r.method,
                       r.value, r.threshold, r.alert)
             .where(r.model == mapping.name, r.segment.in_({OVERALL, *(n for ns in named.values() for n in ns)}),
                    r.version == ALL_VERSIONS, r.metric.in_([s[1] for s in specs]))
             .order_by(r.window_start))
    points: dict[tuple[str, str], list[tuple[datetime, bool | None, float | None, float | None, str]]] = \
        defaultdict(list)
    meta: dict[tuple[str, str], tuple[str, int]] = {}
    for row in conn.execute(query):
        for rule, metric, consecutive, subject_of in specs:
            if row.metric != metric or (row.segment != OVERALL and row.segment not in named[rule]):
                continue
            if rule.startswith("fairness") and row.slice_value != "":
                continue  # per-group rows carry no difference
            key = (rule, segment_subject(row.segment, subject_of(row)))
            meta[key] = (metric, consecutive)
            points[key].append((row.window_start, row.alert, row.value, row.threshold, row.method))
    return [Series(rule, subject, meta[(rule, subject)][0], meta[(rule, subject)][1], tuple(found),
                   critical_test(rule, meta[(rule, subject)][0], rules))
            for (rule, subject), found in sorted(points.items())]


def derive_episodes(series: Series, cuts: Mapping[datetime, datetime] | None = None) -> list[Episode]:
    """The episodes of one series (see the module docstring); the last may still be active.

    ``cuts``: opening window -> last window of the episodes people resolved; such an episode ends
    there, and the condition still holding in a later window opens a new one in that window."""
    episodes: list[Episode] = []
    streak = 0
    current: dict[str, Any] | None = None
    cuts = cuts or {}
    for window, alert, value, threshold, method in series.points:
        if alert is None:
            continue  # not judged: neither extends nor breaks the run
        streak = streak + 1 if alert else 0
        if streak >= series.consecutive:
            cut = cuts.get(current["opened_window"]) if current is not None else None
            if current is not None and cut is not None and window > cut:
                episodes.append(_episode(series, current, resolved=window))  # a person resolved it
                current = None
            if current is None:
                current = {"opened_window": window, "windows": []}
            current["windows"].append((value, threshold, method))
            current.update(last_window=window, value=value, threshold=threshold, method=method)
        elif current is not None:
            episodes.append(_episode(series, current, resolved=window))
            current = None
    if current is not None:
        episodes.append(_episode(series, current, resolved=None))
    return episodes


def _episode(series: Series, state: dict[str, Any], resolved: datetime | None) -> Episode:
    return Episode(rule=series.rule, subject=series.subject, metric=series.metric,
                   opened_window=state["opened_window"], last_window=state["last_window"], resolved_window=resolved,
                   value=state["value"], threshold=state["threshold"], method=state["method"],
                   consecutive=series.consecutive, severity=episode_severity(series.critical, state["windows"]))


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def describe(model: str, episode: Episode) -> str:
    """One line a person can act on (a segment's episode says which: "loan-approval in segment business: …")."""
    segment, subject = split_subject(episode.subject)
    if segment:
        return describe(f"{model} in segment {segment}", replace(episode, subject=subject))
    since = f"{episode.opened_window:%Y-%m-%d}"
    runs = f" for {episode.consecutive} consecutive daily windows" if episode.consecutive > 1 else ""
    value, limit = _fmt(episode.value), _fmt(episode.threshold)
    if episode.rule == "drift":
        return (f"{model}: feature '{episode.subject}' drifts ({episode.method} {value}, threshold {limit}){runs}, "
                f"since the window of {since}.")
    if episode.rule == "latency_p95":
        return f"{model}: p95 latency {value} ms is over the SLO of {limit} ms{runs}, since {since}."
    if episode.rule == "error_rate":
        return f"{model}: error rate {value} is over the SLO of {limit}{runs}, since {since}."
    if episode.rule.startswith("fairness"):
        what = "demographic parity difference" if episode.rule == "fairness_dpd" else "equalized odds difference"
        return f"{model}: {what} by '{episode.subject}' is {value}, over the limit of {limit}{runs}, since {since}."
    if episode.rule == "multivariate_drift":
        return (f"{model}: multivariate drift: the PCA reconstruction error {value} is outside its reference band "
                f"(upper bound {limit}){runs}, since the window of {since}.")
    if episode.rule in DATA_QUALITY_RULES:
        what = data_quality.CHECK_WORDS[episode.metric]
        share = "n/a" if episode.value is None else f"{episode.value:.1%}"
        most = "n/a" if episode.threshold is None else f"{episode.threshold:.1%}"
        return (f"{model}: data quality of feature '{episode.subject}': {what} {share} is over the limit of "
                f"{most}{runs}, since the window of {since}.")
    if episode.rule == "estimated_performance_drop":
        name = episode.metric.removeprefix("estimated_")
        return (f"{model}: estimated {name} (CBPE, before labels) is {value}; even its band's upper end is below "
                f"the limit of {limit}{runs}, since {since}.")
    return (f"{model}: {episode.metric} is {value}, worse than the reference allows ({limit}){runs}, "
            f"since {since}.")


# --------------------------------------------------------------------------------------------
# State and notification
# --------------------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _reconcile(conn: Connection, mapping: ModelMapping, derived: list[Episode], now: datetime) -> tuple[int, int]:
    """Bring the model's episode rows in line with the derived episodes; (opened, resolved) counts."""
    e = alert_episodes.c
    existing = {(row.rule, row.subject, row.opened_window): row
                for row in conn.execute(sa.select(alert_episodes).where(e.model == mapping.name))}
    opened = resolved = 0
    seen = set()
    for ep in derived:
        key = (ep.rule, ep.subject, ep.opened_window)
        seen.add(key)
        values = {"metric": ep.metric, "last_window": ep.last_window, "resolved_window": ep.resolved_window,
                  "value": ep.value, "threshold": ep.threshold, "message": describe(mapping.name, ep),
                  "severity": ep.severity}
        row = existing.get(key)
        if row is not None and row.workflow == RESOLVED:
            continue  # a person resolved it: frozen as they left it (its successor is a new episode)
        if row is None:
            status = OPEN if ep.active else RESOLVED
            conn.execute(sa.insert(alert_episodes).values(
                model=mapping.name, rule=ep.rule, subject=ep.subject, opened_window=ep.opened_window, status=status,
                opened_at=now, resolved_at=None if ep.active else now, **values))
            opened += ep.active
            continue
        if ep.active:
            status = row.status if row.status in ACTIVE_STATUSES else (NOTIFIED if row.notified_at else OPEN)
            resolved_at = None
        else:
            status = RESOLVED
            resolved_at = row.resolved_at or now
            resolved += row.status in ACTIVE_STATUSES
        # ``workflow != resolved`` in the statement: a person resolving it since it was read wins.
        conn.execute(sa.update(alert_episodes).where(e.id == row.id, e.workflow != RESOLVED).values(
            status=status, resolved_at=resolved_at, **values))
    for key, row in existing.items():
        if key in seen or row.workflow == RESOLVED:
            continue
        if row.notified_at is None and row.workflow_seq == 0:  # never announced, not in the data: it did not happen
            outbox.withdraw(conn, "alert", str(row.id))
            conn.execute(sa.delete(alert_episodes).where(e.id == row.id, e.workflow_seq == 0))
        elif row.status in ACTIVE_STATUSES:  # (people acted on it: it stays, with what they did)
            conn.execute(sa.update(alert_episodes).where(e.id == row.id, e.workflow != RESOLVED).values(
                status=RESOLVED, resolved_at=now,
                message=row.message + " (Withdrawn: the recomputed windows no longer show it.)"))
            resolved += 1
    return opened, resolved


def evaluate_alerts(tower: Engine, mapping: ModelMapping, rules: AlertRules, *, webhook_url: str | None = None,
                    timeout_s: float = 5.0, now: datetime | None = None, destination: Destination | None = None,
                    retry: RetryPolicy | None = None, public_url: str | None = None) -> AlertSummary:
    """Derive the model's episodes from its stored results, store them, and owe each new open one to
    the alert destination (``destination``, or a generic one on ``webhook_url``), delivered now."""
    now = now or _now()
    with tower.begin() as conn:
        cuts = _resolved_by_people(conn, mapping.name)
        derived = [ep for series in load_series(conn, mapping, rules)
                   for ep in derive_episodes(series, cuts.get((series.rule, series.subject)))]
        opened, resolved = _reconcile(conn, mapping, derived, now)
    if destination is None and webhook_url:
        destination = Destination(ALERTS, webhook_url, "generic", timeout_s)
    notified = failed = 0
    if destination is not None:
        notified, failed = _notify(tower, mapping.name, destination, now, retry, public_url, requests.post)
    return AlertSummary(active=sum(ep.active for ep in derived), opened=opened, resolved=resolved, notified=notified,
                        notify_failed=failed)


def _resolved_by_people(conn: Connection, model: str) -> dict[tuple[str, str], dict[datetime, datetime]]:
    """(rule, subject) -> {opening window: last window} of the model's episodes a person resolved."""
    e = alert_episodes.c
    cuts: dict[tuple[str, str], dict[datetime, datetime]] = defaultdict(dict)
    for row in conn.execute(sa.select(e.rule, e.subject, e.opened_window, e.last_window)
                            .where(e.model == model, e.workflow == RESOLVED)):
        cuts[(row.rule, row.subject)][row.opened_window] = row.last_window
    return cuts


def _payload(row: Any) -> dict[str, Any]:
    return {
        "text": f"[ML Control Tower] {row.message}",  # what Slack/Teams-style receivers display
        "episode_id": row.id, "model": row.model, "rule": row.rule, "subject": row.subject, "metric": row.metric,
        "status": "open", "opened_window": row.opened_window.isoformat(), "last_window": row.last_window.isoformat(),
        "value": row.value, "threshold": row.threshold, "message": row.message,
    }


def alert_key(model: str, rule: str, subject: str, opened_window: datetime) -> str:
    """The episode's notification key: its natural key (model, rule, subject, opening window), so it
    stays the same whatever row id the episode has and whoever enqueues it."""
    digest = hashlib.sha256("\x1f".join((model, rule, subject, opened_window.isoformat())).encode()).hexdigest()
    return f"alert:{digest[:40]}"


def alert_notification(row: Any, public_url: str | None = None) -> Notification:
    """What an open episode says (``_payload``'s fields stay the generic body's fields)."""
    label = RULE_LABELS.get(row.rule, row.rule)
    extra = _payload(row)
    extra.pop("text")
    link = f"{public_url}/alerts?model={quote(row.model, safe='')}" if public_url else None
    fields = [("Model", row.model), ("Rule", label)]
    if row.subject:
        fields.append(("Subject", row.subject))
    fields += [("Value", _fmt(row.value)), ("Threshold", _fmt(row.threshold)),
               ("Since the window of", f"{row.opened_window:%Y-%m-%d}")]
    return Notification(key=alert_key(row.model, row.rule, row.subject, row.opened_window), kind="alert",
                        title=f"{row.model}: {label}" + (f" ({row.subject})" if row.subject else ""),
                        severity=row.severity, model=row.model, text=row.message, link=link,
                        fields=tuple(fields), extra=extra)


def announce(row: Any, now: datetime) -> bool:
    """Whether an open, never-notified episode is owed to the receivers now.

    Every one, except an episode a person snoozed, until the snooze ends (then it is owed like any
    other, if it never was), and an episode an older version of the tower is sending (status
    ``notifying`` with a claim younger than ``CLAIM_TIMEOUT``: a run during an upgrade)."""
    if row.workflow == SNOOZED and row.snoozed_until is not None and row.snoozed_until > now:
        return False
    return not (row.status == NOTIFYING and row.claimed_at is not None and row.claimed_at >= now - CLAIM_TIMEOUT)


def enqueue_alerts(tower: Engine, model: str | None, destination: str, now: datetime,
                   public_url: str | None = None) -> int:
    """Owe every open, never-notified episode (of ``model``, or all) to ``destination``, once."""
    e = alert_episodes.c
    # FOR UPDATE: a snooze or resolve racing this waits, then withdraws what was enqueued here (PostgreSQL).
    query = (sa.select(alert_episodes).where(e.status.in_([OPEN, NOTIFYING]), e.notified_at.is_(None))
             .order_by(e.id).with_for_update())
    if model is not None:
        query = query.where(e.model == model)
    added = 0
    with tower.begin() as conn:
        for row in conn.execute(query).all():
            if announce(row, now):
                added += outbox.enqueue(conn, alert_notification(row, public_url), destination, str(row.id), now)
    return added


def _notify(tower: Engine, model: str | None, destination: Destination, now: datetime, retry: RetryPolicy | None,
            public_url: str | None, post: Callable[..., requests.Response]) -> tuple[int, int]:
    enqueue_alerts(tower, model, destination.name, now, public_url)
    report = deliver_due(tower, [destination], now, retry=retry, public_url=public_url, model=model, post=post)
    return report.total_sent, report.total_failed


def notify_pending(tower: Engine, model: str | None, url: str, *, timeout_s: float = 5.0,
                   now: datetime | None = None, post: Callable[..., requests.Response] = requests.post
                   ) -> tuple[int, int]:
    """Owe every open, not yet notified episode (of ``model``, or all) to ``url`` (generic JSON) and
    deliver what is due; (sent, failed)."""
    return _notify(tower, model, Destination(ALERTS, url, "generic", timeout_s), now or _now(), None, None, post)
