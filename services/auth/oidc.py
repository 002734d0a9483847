"""The identity provider asked again at the moment of a write: the user's current claims.

Streamlit keeps the ID-token claims in a cookie for 30 days and never re-checks them, so a
reviewer removed from the reviewers group would keep the role that long. Before every decision the
tower asks the provider's userinfo endpoint with the user's access token instead.
"""

from __future__ import annotations

from typing import Any

import requests

from services.errors import Forbidden

STALE = "Your roles could not be confirmed with the identity provider"


def fetch_userinfo(server_metadata_url: str, access_token: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """The claims the provider gives for this access token now; Forbidden when it will not say."""
    try:
        metadata = requests.get(server_metadata_url, timeout=timeout_s)
        metadata.raise_for_status()
        endpoint = metadata.json()["userinfo_endpoint"]
        answer = requests.get(endpoint, headers={"Authorization": f"Bearer {access_token}"}, timeout=timeout_s)
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise Forbidden(f"{STALE}: the provider did not answer ({type(exc).__name__}).",
                        "Nothing was recorded. Try again in a moment.") from exc
    if answer.status_code in (401, 403):
        raise Forbidden(f"{STALE}: your sign-in is no longer accepted.", "Sign out and sign in again.")
    if answer.status_code != 200:
        raise Forbidden(f"{STALE}: the provider answered {answer.status_code}.", "Nothing was recorded.")
    try:
        claims = answer.json()
    except ValueError as exc:
        raise Forbidden(f"{STALE}: the provider's answer was not JSON.", "Nothing was recorded.") from exc
    if not isinstance(claims, dict):
        raise Forbidden(f"{STALE}: the provider's answer was not a claims object.", "Nothing was recorded.")
    return claims
