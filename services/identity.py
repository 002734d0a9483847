"""Who is acting: a person signed in through OIDC, a service account (CI), or nobody (read-only).

People are identified by issuer + subject, the only pair an identity provider promises to keep
unique and stable; e-mail addresses change and can be reused, so they are shown, never compared.
Roles come from one ID-token claim (e.g. ``groups``) mapped to tower roles in tower.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.errors import ConfigError, Forbidden

ROLES = ("viewer", "data_scientist", "model_owner", "reviewer", "admin")


@dataclass(frozen=True)
class AuthConfig:
    """The ``auth`` section of tower.yaml."""

    roles_claim: str = "groups"
    # value found in the roles claim -> tower role
    role_mapping: dict[str, str] = field(default_factory=dict)
    # service-account name -> its roles (used by the CLI under TOWER_SERVICE_ACCOUNT)
    service_accounts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    service_issuer: str = "tower-service"

    def __hash__(self) -> int:
        return hash((self.roles_claim, tuple(sorted(self.role_mapping.items()))))


@dataclass(frozen=True)
class Actor:
    issuer: str
    subject: str
    name: str
    email: str | None = None
    roles: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        """The identity compared everywhere (four-eyes, requester, ledger)."""
        return f"{self.issuer}|{self.subject}"

    @property
    def authenticated(self) -> bool:
        return bool(self.issuer and self.subject)

    def is_same_person(self, issuer: str, subject: str) -> bool:
        return self.authenticated and (self.issuer, self.subject) == (issuer, subject)

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))


ANONYMOUS = Actor(issuer="", subject="", name="anonymous (read-only)", roles=frozenset({"viewer"}))


def _role(value: Any, where: str) -> str:
    if value not in ROLES:
        raise ConfigError(f"{where}: {value!r} is not a role; roles are {', '.join(ROLES)}.")
    return str(value)


def parse_auth_config(raw: Any) -> AuthConfig:
    if raw is None:
        return AuthConfig()
    if not isinstance(raw, dict):
        raise ConfigError("auth must be a mapping (roles_claim, roles, service_accounts).")
    mapping = raw.get("roles") or {}
    accounts = raw.get("service_accounts") or {}
    if not isinstance(mapping, dict) or not isinstance(accounts, dict):
        raise ConfigError("auth.roles and auth.service_accounts must be mappings.")
    parsed_accounts = {}
    for name, spec in accounts.items():
        roles = (spec or {}).get("roles") if isinstance(spec, dict) else None
        if not isinstance(roles, list):
            raise ConfigError(f"auth.service_accounts.{name} needs a list of roles.")
        parsed_accounts[str(name)] = tuple(_role(r, f"auth.service_accounts.{name}") for r in roles)
    return AuthConfig(
        roles_claim=str(raw.get("roles_claim", "groups")),
        role_mapping={str(k): _role(v, f"auth.roles.{k}") for k, v in mapping.items()},
        service_accounts=parsed_accounts,
        service_issuer=str(raw.get("service_issuer", "tower-service")),
    )


def roles_from_claims(claims: Mapping[str, Any], auth: AuthConfig) -> frozenset[str]:
    """Map the roles claim to tower roles; unknown groups give nothing (deny by default)."""
    raw = claims.get(auth.roles_claim)
    values = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else []
    return frozenset(auth.role_mapping[v] for v in values if isinstance(v, str) and v in auth.role_mapping)


def actor_from_claims(claims: Mapping[str, Any], auth: AuthConfig) -> Actor:
    """The actor of a signed-in user from the ID-token claims (``st.user``)."""
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not isinstance(issuer, str) or not isinstance(subject, str) or not issuer or not subject:
        return ANONYMOUS
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    name = claims.get("name") if isinstance(claims.get("name"), str) else None
    return Actor(issuer=issuer, subject=subject, name=name or email or subject, email=email,
                 roles=roles_from_claims(claims, auth))


def service_actor(account: str, auth: AuthConfig) -> Actor:
    """The actor of a service account (CI) named in the environment; ConfigError if unknown."""
    if account not in auth.service_accounts:
        raise ConfigError(f"Service account {account!r} is not declared under auth.service_accounts in tower.yaml.")
    return Actor(issuer=auth.service_issuer, subject=account, name=f"service:{account}",
                 roles=frozenset(auth.service_accounts[account]))


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
