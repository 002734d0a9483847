"""Who is using this session: the signed-in actor, or read-only when sign-in is not configured."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import streamlit as st

from services.auth.identity import (
    ANONYMOUS,
    Actor,
    SignInStatus,
    actor_from_claims,
    auth_config,
    refreshed_actor,
    sign_in_expired,
    sign_in_status,
)
from services.auth.oidc import fetch_userinfo
from services.errors import Forbidden
from services.settings import Settings


def _auth_secrets() -> Mapping[str, Any] | None:
    try:
        auth = st.secrets.get("auth")
    except FileNotFoundError:  # no secrets file at all: sign-in is simply not configured
        return None
    return dict(auth) if auth else None


def sign_in(settings: Settings) -> SignInStatus:
    return sign_in_status(_auth_secrets(), demo=settings.demo)


def current_actor(settings: Settings) -> Actor | None:
    """The actor of this session; None when sign-in is configured but nobody has signed in yet.

    Roles are re-read from the ID-token claims on every run, never kept in session state.
    """
    if not sign_in(settings).enabled:
        return ANONYMOUS
    if not st.user.is_logged_in:
        return None
    return actor_from_claims(st.user.to_dict(), auth_config(settings))


def require_roles(settings: Settings, *roles: str) -> Actor | None:
    """The actor if they hold one of ``roles``; otherwise say so and return None.

    Navigation already hides the page from others; this is the page's own check for a deep link or a
    role lost since the navigation was built. Every write is authorized again by the service.
    """
    actor = current_actor(settings)
    if actor is None or not actor.has_role(*roles):
        st.error(f"This page is for the roles {', '.join(roles)}; you are signed in without them.",
                 icon=":material/block:")
        return None
    return actor


def actor_for_write(settings: Settings) -> Actor:
    """The actor with the roles they hold NOW, asked of the identity provider just before a write.

    With an access token (``expose_tokens = ["access"]``) the provider's userinfo gives the current
    groups, so a reviewer removed from the group is refused at the next decision. Without one, the
    ID token's own expiry bounds how long a removed role can last. Raises Forbidden otherwise.
    """
    actor = current_actor(settings)
    if actor is None or not actor.authenticated:
        return ANONYMOUS  # the services deny every write to it
    claims = st.user.to_dict()
    access = st.user.tokens.get("access") if hasattr(st.user, "tokens") else None
    auth = _auth_secrets() or {}
    if access:
        userinfo = fetch_userinfo(str(auth["server_metadata_url"]), access)
        return refreshed_actor(claims, userinfo, auth_config(settings))
    if sign_in_expired(claims, time.time()):
        raise Forbidden("Your sign-in has expired.", "Sign out and sign in again; nothing was recorded.")
    return actor
