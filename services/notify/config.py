"""The ``notifications:`` section of tower.yaml and the webhook URLs.

```yaml
notifications:
  format: slack            # generic (default) | slack | teams: the body every destination is sent
  timeout_s: 5             # seconds one POST may take (default: monitoring.webhook_timeout_s, else 5)
  retry: {first_s: 60, max_s: 3600}   # backoff after the 2nd failure: 1 min, 2, 4 ... then every hour
  public_url: https://tower.example.com   # the app's address, for links (TOWER_PUBLIC_URL wins)
```

The URLs carry tokens, so they come only from the environment (or the process's secrets): alerts go
to ``TOWER_ALERT_WEBHOOK_URL``; promotions to ``TOWER_DECISION_WEBHOOK_URL``, which defaults to the
alert URL (one channel is the common set-up; set it to ``off`` to send decisions nowhere).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from services.errors import ConfigError
from services.notify.payloads import FORMATS
from services.settings import Settings, refuse_unknown_keys

ALERT_WEBHOOK_ENV = "TOWER_ALERT_WEBHOOK_URL"
DECISION_WEBHOOK_ENV = "TOWER_DECISION_WEBHOOK_URL"
PUBLIC_URL_ENV = "TOWER_PUBLIC_URL"
ALERTS, DECISIONS = "alerts", "decisions"  # destination names (outbox rows name these, never a URL)
_OFF = ("off", "none", "false", "0")


@dataclass(frozen=True)
class Destination:
    """Where one kind of notification goes. ``url`` is a secret: never stored, logged or shown."""

    name: str
    url: str
    format: str = "generic"
    timeout_s: float = 5.0

    def __repr__(self) -> str:  # a Destination in a traceback or a log must not print its token
        return f"Destination(name={self.name!r}, host={urlsplit(self.url).hostname!r}, format={self.format!r})"


@dataclass(frozen=True)
class RetryPolicy:
    """Delay before the next attempt after ``failures`` failed ones: the first retry waits only for
    the next pass (most failures are a blip, and passes are already spaced: a cron tick, the next
    decision); then ``first_s`` doubling up to ``max_s``, and every ``max_s`` for ever: nothing is
    dropped."""

    first_s: float = 60.0
    max_s: float = 3600.0

    def delay_s(self, failures: int) -> float:
        if failures <= 1:
            return 0.0
        return min(self.max_s, self.first_s * 2.0 ** min(failures - 2, 40))


@dataclass(frozen=True)
class NotificationConfig:
    format: str = "generic"
    timeout_s: float = 5.0
    retry: RetryPolicy = RetryPolicy()
    public_url: str | None = None
    alert_url: str | None = None
    decision_url: str | None = None

    def destinations(self) -> list[Destination]:
        """The configured destinations (none when no URL is set)."""
        found = []
        if self.alert_url:
            found.append(Destination(ALERTS, self.alert_url, self.format, self.timeout_s))
        if self.decision_url:
            found.append(Destination(DECISIONS, self.decision_url, self.format, self.timeout_s))
        return found

    def __repr__(self) -> str:
        return (f"NotificationConfig(format={self.format!r}, timeout_s={self.timeout_s}, retry={self.retry}, "
                f"public_url={self.public_url!r}, alerts={bool(self.alert_url)}, decisions={bool(self.decision_url)})")


def webhook_url(env: Mapping[str, str], name: str) -> str | None:
    """An http(s) URL from the environment, or None; a bad one is refused without echoing it (a token)."""
    url = (env.get(name) or "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL.")
    return url


def _number(raw: Any, where: str, minimum: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not raw == raw or raw in (float("inf"),):
        raise ConfigError(f"{where} must be a number, not {raw!r}.")
    if raw < minimum:
        raise ConfigError(f"{where} must be at least {minimum:g}, not {raw!r}.")
    return float(raw)


def parse_notification_config(raw: Any, env: Mapping[str, str], *, default_timeout_s: float = 5.0
                              ) -> NotificationConfig:
    """Build the notification settings from tower.yaml's ``notifications:`` section and the environment."""
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError("notifications must be a mapping (format, timeout_s, retry, public_url).")
    refuse_unknown_keys("notifications", raw, {"format", "timeout_s", "retry", "public_url"})
    fmt = raw.get("format", "generic")
    if fmt not in FORMATS:
        raise ConfigError(f"notifications.format is {fmt!r}; expected one of {', '.join(FORMATS)}.")
    retry_raw = raw.get("retry") or {}
    if not isinstance(retry_raw, Mapping):
        raise ConfigError("notifications.retry must be a mapping (first_s, max_s).")
    refuse_unknown_keys("notifications.retry", retry_raw, {"first_s", "max_s"})
    retry = RetryPolicy(first_s=_number(retry_raw.get("first_s", 60.0), "notifications.retry.first_s", 1.0),
                        max_s=_number(retry_raw.get("max_s", 3600.0), "notifications.retry.max_s", 1.0))
    if retry.max_s < retry.first_s:
        raise ConfigError("notifications.retry.max_s must be at least first_s.")
    public = (env.get(PUBLIC_URL_ENV) or "").strip() or raw.get("public_url")
    if public is not None:
        parts = urlsplit(str(public))
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"{PUBLIC_URL_ENV} (or notifications.public_url) must be the app's http(s) address, "
                              f"e.g. https://tower.example.com, not {str(public)[:100]!r}.")
        public = str(public).rstrip("/")
    alert_url = webhook_url(env, ALERT_WEBHOOK_ENV)
    decision_raw = (env.get(DECISION_WEBHOOK_ENV) or "").strip()
    decision_url = None if decision_raw.lower() in _OFF else (webhook_url(env, DECISION_WEBHOOK_ENV) or alert_url)
    return NotificationConfig(format=fmt, timeout_s=_number(raw.get("timeout_s", default_timeout_s),
                                                            "notifications.timeout_s", 0.1),
                              retry=retry, public_url=public, alert_url=alert_url, decision_url=decision_url)


def notification_config(settings: Settings) -> NotificationConfig:
    """tower.yaml's ``notifications:`` section with the URLs from the environment (parsed once)."""
    from services.monitoring.config import monitoring_config

    timeout = monitoring_config(settings).webhook_timeout_s
    return settings.parsed("notifications", lambda raw: parse_notification_config(
        raw, settings.environ, default_timeout_s=timeout))
