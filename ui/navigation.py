"""Which pages a visitor gets, and how a deep link survives sign-in.

Every page's URL always resolves: a visitor who is signed out gets "Sign in to open Drift explorer"
at /drift, and a role without the page gets "The review queue needs the reviewer role" at /review,
never Streamlit's "Page not found". Those stand-ins are hidden from the sidebar.

Sign-in leaves the app (the identity provider, then /oauth2callback) and comes back to "/", in a
new session. So the link asked for is kept on the server for a few minutes, keyed by a digest of
this browser's XSRF token (a cookie Streamlit keeps across the round trip), and opened once the
visitor is back and signed in. Only known page paths and a bounded set of query parameters are kept.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from services.auth.identity import Actor


@dataclass(frozen=True)
class PageSpec:
    file: str
    title: str
    icon: str
    url_path: str
    section: str
    roles: tuple[str, ...] = ()  # empty: every signed-in role
    refused: str = ""  # what a signed-in actor without those roles is told


PAGES = (
    PageSpec("app_pages/fleet.py", "Fleet", ":material/dashboard:", "fleet", "Monitor"),
    PageSpec("app_pages/model.py", "Model detail", ":material/account_tree:", "model", "Monitor"),
    PageSpec("app_pages/latency.py", "Latency", ":material/speed:", "latency", "Monitor"),
    PageSpec("app_pages/drift.py", "Drift explorer", ":material/ssid_chart:", "drift", "Monitor"),
    PageSpec("app_pages/fairness.py", "Fairness", ":material/balance:", "fairness", "Monitor"),
    PageSpec("app_pages/performance.py", "Performance", ":material/trending_up:", "performance", "Monitor"),
    PageSpec("app_pages/alerts.py", "Alerts", ":material/notifications:", "alerts", "Monitor"),
    PageSpec("app_pages/why.py", "Why", ":material/help:", "why", "Monitor"),  # root cause (issue 14)
    PageSpec("app_pages/promotions.py", "Promotions", ":material/upgrade:", "promotions", "Govern",
             ("model_owner", "admin"), "Promotions needs the model_owner role."),
    PageSpec("app_pages/review.py", "Review queue", ":material/fact_check:", "review", "Govern",
             ("reviewer", "admin"), "The review queue needs the reviewer role."),
    PageSpec("app_pages/audit.py", "Audit trail", ":material/history:", "audit", "Govern"),
)
BY_PATH = {p.url_path: p for p in PAGES}
DEFAULT = "fleet"

# What a kept link may carry: the pages' own parameters, short.
_MAX_PARAMS = 8
_MAX_VALUE = 200
_KEEP_S = 600.0
_MAX_KEPT = 10_000


class PendingLinks:
    """Links asked for before sign-in, per browser; each is taken at most once and expires."""

    def __init__(self, keep_s: float = _KEEP_S, max_kept: int = _MAX_KEPT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._kept: OrderedDict[str, tuple[float, str, dict[str, str]]] = OrderedDict()
        self._lock = threading.Lock()
        self._keep_s, self._max_kept, self._clock = keep_s, max_kept, clock

    def remember(self, browser: str, url_path: str, query: Mapping[str, str]) -> bool:
        if url_path not in BY_PATH:
            return False
        params = {str(k)[:64]: str(v)[:_MAX_VALUE] for k, v in list(query.items())[:_MAX_PARAMS]}
        with self._lock:
            self._kept.pop(browser, None)
            self._kept[browser] = (self._clock(), url_path, params)
            while len(self._kept) > self._max_kept:
                self._kept.popitem(last=False)
        return True

    def take(self, browser: str) -> tuple[str, dict[str, str]] | None:
        with self._lock:
            kept = self._kept.pop(browser, None)
        if kept is None or self._clock() - kept[0] > self._keep_s:
            return None
        return kept[1], kept[2]


@st.cache_resource
def pending_links() -> PendingLinks:
    return PendingLinks()


def browser_key(cookies: Mapping[str, str]) -> str | None:
    """A digest of the browser's XSRF token. The cookie's text changes on every response (a fresh
    mask, Tornado's "2|mask|masked-token|time" form) while the token under it stays, so the
    token is unmasked first."""
    raw = cookies.get("_streamlit_xsrf")
    if not raw:
        return None
    parts = raw.split("|")
    token = raw
    if len(parts) == 4 and parts[0] == "2":
        try:
            mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
            token = bytes(a ^ b for a, b in zip(mask, masked, strict=False)).hex()
        except ValueError:
            token = raw
    return hashlib.sha256(token.encode()).hexdigest()


def _current_browser() -> str | None:
    try:
        return browser_key(dict(st.context.cookies))
    except Exception:  # no request context (AppTest, a script thread of its own): nothing to key on
        return None


def _sign_in_stand_in(spec: PageSpec, sign_in_page: Callable[[str], None]) -> StreamlitPage:
    def render() -> None:
        browser = _current_browser()
        if browser is not None:
            pending_links().remember(browser, spec.url_path, dict(st.query_params))
        sign_in_page(f"Sign in to open {spec.title}.")

    render.__name__ = f"sign_in_for_{spec.url_path}"
    return st.Page(render, title=spec.title, url_path=spec.url_path, visibility="hidden")


def _refused_stand_in(spec: PageSpec, actor: Actor) -> StreamlitPage:
    def render() -> None:
        st.title(spec.title)
        held = ", ".join(sorted(actor.roles)) or "none"
        st.error(f"{spec.refused} You are signed in as {actor.name} with the roles: {held}.",
                 icon=":material/block:")
        st.caption("Ask an administrator for the role in the identity provider; the other pages are in the sidebar.")

    render.__name__ = f"refused_{spec.url_path}"
    return st.Page(render, title=spec.title, url_path=spec.url_path, visibility="hidden")


def signed_out_pages(sign_in_page: Callable[[str], None]) -> list[StreamlitPage]:
    """The sign-in page at "/", and every other page's URL asking to sign in first."""
    def login() -> None:
        sign_in_page("")

    return [st.Page(login, title="Sign in", icon=":material/login:", url_path="login", default=True),
            *(_sign_in_stand_in(spec, sign_in_page) for spec in PAGES)]


def signed_in_pages(actor: Actor) -> tuple[dict[str, list[StreamlitPage]], dict[str, StreamlitPage]]:
    """The sidebar's sections for this actor, and every page by URL path (stand-ins included)."""
    sections: dict[str, list[StreamlitPage]] = {}
    by_path: dict[str, StreamlitPage] = {}
    for spec in PAGES:
        if spec.roles and not actor.has_role(*spec.roles):
            page = _refused_stand_in(spec, actor)
        else:
            page = st.Page(spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path,
                           default=spec.url_path == DEFAULT)
        sections.setdefault(spec.section, []).append(page)
        by_path[spec.url_path] = page
    return sections, by_path


def resume_pending_link(by_path: Mapping[str, StreamlitPage]) -> None:
    """Open the link this browser asked for before signing in (once), if any."""
    browser = _current_browser()
    if browser is None:
        return
    kept = pending_links().take(browser)
    if kept is None:
        return
    url_path, query = kept
    if url_path in by_path:
        st.switch_page(by_path[url_path], query_params=query or None)
