"""Who is acting: a person signed in through OIDC, a service account (CI), or nobody (read-only).

People are identified by issuer + subject, the only pair an identity provider promises to keep
unique and stable. Roles come from one ID-token claim (e.g. ``groups``) mapped to tower roles in
tower.yaml. For the four-eyes rule a person is also *recognised* by every name they go by
(subject, ``preferred_username``, e-mail), compared normalised (NFKC + casefold): refusing a
look-alike errs on the safe side. An optional ``auth.person_claim`` (e.g. a verified ``email``)
joins one person's accounts under several issuers into one :attr:`Actor.person_key`.

Service accounts (the CLI, CI) prove who they are with a secret token, checked against a salted
hash in tower.yaml (``auth.service_accounts.<name>.token_hash``) or in the secrets file
(``[service_accounts]``). They hold at most viewer, data_scientist and model_owner: service
accounts request; people decide.
"""

from __future__ import annotations

import hmac
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.auth.directory_config import DirectoryConfig, parse_directory_config
from services.auth.service_tokens import parse_token_hash, verify_token
from services.errors import ConfigError, Forbidden
from services.settings import Settings, refuse_unknown_keys

ROLES = ("viewer", "data_scientist", "model_owner", "reviewer", "admin")
SERVICE_ROLES = ("viewer", "data_scientist", "model_owner")  # never reviewer or admin
CAPABILITIES = ("repair",)  # what a service account may be granted besides its roles
TOKEN_ENV = "TOWER_SERVICE_TOKEN"
# The demo's published token of ci-bot (its hash is in the committed tower.yaml): refused outside
# demo mode, like the other placeholder secrets.
DEMO_SERVICE_TOKEN = "tower-demo-ci-bot-token"


def normalize_name(text: str) -> str:
    """A name as compared: Unicode NFKC (fullwidth and compatibility forms folded), casefolded, stripped."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


@dataclass(frozen=True)
class ServiceAccount:
    """One entry of ``auth.service_accounts``."""

    roles: tuple[str, ...] = ()
    token_hash: str | None = None  # salted hash from tower.yaml (the secrets file may give one instead)
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AuthConfig:
    """The ``auth`` section of tower.yaml."""

    roles_claim: str = "groups"
    # value found in the roles claim -> tower role
    role_mapping: dict[str, str] = field(default_factory=dict)
    # service-account name -> its roles, token hash and capabilities (the CLI, TOWER_SERVICE_ACCOUNT)
    service_accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    service_issuer: str = "tower-service"
    person_claim: str | None = None  # claim naming the person across accounts, e.g. "email"
    # where the approvers' current rights come from (None: the newest roles the ledger has seen)
    directory: DirectoryConfig | None = None

    def __hash__(self) -> int:
        return hash((self.roles_claim, tuple(sorted(self.role_mapping.items())), self.service_issuer,
                     self.person_claim, self.directory))


@dataclass(frozen=True)
class Actor:
    issuer: str
    subject: str
    name: str
    email: str | None = None
    roles: frozenset[str] = frozenset()
    kind: str = "person"  # "person" | "service"
    username: str | None = None  # the OIDC preferred_username
    person: str | None = None  # normalised value of auth.person_claim, when the token carries it
    capabilities: frozenset[str] = frozenset()  # of a service account, e.g. "repair"

    @property
    def key(self) -> str:
        """The identity recorded everywhere (ledger, requester)."""
        return f"{self.issuer}|{self.subject}"

    @property
    def person_key(self) -> str:
        """The person behind the account: the person claim if known, else issuer + subject."""
        return f"person:{self.person}" if self.person else self.key

    @property
    def authenticated(self) -> bool:
        return bool(self.issuer and self.subject)

    @property
    def is_service(self) -> bool:
        return self.kind == "service"

    @property
    def names(self) -> frozenset[str]:
        """Every name this actor goes by, normalised (subject, username, e-mail)."""
        values = (self.subject, self.username, self.email)
        return frozenset(n for n in (normalize_name(v) for v in values if isinstance(v, str)) if n)

    def answers_to(self, name: str | None) -> bool:
        """Whether ``name`` (an MLflow user, an on-behalf-of name) is one of this actor's names."""
        if not isinstance(name, str):
            return False
        wanted = normalize_name(name)
        return bool(wanted) and wanted in self.names

    def is_same_person(self, issuer: str, subject: str) -> bool:
        return self.authenticated and (self.issuer, self.subject) == (issuer, subject)

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


ANONYMOUS = Actor(issuer="", subject="", name="anonymous (read-only)", roles=frozenset({"viewer"}))


