"""The signed-in cookie, got through the real sign-in round trip, as a browser gets it.

1. ``GET /_stcore/health``: the server sets the ``_streamlit_xsrf`` cookie.
2. Open a session on the default page: signed out, it shows the sign-in screen and its "Sign in"
   button; press it (a ``rerun_script`` whose widget state triggers the button): ``st.login()``
   answers with an ``auth_redirect`` ForwardMsg to ``/auth/login?provider=<token signed by the server>``.
3. Follow it over HTTP: Streamlit redirects to the OIDC provider's authorize page (PKCE, state and
   nonce kept in Streamlit's own session cookie); the provider's form is posted with the user picked,
   the provider redirects to ``/oauth2callback``, Streamlit checks the code and sets ``_streamlit_user``.

Nothing is signed here: every cookie comes from the server's answers. ``requests`` runs in a thread
(its session holds the cookie jar across the redirects).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urljoin

import requests

from bench.protocol_load.wire import XSRF_COOKIE, ProtocolError, StreamSession

USER_COOKIE = "_streamlit_user"


def xsrf_cookies(http: requests.Session, base_url: str, timeout_s: float = 30.0) -> dict[str, str]:
    http.get(base_url + "/_stcore/health", timeout=timeout_s).raise_for_status()
    cookies = http.cookies.get_dict()
    if XSRF_COOKIE not in cookies:
        raise ProtocolError("/_stcore/health set no _streamlit_xsrf cookie (is server.enableXsrfProtection off?)")
    return cookies


def _follow_login(http: requests.Session, base_url: str, login_path: str, user: str, timeout_s: float) -> None:
    form = http.get(urljoin(base_url + "/", login_path), timeout=timeout_s)
    form.raise_for_status()
    if "name=\"sub\"" not in form.text:
        raise ProtocolError(f"the login redirect did not reach the provider's form (ended at {form.url})")
    # The provider's form posts back to its own URL (the authorize request with its query).
    done = http.post(form.url, data={"sub": user}, timeout=timeout_s)
    done.raise_for_status()
    if USER_COOKIE not in http.cookies.get_dict() and not any(
            name.startswith(USER_COOKIE) for name in http.cookies.get_dict()):
        raise ProtocolError(f"signed in at the provider as {user!r} but the app set no {USER_COOKIE} cookie "
                            f"(ended at {done.url}, {done.status_code})")


async def sign_in(base_url: str, user: str, timeout_s: float = 60.0) -> tuple[dict[str, str], float]:
    """Cookies of a browser signed in as ``user`` at ``base_url``, and the seconds the round trip took."""
    started = time.perf_counter()
    http = requests.Session()
    try:
        cookies = await asyncio.to_thread(xsrf_cookies, http, base_url, timeout_s)
        stream = await StreamSession.open(base_url, cookies, timeout_s)
        try:
            screen = await stream.run_page("", timeout_s=timeout_s)
            button = screen.buttons.get("Sign in")
            if button is None:
                raise ProtocolError(f"no Sign in button on the signed-out screen ({screen.status})")
            pressed = await stream.run_page(
                "", widgets=[{"id": button, "trigger": True}], timeout_s=timeout_s)
            if not pressed.auth_redirect:
                raise ProtocolError(f"pressing Sign in gave no auth redirect ({pressed.status})")
        finally:
            await stream.close()
        await asyncio.to_thread(_follow_login, http, base_url, pressed.auth_redirect, user, timeout_s)
        return http.cookies.get_dict(), time.perf_counter() - started
    finally:
        http.close()
