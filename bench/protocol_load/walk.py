"""One user's session: signed in beforehand, then fleet → drift → model → review with no pause.

The walk runs on one websocket, page after page, as the front end does when a user follows the
sidebar's links (each page a ``rerun_script`` naming its url path and query). A page counts as a
success when its script finished, it drew its own title, and it showed no exception, no error box and
no sign-in screen.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bench.protocol_load.signin import sign_in
from bench.protocol_load.wire import PageRun, StreamSession


@dataclass(frozen=True)
class Page:
    name: str
    path: str       # the url path st.navigation knows the page by
    query: str
    title: str      # what its st.title says


PAGES = (
    Page("fleet", "", "", "Fleet overview"),  # the default page: url path ""
    Page("drift", "drift", "model=credit-risk", "Drift explorer"),
    Page("model", "model", "model=fraud-detection", "Model detail"),
    Page("review", "review", "", "Review queue"),
)
# The demo's people who may open every page of the walk (the review queue needs reviewer or admin).
USERS = ("rita", "ravi", "adam")


@dataclass
class Session:
    index: int
    user: str
    base_url: str
    cookies: dict[str, str] = field(default_factory=dict)
    signin_s: float | None = None
    signin_retries: int = 0
    connect_s: float | None = None
    pages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and len(self.pages) > 0 and all(p["ok"] for p in self.pages)

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "user": self.user, "base_url": self.base_url, "ok": self.ok,
                "error": self.error, "signin_s": self.signin_s,
                "signin_retries": self.signin_retries, "connect_s": self.connect_s, "pages": self.pages}


def check(page: Page, run: PageRun) -> str:
    if not run.ok:
        return run.status
    if "Sign in" in run.buttons:
        return "the sign-in screen: the session is not signed in"
    if run.title != page.title:
        return f"drew {run.title!r}, not its title {page.title!r}"
    return "ok"


async def prepare(session: Session, timeout_s: float, attempts: int = 3) -> None:
    """The real sign-in round trip for this session's browser. The demo's OIDC provider is a small
    development server that now and then resets a connection when many sign in at once: a person
    would press Sign in again, so a round trip is tried ``attempts`` times (counted in the report)."""
    for attempt in range(1, attempts + 1):
        try:
            session.cookies, session.signin_s = await sign_in(session.base_url, session.user, timeout_s)
            session.error = None
            return
        except Exception as exc:  # recorded with the session; the run goes on with the others
            session.error = f"sign in: {type(exc).__name__}: {exc}"[:300]
            session.signin_retries = attempt


async def walk(session: Session, go: asyncio.Event, pages: tuple[Page, ...], timeout_s: float) -> None:
    """Connect, wait for every session to be ready, then load ``pages`` one after the other."""
    if session.error:
        return
    stream, step = None, "connect"
    try:
        started = time.perf_counter()
        stream = await StreamSession.open(session.base_url, session.cookies, timeout_s)
        session.connect_s = time.perf_counter() - started
        await go.wait()
        for page in pages:
            step, at = page.name, time.time()
            run = await stream.run_page(page.path, page.query, timeout_s=timeout_s)
            status = check(page, run)
            session.pages.append({"page": page.name, "ok": status == "ok", "status": status, "t": at,
                                  "first_delta_s": run.first_delta_s, "title_s": run.title_s,
                                  "finished_s": run.finished_s,
                                  "deltas": run.deltas, "bytes": run.bytes})
            if status != "ok":
                session.error = f"{page.name}: {status}"
                break
    except Exception as exc:  # the connection broke: recorded, the others go on
        session.error = f"{step}: {type(exc).__name__}: {exc}"[:300]
    finally:
        if stream is not None:
            try:
                await asyncio.wait_for(stream.close(), 10)
            except Exception:  # closing a broken connection must not hide the result
                pass
