"""``deliver_due``: what is owed, POSTed to whom it is owed, each outcome recorded.

Called by ``monitor run`` (after the models, every destination) and by the review page right after
a decision (best effort, in a thread: a slow receiver never holds up the reviewer, and a decision
never fails because of its notification).

Outcomes (``last_error``, and the alert episode's ``notify_error``) name the receiver's host and
what it answered, never the URL's path or query (Slack and Teams put the token there):

- 2xx: delivered.
- 5xx, 408, 429, a timeout or a refused connection: the receiver is having trouble; retried with
  the backoff (after ``Retry-After`` on a 429 if that is later), and the destination is left alone
  for the rest of this pass so a dead receiver costs one timeout, not one per row.
- any other 4xx or a 3xx: the receiver refuses this request (a revoked URL, a wrong format): still
  retried (a URL is fixed by changing the environment; nothing is dropped) but recorded as such;
  Slack's ``404 no_service``/``410 channel_is_archived`` say the URL is revoked or its channel gone.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.monitoring.store import ACTIVE_STATUSES, NOTIFIED, alert_episodes
from services.notify import outbox
from services.notify.config import DECISIONS, Destination, RetryPolicy
from services.notify.decisions import FIRST_SIGHT_GRACE, enqueue_decisions
from services.notify.payloads import render

_log = logging.getLogger(__name__)
Post = Callable[..., requests.Response]
_SLACK_CODE = re.compile(r"[a-z_]{1,40}")
_REVOKED = {"no_service": "the webhook URL was revoked or is wrong: set a new one",
            "channel_is_archived": "the webhook's channel is archived: set a new URL",
            "no_team": "the webhook's workspace is gone: set a new URL",
            "invalid_token": "the webhook URL's token is invalid: set a new one"}


@dataclass
class DeliveryReport:
    """What one pass did: rows delivered and failed per destination, and each failure's reason."""

    sent: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    enqueued: int = 0

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())


@dataclass(frozen=True)
class Attempt:
    ok: bool
    reason: str | None = None
    retry_after_s: float = 0.0
    receiver_down: bool = False  # leave the destination alone for the rest of the pass


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def judge(url: str, response: requests.Response | None, error: Exception | None) -> Attempt:
    """What an attempt's answer means (see the module docstring); the reason never holds the URL's token."""
    host = urlsplit(url).hostname or "?"
    if response is None:
        return Attempt(False, f"{host}: {type(error).__name__}", receiver_down=True)
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(True)
    if status >= 500:
        return Attempt(False, f"{host} answered HTTP {status}", receiver_down=True)
    if status in (408, 429):
        retry_after = response.headers.get("Retry-After", "")
        wait = float(retry_after) if retry_after.strip().isdigit() else 0.0
        return Attempt(False, f"{host} answered HTTP {status} (busy; retried)", retry_after_s=wait, receiver_down=True)
    code = (response.text or "").strip()[:41]
    code = code if _SLACK_CODE.fullmatch(code) else ""  # Slack's short error codes only: a body may echo anything
    if code in _REVOKED:
        return Attempt(False, f"{host} answered HTTP {status} {code}: {_REVOKED[code]} (still retried)")
    what = "a redirect, not followed" if 300 <= status < 400 else "the receiver refuses this request"
    detail = f" {code}" if code else ""
    return Attempt(False, f"{host} answered HTTP {status}{detail} ({what}: check the URL and "
                          "notifications.format; still retried)")


def _body(data: dict[str, Any]) -> bytes:
    return json.dumps(data, allow_nan=False, ensure_ascii=False).encode("utf-8")


def _mirror_on_episode(conn: Connection, claimed: outbox.Claimed, now: datetime, reason: str | None) -> None:
    """Keep the alert episode's notification columns (what the Alerts page shows) in step."""
    if claimed.kind != "alert" or not claimed.source_id.isdigit():
        return
    e = alert_episodes.c
    values: dict[str, Any] = {"notify_attempts": claimed.attempts + 1, "notify_error": reason}
    if reason is None:
        values.update(notified_at=now, status=sa.case((e.status.in_(ACTIVE_STATUSES), NOTIFIED), else_=e.status),
                      claimed_at=None)
    conn.execute(alert_episodes.update().where(e.id == int(claimed.source_id)).values(**values))


def _attempt(engine: Engine, destination: Destination, claimed: outbox.Claimed, now: datetime, retry: RetryPolicy,
             post: Post) -> Attempt:
    response: requests.Response | None = None
    error: Exception | None = None
    try:
        response = post(destination.url, data=_body(render(claimed.notification, destination.format)),
                        headers={"Content-Type": "application/json; charset=utf-8",
                                 "Idempotency-Key": claimed.key},
                        timeout=destination.timeout_s, allow_redirects=False)
    except requests.RequestException as exc:
        error = exc
    result = judge(destination.url, response, error)
    with engine.begin() as conn:
        if result.ok:
            if outbox.mark_delivered(conn, claimed, now):
                _mirror_on_episode(conn, claimed, now, None)
        else:
            reason = result.reason or "failed"
            if outbox.mark_failed(conn, claimed, now, reason, retry, result.retry_after_s) is not None:
                _mirror_on_episode(conn, claimed, now, reason)
            _log.warning("Notification %s to %s failed (attempt %d): %s", claimed.key[:40], destination.name,
                         claimed.attempts + 1, reason)
    return result


def deliver_due(tower: Engine, destinations: Sequence[Destination], now: datetime | None = None, *,
                retry: RetryPolicy | None = None, public_url: str | None = None, model: str | None = None,
                post: Post = requests.post) -> DeliveryReport:
    """Enqueue the decisions owed to the ``decisions`` destination, then POST every due row of each
    destination once (of ``model`` only, if given); see the module docstring for outcomes."""
    now = now or now_utc()
    retry = retry or RetryPolicy()
    report = DeliveryReport()
    for destination in destinations:
        if destination.name == DECISIONS:
            since = outbox.first_seen(tower, DECISIONS, now) - FIRST_SIGHT_GRACE
            report.enqueued += enqueue_decisions(tower, DECISIONS, since, now, public_url)
        sent = failed = 0
        for row_id in outbox.due_ids(tower, destination.name, now, model=model):
            claimed = outbox.claim(tower, row_id, now)
            if claimed is None:
                continue  # another sender has it, or delivered it meanwhile
            result = _attempt(tower, destination, claimed, now, retry, post)
            if result.ok:
                sent += 1
                continue
            failed += 1
            report.errors.append(f"{destination.name}: {result.reason}")
            if result.receiver_down:
                break
        report.sent[destination.name] = sent
        report.failed[destination.name] = failed
    return report


def deliver_soon(tower: Engine, destinations: Sequence[Destination], *, retry: RetryPolicy | None = None,
                 public_url: str | None = None) -> threading.Thread | None:
    """``deliver_due`` in a daemon thread, every error logged and swallowed (right after a decision:
    the decision is recorded whatever happens here, and ``monitor run`` delivers what this misses)."""
    if not destinations:
        return None

    def run() -> None:
        try:
            deliver_due(tower, destinations, retry=retry, public_url=public_url)
        except Exception:  # best effort by design: logged, and the outbox keeps what is owed
            _log.exception("Delivering notifications after a decision failed")

    thread = threading.Thread(target=run, name="tower-notify", daemon=True)
    thread.start()
    return thread



