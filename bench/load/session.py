"""One browser session: sign in, then walk the pages, timing each first render and each rerun in the page."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load.pages import DIAGNOSE_JS, NO_ANIMATIONS_JS, PAGES, PROBE_JS, PageSpec
from bench.load.results import SessionResult

STEP_TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1440, "height": 1000}


async def sign_in(page: Any, app: Any, user: str) -> None:
    await page.goto(app.url + "/")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(app.oidc_url + "/oauth2/authorize**")
    await page.get_by_role("button", name=user, exact=True).click()
    await page.wait_for_url(app.url + "/**")
    await page.get_by_text("Signed in as").wait_for()


class RunCounter:
    """The page's full script runs as its websocket carries them: a ``new_session`` message starts a
    run, ``script_finished`` ends it. Independent of how (or whether) React paints the run state,
    which a busy renderer may batch away for a short run. Fragment runs (the app's timed fragments)
    are counted apart: they are not the rerun an interaction asks for."""

    def __init__(self, page: Any) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self._parse = ForwardMsg.FromString
        self._not_an_end = {ForwardMsg.FINISHED_EARLY_FOR_RERUN, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}
        self.started = self.finished = self.fragments = 0
        self.last_start: float | None = None
        self.last_end: float | None = None
        page.on("websocket", self._attach)

    def _attach(self, ws: Any) -> None:
        if "/_stcore/stream" in ws.url:
            ws.on("framereceived", self._frame)

    def _frame(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            return
        try:
            msg = self._parse(payload)
        except Exception:  # not a ForwardMsg: nothing to count
            return
        kind = msg.WhichOneof("type")
        if kind not in ("new_session", "script_finished"):
            return
        if msg.metadata.run.fragment_ids:
            self.fragments += kind == "new_session"
        elif kind == "new_session":
            self.started, self.last_start = self.started + 1, time.perf_counter()
        elif msg.script_finished not in self._not_an_end:
            self.finished, self.last_end = self.finished + 1, time.perf_counter()

    async def wait(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True


async def _pick(page: Any, combobox: str, option: Callable[[Any], Any]) -> None:
    # Streamlit 1.67's selectbox is a react-aria combobox: a click on it only focuses the text
    # input and the arrow key opens the list, which a busy renderer sometimes misses: try again.
    box, listbox = page.get_by_role("combobox", name=combobox, exact=True), page.get_by_role("listbox")
    for _ in range(3):
        await box.focus()
        await box.press("ArrowDown")
        try:
            await listbox.wait_for(state="visible", timeout=10_000)
            break
        except Exception:  # the list did not open: press again
            await box.press("Escape")
    await option(listbox.get_by_role("option")).click()


async def _frames(page: Any) -> None:
    """Two animation frames: React has rendered what the last input changed."""
    await page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


async def _filter_fleet(page: Any) -> None:
    box = page.get_by_label("Filter by name or description")
    await box.fill("credit")
    await _frames(page)
    await box.press("Enter")


async def _nudge_fleet(page: Any) -> None:
    await page.get_by_label("Filter by name or description").press("Enter")


async def _nudge_pick(page: Any, combobox: str, value: str | None, option: Callable[[Any], Any]) -> None:
    current = await page.get_by_role("combobox", name=combobox, exact=True).input_value()
    if value is None or current != value:
        await _pick(page, combobox, option)


def _nth_feature(options: Any) -> Any:
    return options.nth(1)


def _credit_risk(options: Any) -> Any:
    return options.filter(has_text="credit-risk").first


# Per page: the interaction that reruns it, and what to do when no run has started 15 s later
# (the input was lost by a starved renderer; counted in the report as a nudge).
RERUNS: dict[str, tuple[Callable[[Any], Awaitable[None]], Callable[[Any], Awaitable[None]]]] = {
    "fleet": (_filter_fleet, _nudge_fleet),
    "drift": (lambda page: _pick(page, "Feature", _nth_feature),
              lambda page: _nudge_pick(page, "Feature", None, _nth_feature)),
    "model": (lambda page: _pick(page, "Model", _credit_risk),
              lambda page: _nudge_pick(page, "Model", "credit-risk", _credit_risk)),
}
NUDGE_AFTER_S = 15.0


async def _diagnose(page: Any) -> str:
    try:
        return await asyncio.wait_for(page.evaluate(DIAGNOSE_JS), 10)
    except Exception as exc:  # the page itself may be what hangs
        return f"page did not answer ({type(exc).__name__})"


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None or end < start else (end - start) / 1000


async def first_render(page: Any, url: str, timeout_ms: int) -> dict[str, float | None]:
    """Load ``url``: seconds from navigation start to render and complete, to the first script run's
    start, and the script's running time (first run start to last run end) as the browser saw it."""
    await page.goto(url, wait_until="commit")
    marks = await page.wait_for_function(
        "() => window.__bench && window.__bench.render !== null && window.__bench.settled !== null"
        " && {...window.__bench}", timeout=timeout_ms)
    b = await marks.json_value()
    return {"render_s": b["render"] / 1000, "complete_s": max(b["settled"], b["render"]) / 1000,
            "start_s": _span(0, b["firstRun"]), "script_s": _span(b["firstRun"], b["runEnd"])}


async def rerun(page: Any, spec: PageSpec, runs: RunCounter, timeout_ms: int) -> dict[str, Any]:
    """Rerun the page through a widget: seconds until its run has finished (per the websocket) and
    the page is complete again, and the run's time between its first and last message."""
    before = await page.evaluate("() => performance.now()")
    started, finished, clock = runs.started, runs.finished, time.perf_counter()
    action, nudge = RERUNS[spec.name]
    await action(page)
    nudged = False
    if not await runs.wait(lambda: runs.started > started, NUDGE_AFTER_S):
        nudged = True
        await nudge(page)
    remaining = timeout_ms / 1000 - (time.perf_counter() - clock)
    if not await runs.wait(lambda: runs.finished > finished, max(remaining, 1.0)):
        raise TimeoutError(f"no script run finished {timeout_ms / 1000:.0f} s after the interaction"
                           + (" (nudged once)" if nudged else ""))
    remaining = timeout_ms - (time.perf_counter() - clock) * 1000
    marks = await page.wait_for_function(
        "() => window.__bench.settled !== null && {settled: window.__bench.settled, now: performance.now()}",
        timeout=max(remaining, 1000))
    b = await marks.json_value()
    done = b["settled"]
    if done <= before:  # the renderer painted no run state at all (React batched it): the end is two
        await _frames(page)  # animation frames after the run's last message reached the browser
        done = await page.evaluate("() => performance.now()")
    script = (runs.last_end - runs.last_start) if runs.last_start and runs.last_end else None
    return {"rerun_s": (done - before) / 1000, "rerun_script_s": script, "nudged": nudged}


@dataclass(frozen=True)
class Pace:
    walks: int = 1
    timeout_ms: int = STEP_TIMEOUT_MS
    think_s: float = 0.0      # mean pause before each page load and each interaction (uniform ±50 %)
    ramp_s: float = 0.0       # sessions start spread evenly over this many seconds
    artifacts: Path | None = None


async def run_session(browser: Any, app: Any, index: int, user: str, pace: Pace, results: list[SessionResult],
                      start_delay: float = 0.0) -> None:
    result = SessionResult(index=index, user=user)
    results.append(result)
    step = "new context"
    context = page = None
    timeout_ms, rng = pace.timeout_ms, random.Random(index)

    async def think() -> None:
        if pace.think_s > 0:
            await asyncio.sleep(pace.think_s * rng.uniform(0.5, 1.5))

    try:
        await asyncio.sleep(start_delay)
        context = await browser.new_context(viewport=VIEWPORT, reduced_motion="reduce")
        context.set_default_timeout(timeout_ms)
        context.set_default_navigation_timeout(timeout_ms)
        await context.add_init_script(PROBE_JS % json.dumps({p.path.split("?")[0]: [p.title, p.main] for p in PAGES}))
        await context.add_init_script(NO_ANIMATIONS_JS)
        page = await context.new_page()
        runs = RunCounter(page)
        step = "sign in"
        started = time.perf_counter()
        await sign_in(page, app, user)
        result.signin_s = time.perf_counter() - started
        for walk in range(1, pace.walks + 1):
            for spec in PAGES:
                await think()
                step = f"walk {walk}, {spec.name}: first render"
                loaded = await first_render(page, app.url + spec.path, timeout_ms)
                await think()
                step = f"walk {walk}, {spec.name}: rerun ({spec.rerun})"
                rerun_marks = await rerun(page, spec, runs, timeout_ms)
                result.pages.append({"page": spec.name, "walk": walk, **loaded, **rerun_marks})
    except asyncio.CancelledError:
        result.error = f"{step}: cancelled at the run's time budget"
        raise
    except Exception as exc:  # every failure is recorded with its step, and its screen kept
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        result.error = f"{step}: {type(exc).__name__}: {message}"[:300]
        if page is not None:
            result.error += f" [{await _diagnose(page)}]"
        if page is not None and pace.artifacts is not None:
            try:
                pace.artifacts.mkdir(parents=True, exist_ok=True)
                await asyncio.wait_for(page.screenshot(path=str(pace.artifacts / f"failed-session-{index}.png"),
                                                       full_page=True), 20)
            except Exception as shot:  # a broken page may not be able to take a screenshot
                result.error += f" (no screenshot: {type(shot).__name__})"
    finally:
        if context is not None:
            try:
                await asyncio.wait_for(context.close(), 30)
            except Exception as closing:  # closing a broken context must not hide the result
                result.error = result.error or f"closing the context: {type(closing).__name__}"
