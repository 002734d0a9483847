"""A person's rights NOW, asked of the organisation's directory (SCIM 2.0, RFC 7643/7644).

OIDC lets the tower ask the provider about the person signed in (userinfo), never about anyone
else. When a quorum completes, though, the tower must know whether the OTHER approvers still hold
the right they approved with: a reviewer removed from the group yesterday who has not signed in
since must stop counting. SCIM is the standard API for that question: ``GET {base}/Users?filter=``
answers with the person's ``active`` flag and ``groups``, which map to tower roles through the same
``auth.roles`` mapping the ID-token groups use.

Three answers differ: a person found and active (their roles, maybe none), a person the directory
does not know or knows as inactive (no rights at all, and why), and no answer (DirectoryUnavailable:
a decision that depends on it is refused, nothing is recorded, the reviewer retries).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from services.auth.directory_config import DirectoryConfig
from services.auth.identity import PLACEHOLDER_SECRETS, auth_config, normalize_name
from services.errors import ConfigError, TowerError
from services.secrets_file import load_secrets
from services.settings import Settings

TOKEN_ENV = "TOWER_DIRECTORY_TOKEN"
SCIM_JSON = "application/scim+json"


class DirectoryUnavailable(TowerError):
    """The directory could not say who holds which rights now (down, slow, refused our token)."""


@dataclass(frozen=True)
class DirectoryRights:
    """What the directory says of one person now."""

    roles: frozenset[str]  # tower roles from their groups (empty: found, active, in no mapped group)
    absent: str | None = None  # why they have no rights at all: unknown, deactivated, ambiguous

    @property
    def found(self) -> bool:
        return self.absent is None


class Directory(Protocol):
    """Where the current rights of people other than the one signed in come from."""

    @property
    def description(self) -> str:
        """The directory in words, for the page ("the SCIM directory at https://…")."""

    def covers(self, issuer: str) -> bool:
        """Whether this directory knows the people of ``issuer`` (the others keep the ledger's roles)."""

    def current_rights(self, issuer: str, subject: str, email: str | None) -> DirectoryRights:
        """The person's rights now; DirectoryUnavailable when the directory does not answer."""


def scim_filter(attribute: str, value: str) -> str:
    """``attribute eq "value"`` with the value a JSON string (RFC 7644 3.4.2.2: compValue is a JSON
    literal): a quote, backslash or control character in it is escaped, so no subject, however
    hostile (``x" or userName pr or "``), can add a clause and widen the filter."""
    return f"{attribute} eq {json.dumps(value, ensure_ascii=False)}"


def _values_of(user: Mapping[str, Any], attribute: str) -> list[str]:
    if attribute == "emails.value":
        emails = user.get("emails")
        return [e["value"] for e in emails if isinstance(e, dict) and isinstance(e.get("value"), str)] \
            if isinstance(emails, list) else []
    value = user.get(attribute)
    return [value] if isinstance(value, str) else []


def _matches(user: Mapping[str, Any], attribute: str, wanted: str) -> bool:
    """The user really carries ``wanted`` (checked here too: a server that ignores or mis-parses the
    filter must not make someone else's rights stand in). externalId is case-exact in RFC 7643;
    userName and e-mails are not."""
    values = _values_of(user, attribute)
    if attribute == "externalId":
        return wanted in values
    return normalize_name(wanted) in {normalize_name(v) for v in values}


def _group_names(user: Mapping[str, Any]) -> list[str]:
    groups = user.get("groups")
    if not isinstance(groups, list):
        return []
    return [g[key] for g in groups if isinstance(g, dict) for key in ("display", "value")
            if isinstance(g.get(key), str)]


class ScimDirectory:
    """A SCIM 2.0 service provider's ``/Users`` endpoint, with a bearer token and a bounded timeout."""

    def __init__(self, config: DirectoryConfig, token: str, role_mapping: Mapping[str, str]) -> None:
        self.config = config
        self._token = token
        self._mapping = dict(role_mapping)

    @property
    def description(self) -> str:
        return f"the SCIM directory at {self.config.base_url}"

    def covers(self, issuer: str) -> bool:
        return issuer == self.config.issuer

    def _match_value(self, subject: str, email: str | None) -> str | None:
        return subject if self.config.claim == "subject" else email

    def current_rights(self, issuer: str, subject: str, email: str | None) -> DirectoryRights:
        wanted = self._match_value(subject, email)
        if not wanted:
            return DirectoryRights(frozenset(), "has no e-mail address the directory could be asked about")
        users = self._query(wanted)
        mine = [u for u in users if isinstance(u, dict) and _matches(u, self.config.attribute, wanted)]
        if not mine:
            return DirectoryRights(frozenset(), "is not in the directory")
        if len(mine) > 1:
            return DirectoryRights(frozenset(), f"matches {len(mine)} people in the directory")
        user = mine[0]
        # RFC 7643 makes `active` optional; present and anything but true means no rights.
        if "active" in user and user["active"] is not True:
            return DirectoryRights(frozenset(), "is deactivated in the directory")
        return DirectoryRights(frozenset(self._mapping[g] for g in _group_names(user) if g in self._mapping))

    def _query(self, wanted: str) -> list[Any]:
        where = f"The directory ({self.config.base_url})"
        try:
            answer = requests.get(
                f"{self.config.base_url}/Users",
                params={"filter": scim_filter(self.config.attribute, wanted), "count": "10"},
                headers={"Authorization": f"Bearer {self._token}", "Accept": SCIM_JSON},
                timeout=self.config.timeout_s, allow_redirects=False)
        except requests.RequestException as exc:
            raise DirectoryUnavailable(f"{where} did not answer ({type(exc).__name__}).",
                                       "Nothing was recorded. Try again once it is reachable.") from exc
        if answer.status_code in (401, 403):
            raise DirectoryUnavailable(f"{where} refused the tower's token (HTTP {answer.status_code}).",
                                       f"Nothing was recorded. Check {TOKEN_ENV}.")
        if answer.status_code != 200:
            raise DirectoryUnavailable(f"{where} answered HTTP {answer.status_code}.",
                                       "Nothing was recorded. Try again in a moment.")
        try:
            body = answer.json()
        except ValueError as exc:
            raise DirectoryUnavailable(f"{where} answered something that is not JSON.",
                                       "Nothing was recorded.") from exc
        resources = body.get("Resources", []) if isinstance(body, dict) else None
        if not isinstance(resources, list):
            raise DirectoryUnavailable(f"{where} answered something that is not a SCIM list response.",
                                       "Nothing was recorded.")
        return resources


class DecisionDirectory:
    """A directory whose answers are kept for one decision (or one page draw): each person is asked
    once, and every count within it sees the same answer. A failure is kept too."""

    def __init__(self, inner: Directory) -> None:
        self._inner = inner
        self._answers: dict[tuple[str, str, str | None], DirectoryRights | DirectoryUnavailable] = {}
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return self._inner.description

    def covers(self, issuer: str) -> bool:
        return self._inner.covers(issuer)

    def current_rights(self, issuer: str, subject: str, email: str | None) -> DirectoryRights:
        key = (issuer, subject, email)
        with self._lock:
            known = self._answers.get(key)
        if known is None:
            try:
                known = self._inner.current_rights(issuer, subject, email)
            except DirectoryUnavailable as exc:
                known = exc
            with self._lock:
                self._answers[key] = known
        if isinstance(known, DirectoryUnavailable):
            raise known
        return known


def directory_token(settings: Settings) -> str:
    """The bearer token: ``TOWER_DIRECTORY_TOKEN``, else the secrets file's ``[directory] token``."""
    token = settings.environ.get(TOKEN_ENV, "").strip()
    if not token:
        section = load_secrets(environ=settings.environ).get("directory") or {}
        value = section.get("token") if isinstance(section, dict) else None
        token = value.strip() if isinstance(value, str) else ""
    if not token:
        raise ConfigError("auth.directory is configured but its token is not set.",
                          f"Set {TOKEN_ENV}, or `token` under [directory] in the secrets file.")
    if not settings.demo and token.lower() in PLACEHOLDER_SECRETS:
        raise ConfigError("The directory token is a placeholder; it is refused outside demo mode.")
    return token


def directory_of(settings: Settings) -> Directory | None:
    """The directory tower.yaml configures (``auth.directory``), or None: then the approvers' rights
    are the newest the ledger has seen. ConfigError when configured without a token."""
    auth = auth_config(settings)
    if auth.directory is None:
        return None
    return ScimDirectory(auth.directory, directory_token(settings), auth.role_mapping)