def _role(value: Any, where: str) -> str:
    if value not in ROLES:
        raise ConfigError(f"{where}: {value!r} is not a role; roles are {', '.join(ROLES)}.")
    return str(value)


_ACCOUNT_KEYS = {"roles", "token_hash", "repair"}


def _service_account(name: str, spec: Any) -> ServiceAccount:
    where = f"auth.service_accounts.{name}"
    roles = spec.get("roles") if isinstance(spec, dict) else None
    if not isinstance(roles, list):
        raise ConfigError(f"{where} needs a list of roles.")
    refuse_unknown_keys(where, spec, _ACCOUNT_KEYS)
    parsed = tuple(_role(r, where) for r in roles)
    deciding = [r for r in parsed if r not in SERVICE_ROLES]
    if deciding:
        raise ConfigError(f"{where}: a service account may not hold {', '.join(deciding)}. Service accounts "
                          "request; people decide.",
                          f"Give it one of {', '.join(SERVICE_ROLES)}; for repairs declare `repair: true`.")
    token_hash = spec.get("token_hash")
    if token_hash is not None:
        try:
            parse_token_hash(token_hash)
        except ValueError as exc:
            raise ConfigError(f"{where}.token_hash: {exc}.") from None
    repair = spec.get("repair", False)
    if not isinstance(repair, bool):
        raise ConfigError(f"{where}.repair must be true or false, got {repair!r}.")
    return ServiceAccount(roles=parsed, token_hash=token_hash,
                          capabilities=frozenset({"repair"}) if repair else frozenset())


def auth_config(settings: Settings) -> AuthConfig:
    """tower.yaml's ``auth:`` section (roles mapping, service accounts, person claim)."""
    return settings.parsed("auth", parse_auth_config)


AUTH_KEYS = frozenset({"roles_claim", "roles", "service_accounts", "service_issuer", "person_claim", "directory"})


def parse_auth_config(raw: Any) -> AuthConfig:
    if raw is None:
        return AuthConfig()
    if not isinstance(raw, dict):
        raise ConfigError("auth must be a mapping (roles_claim, roles, service_accounts).")
    # A misspelt `directroy:` must not silently leave the approvers' directory check off.
    refuse_unknown_keys("auth", raw, AUTH_KEYS)
    mapping = raw.get("roles") or {}
    accounts = raw.get("service_accounts") or {}
    if not isinstance(mapping, dict) or not isinstance(accounts, dict):
        raise ConfigError("auth.roles and auth.service_accounts must be mappings.")
    person_claim = raw.get("person_claim")
    if person_claim is not None and (not isinstance(person_claim, str) or not person_claim.strip()):
        raise ConfigError(f"auth.person_claim must name an ID-token claim (e.g. email), got {person_claim!r}.")
    service_issuer = raw.get("service_issuer", "tower-service")
    if not isinstance(service_issuer, str) or not service_issuer.strip():
        raise ConfigError(f"auth.service_issuer must be a non-empty string, got {service_issuer!r}.")
    return AuthConfig(
        roles_claim=str(raw.get("roles_claim", "groups")),
        role_mapping={str(k): _role(v, f"auth.roles.{k}") for k, v in mapping.items()},
        service_accounts={str(name): _service_account(str(name), spec) for name, spec in accounts.items()},
        service_issuer=service_issuer,
        person_claim=person_claim,
        directory=parse_directory_config(raw.get("directory")),
    )


def roles_from_claims(claims: Mapping[str, Any], auth: AuthConfig) -> frozenset[str]:
    """Map the roles claim to tower roles; unknown groups give nothing (deny by default)."""
    raw = claims.get(auth.roles_claim)
    values = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else []
    return frozenset(auth.role_mapping[v] for v in values if isinstance(v, str) and v in auth.role_mapping)


def _text(claims: Mapping[str, Any], key: str) -> str | None:
    value = claims.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _person(claims: Mapping[str, Any], auth: AuthConfig) -> str | None:
    if not auth.person_claim:
        return None
    value = _text(claims, auth.person_claim)
    if value is None or (auth.person_claim == "email" and claims.get("email_verified") is not True):
        return None  # an unverified e-mail address names nobody
    return normalize_name(value) or None


def actor_from_claims(claims: Mapping[str, Any], auth: AuthConfig) -> Actor:
    """The actor of a signed-in user from the ID-token claims (``st.user``)."""
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not isinstance(issuer, str) or not isinstance(subject, str) or not issuer or not subject:
        return ANONYMOUS
    if issuer == auth.service_issuer:  # a token may not pass for a service account (or vice versa)
        return ANONYMOUS
    email, name = _text(claims, "email"), _text(claims, "name")
    return Actor(issuer=issuer, subject=subject, name=name or email or subject, email=email,
                 roles=roles_from_claims(claims, auth), kind="person",
                 username=_text(claims, "preferred_username"), person=_person(claims, auth))


