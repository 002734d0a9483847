"""The webhook's shared secret: ``TOWER_WEBHOOK_SECRET``, else ``secret`` under ``[webhooks]`` in the
secrets file. Never tower.yaml (it is committed); the receiver refuses to start without one."""

from __future__ import annotations

from collections.abc import Mapping

from services.auth.identity import PLACEHOLDER_SECRETS
from services.errors import ConfigError
from services.secrets_file import load_secrets

SECRET_ENV = "TOWER_WEBHOOK_SECRET"
TOLERANCE_ENV = "TOWER_WEBHOOK_TOLERANCE_S"
MIN_SECRET_CHARS = 24
_HINT = (f"Set {SECRET_ENV} (or secret under [webhooks] in the secrets file) to a random string, e.g. "
         "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, the same for `webhooks register` and "
         "`webhooks serve`.")


def webhook_secret(environ: Mapping[str, str]) -> str:
    """The shared secret; ConfigError when it is missing, a placeholder or too short to resist guessing."""
    secret = environ.get(SECRET_ENV, "").strip()
    if not secret:
        section = load_secrets(environ=environ).get("webhooks") or {}
        value = section.get("secret") if isinstance(section, dict) else None
        secret = value.strip() if isinstance(value, str) else ""
    if not secret:
        raise ConfigError("No webhook secret: unsigned deliveries would be accepted from anyone.", _HINT)
    if secret.lower() in PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"The webhook secret is a placeholder or shorter than {MIN_SECRET_CHARS} characters.", _HINT)
    return secret


def tolerance_s(environ: Mapping[str, str], default: float) -> float:
    """How far a delivery's timestamp may be from this server's clock (``TOWER_WEBHOOK_TOLERANCE_S``)."""
    raw = environ.get(TOLERANCE_ENV, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86_400:
        raise ConfigError(f"{TOLERANCE_ENV} must be a number of seconds between 0 and 86400, got {raw[:40]!r}.")
    return value
