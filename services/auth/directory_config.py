"""The ``auth.directory`` section of tower.yaml: which directory to ask for people's current rights.

```yaml
auth:
  directory:
    kind: scim                          # SCIM 2.0 (RFC 7643/7644): Okta, Entra ID, Keycloak, OneLogin, ...
    issuer: https://idp.example.com     # the issuer whose people this directory knows
    base_url: https://idp.example.com/scim/v2
    match: {attribute: externalId, claim: subject}   # externalId|userName|emails.value ; subject|email
    timeout_s: 5
```

The bearer token never lives here: ``TOWER_DIRECTORY_TOKEN`` or the secrets file's ``[directory]``
``token`` (``services.auth.directory.directory_of`` reads it). Parsed with the rest of ``auth`` at
start-up; a misspelt key is refused, never ignored (a directory that looks configured but is not).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from services.errors import ConfigError
from services.settings import refuse_unknown_keys

KINDS = ("scim",)
ATTRIBUTES = ("externalId", "userName", "emails.value")
CLAIMS = ("subject", "email")
MAX_TIMEOUT_S = 30.0  # a decision waits on the directory; longer than this is an outage, not an answer
_KEYS = {"kind", "issuer", "base_url", "match", "timeout_s"}


@dataclass(frozen=True)
class DirectoryConfig:
    kind: str
    issuer: str
    base_url: str  # without a trailing slash
    attribute: str  # the SCIM attribute compared (externalId, userName, emails.value)
    claim: str  # what of the approver it is compared with: their subject or their e-mail
    timeout_s: float = 5.0


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _base_url(value: Any) -> str:
    where = "auth.directory.base_url"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be the SCIM base URL (e.g. https://idp.example.com/scim/v2).")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{where} must be an http(s) URL without query or fragment, got {value!r}.")
    if parts.username or parts.password:
        raise ConfigError(f"{where} must not carry credentials; the token goes in TOWER_DIRECTORY_TOKEN.")
    # The bearer token travels with every request: in clear text only to this machine.
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConfigError(f"{where} must use https (http only on loopback), got {value!r}.")
    return value.strip().rstrip("/")


def _timeout(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0 < number <= MAX_TIMEOUT_S:
        raise ConfigError(f"auth.directory.timeout_s must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], "
                          f"got {value!r}.")
    return number


def parse_directory_config(raw: Any) -> DirectoryConfig | None:
    """``auth.directory`` parsed; None when absent (the ledger's latest roles are used instead)."""
    if raw is None:
        return None
    where = "auth.directory"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping (kind, issuer, base_url, match, timeout_s).")
    refuse_unknown_keys(where, raw, _KEYS)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    issuer = raw.get("issuer")
    if not isinstance(issuer, str) or not issuer.strip():
        raise ConfigError(f"{where}.issuer must name the issuer whose people the directory knows "
                          "(the ID token's iss).")
    match = raw.get("match")
    if not isinstance(match, dict):
        raise ConfigError(f"{where}.match must be a mapping: {{attribute: {'|'.join(ATTRIBUTES)}, "
                          f"claim: {'|'.join(CLAIMS)}}}.")
    refuse_unknown_keys(f"{where}.match", match, {"attribute", "claim"})
    attribute, claim = match.get("attribute"), match.get("claim")
    if attribute not in ATTRIBUTES:
        raise ConfigError(f"{where}.match.attribute must be one of {', '.join(ATTRIBUTES)}, got {attribute!r}.")
    if claim not in CLAIMS:
        raise ConfigError(f"{where}.match.claim must be one of {', '.join(CLAIMS)}, got {claim!r}.")
    return DirectoryConfig(kind=str(kind), issuer=issuer, base_url=_base_url(raw.get("base_url")),
                           attribute=str(attribute), claim=str(claim),
                           timeout_s=_timeout(raw.get("timeout_s", 5.0)))