def service_actor(account: str, auth: AuthConfig, token: str | None, *, demo: bool,
                  secret_hashes: Mapping[str, str] | None = None) -> Actor:
    """The actor of a service account that proved itself with ``token``.

    The stored hash comes from ``secret_hashes`` (the secrets file's ``[service_accounts]``) if it
    names the account, else from tower.yaml. ConfigError for an undeclared account, a missing
    token or a missing hash; Forbidden for a wrong token (without saying which part is wrong) and
    for the published demo token outside demo mode.
    """
    spec = auth.service_accounts.get(account)
    if spec is None:
        raise ConfigError(f"Service account {account!r} is not declared under auth.service_accounts in tower.yaml.")
    if not token:
        raise ConfigError(f"{TOKEN_ENV} is not set: naming the account is not enough to act as it.",
                          f"Set {TOKEN_ENV} to the token of {account!r} (kept in your CI's secret store).")
    stored = (secret_hashes or {}).get(account) or spec.token_hash
    if not stored:
        raise ConfigError(f"Service account {account!r} has no token hash configured, so nobody can act as it.",
                          "Run `tower token new`, keep the token secret and put the hash under "
                          f"auth.service_accounts.{account}.token_hash in tower.yaml or under "
                          "[service_accounts] in the secrets file.")
    try:
        parse_token_hash(stored)
    except ValueError as exc:
        raise ConfigError(f"The token hash of service account {account!r} is malformed: {exc}.") from None
    if not demo and hmac.compare_digest(token.encode("utf-8"), DEMO_SERVICE_TOKEN.encode("utf-8")):
        raise Forbidden("The published demo token is refused outside demo mode.",
                        "Make a token of your own with `tower token new`.")
    if not verify_token(token, stored):
        raise Forbidden("The service account and token do not match: refused.",
                        f"Check TOWER_SERVICE_ACCOUNT and {TOKEN_ENV}.")
    return Actor(issuer=auth.service_issuer, subject=account, name=f"service:{account}",
                 roles=frozenset(spec.roles), kind="service", capabilities=spec.capabilities)


# Values of the committed example and the demo: a deployment that still carries one of them has
# not been configured, and signing in with it would be signing in with a published secret.
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "replace-me", "secret", "xxx", "demo-client-secret"})
REQUIRED_AUTH_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")


@dataclass(frozen=True)
class SignInStatus:
    enabled: bool
    problem: str | None = None  # why sign-in is off although an [auth] section exists


def sign_in_status(auth_section: Mapping[str, Any] | None, *, demo: bool) -> SignInStatus:
    """Whether the [auth] secrets allow sign-in; placeholder secrets only in demo mode."""
    if not auth_section:
        return SignInStatus(enabled=False)
    missing = [key for key in REQUIRED_AUTH_KEYS if not auth_section.get(key)]
    if missing:
        return SignInStatus(False, f"The [auth] secrets are incomplete: missing {', '.join(missing)}.")
    if not demo:
        weak = [key for key in ("cookie_secret", "client_secret")
                if str(auth_section[key]).strip().lower() in PLACEHOLDER_SECRETS]
        if len(str(auth_section["cookie_secret"])) < 16 and "cookie_secret" not in weak:
            weak.append("cookie_secret (shorter than 16 characters)")
        if weak:
            return SignInStatus(False, f"Placeholder secrets are refused outside demo mode: {', '.join(weak)}.")
    return SignInStatus(enabled=True)


def refreshed_actor(id_claims: Mapping[str, Any], userinfo: Mapping[str, Any], auth: AuthConfig) -> Actor:
    """The actor with roles from the provider's current userinfo, for the same person only.

    Issuer and subject stay those of the signed ID token; a userinfo answer for another subject is
    refused. A roles claim missing from userinfo means no roles (deny by default).
    """
    if userinfo.get("sub") != id_claims.get("sub"):
        raise Forbidden("The identity provider answered for another user.", "Sign out and sign in again.")
    current = {**id_claims, auth.roles_claim: userinfo.get(auth.roles_claim, [])}
    return actor_from_claims(current, auth)


def sign_in_expired(id_claims: Mapping[str, Any], now_epoch_s: float) -> bool:
    """True when the ID token's own expiry has passed (Streamlit does not check it)."""
    exp = id_claims.get("exp")
    return not isinstance(exp, (int, float)) or exp < now_epoch_s
