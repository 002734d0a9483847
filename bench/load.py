"""Load benchmark: N concurrent real browser sessions against `streamlit run` (target: p95 first render < 5 s).

    python -m bench.load [--sessions 20] [--walks 2] [--think 0] [--ramp 0] [--rounds 1]
                         [--out bench/RESULTS.md] [--json report.json]

**Setup.** The demo is seeded once into a cache folder (``.tower/bench-load/template``; re-seeded
when its logs no longer end yesterday), monitoring is run on it, and each run serves a private copy
with the demo's local OIDC provider and ``streamlit run app.py`` on free loopback ports, started as
``tests.support.live_app`` starts them (``serve`` below) with one addition: every script run's wall
and CPU time is recorded inside the server.

**Sessions.** One Debian Chromium (``/usr/bin/chromium`` with ``live_app.CHROMIUM_ARGS``) holds N
isolated browser contexts driven concurrently from one asyncio loop (Playwright's async API). One
Playwright driver for all sessions costs a few percent of a core (measured, reported), so a thread
and a driver per session would only add load. Each session signs in through the OIDC provider
(sessions spread over the demo users), then walks the fleet, the drift explorer
(``?model=credit-risk``) and the model detail (``?model=fraud-detection``) pages ``--walks`` times,
optionally pausing ``--think`` seconds (±50 %) before each step like a reading user. Per page:

* **first render**: from navigation start (the new document's ``performance.timeOrigin``) until the
  page's ``h1`` title and its main element (fleet: the data frame; drift: the heat map chart; model:
  the versions data frame) are visible;
* **complete**: until the script has finished (``stApp[data-test-script-state=notRunning]``) and no
  element is stale, a skeleton or a spinner;
* **rerun**: from just before a widget interaction (fleet: type a filter; drift: pick another
  feature; model: pick another model) until a new script run has started *and* the page is complete
  again.

Times are taken inside the page (a MutationObserver plus a 50 ms timer; ``performance.now()``), so
the Python driver's own scheduling is not counted. A session fails if any step raises or times out
(``--step-timeout``); the step and the reason are recorded and its last screen is kept.

**Server.** The Streamlit process's RSS (``/proc/<pid>/status`` VmRSS) is read idle, after one
warm-up session (imports and data caches filled once per process), after each round of N sessions
(and ``--release`` seconds later: disconnected sessions are kept ``server.disconnectedSessionTTL``,
120 s). The CPU of every process is sampled during the load and attributed to the server, Chromium,
the rest of this benchmark and the machine's other processes; the server's own record of its script
runs, and each page's script timed alone in AppTest after the server has stopped, separate the
server's share of the latency from the browser's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.results_file import write_section
from services.settings import PROJECT_ROOT

CACHE = PROJECT_ROOT / ".tower" / "bench-load"
TARGETS = {"success_rate": 1.0, "p95_first_render_s": 5.0, "growth_mb_per_20": 100.0}
STEP_TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1440, "height": 1000}


@dataclass(frozen=True)
class PageSpec:
    name: str
    path: str
    title: str
    main: str           # CSS selector of the page's main element
    rerun: str          # what the rerun interaction does, for the report


PAGES = (
    PageSpec("fleet", "/", "Fleet overview", "[data-testid='stDataFrame']", "type 'credit' in the name filter"),
    PageSpec("drift", "/drift?model=credit-risk", "Drift explorer", "[data-testid='stPlotlyChart']",
             "pick the next feature"),
    PageSpec("model", "/model?model=fraud-detection", "Model detail", "[data-testid='stDataFrame']",
             "switch the model to credit-risk"),
)

# Installed in every document before its scripts run: records, in performance.now() milliseconds
# since navigation start, when the page's title and main element are first visible (render), when
# the page last became complete (settled: script not running, nothing stale, no skeleton or spinner;
# reset whenever it stops being so), how many script runs have started, when the first and the
# latest run started and when the latest ended (as the browser sees the server's run state).
PROBE_JS = """
(() => {
  const TARGETS = %s;
  const B = window.__bench = {runs: 0, render: null, settled: null, state: null,
                              firstRun: null, runStart: null, runEnd: null};
  const idle = (v) => v === null || v === 'notRunning' || v === 'initial';
  const BUSY = "[data-stale='true'],[data-testid='stSkeleton'],[data-testid='stSkeletonElement'],"
             + "[data-testid='stAppSkeleton'],[data-testid='stSpinner']";
  const visible = (e) => e && e.checkVisibility();
  function tick() {
    const now = performance.now();
    const app = document.querySelector("[data-testid='stApp']");
    const state = app && app.getAttribute('data-test-script-state');
    if (state && !idle(state) && B.runStart === null) B.firstRun = B.runStart = now;
    const target = TARGETS[location.pathname];
    if (B.render === null && target) {
      const title = [...document.querySelectorAll('h1')].find((h) => h.textContent.includes(target[0]));
      if (visible(title) && visible(document.querySelector(target[1]))) B.render = now;
    }
    if (state === 'notRunning' && !document.querySelector(BUSY)) {
      if (B.settled === null) B.settled = now;
    } else {
      B.settled = null;
    }
  }
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'attributes' && r.attributeName === 'data-test-script-state') {
        const v = r.target.getAttribute('data-test-script-state'), now = performance.now();
        if (!idle(v) && idle(B.state)) {
          B.runs++;
          B.runStart = now;
          if (B.firstRun === null) B.firstRun = now;
        } else if (v === 'notRunning' && !idle(B.state)) {
          B.runEnd = now;
        }
        B.state = v;
      }
    }
    tick();
  }).observe(document, {subtree: true, childList: true, attributes: true});
  setInterval(tick, 50);
})();
"""

# The load generator's pages skip CSS animations and transitions (skeleton shimmer, spinners, fades):
# they cost only the browser's CPU, which on this machine is the server's CPU too (measured: about
# 15 % less Chromium CPU for the same walk). Nothing the server sends or the page shows changes.
NO_ANIMATIONS_JS = """
document.addEventListener('DOMContentLoaded', () => {
  const style = document.createElement('style');
  style.textContent = '*, *::before, *::after { animation: none !important; transition: none !important; }';
  document.head.appendChild(style);
});
"""


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------


@dataclass
class SessionResult:
    index: int
    user: str
    signin_s: float | None = None
    # {page, walk, render_s, complete_s, start_s, script_s, rerun_s, rerun_script_s}
    pages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


MEASURES = ("render", "complete", "start", "script", "rerun", "rerun_script")


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "max": max(values) if values else None}


# ------------------------------------------------------------------------------------------------
# Processes: the server's pid, RSS and CPU, the machine's CPU
# ------------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


TICK = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


def process_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds used so far) for every process of the machine."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        fields = rest.split()
        table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / TICK)
    return table


class Sampler:
    """Samples every half second while the load runs: the server's RSS (for its peak) and the CPU
    used by each process, attributed to the server, the browser, the rest of this benchmark's
    process tree, and every other process on the machine."""

    def __init__(self, server: int) -> None:
        self.server, self.peak_mb, self._task = server, 0.0, None
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.kind: dict[int, str] = {}
        self.sample(initial=True)
        self.machine0, self.wall0 = machine_cpu(), time.monotonic()

    def _kind(self, pid: int, table: dict[int, tuple[int, str, float]]) -> str:
        if pid == self.server:
            return "server"
        me, cursor, seen = os.getpid(), pid, set()
        while cursor in table and cursor not in seen and cursor > 1:
            if cursor == me:
                return "browser" if table[pid][1].startswith("chrom") else "driver"
            seen.add(cursor)
            cursor = table[cursor][0]
        return "other"

    def sample(self, initial: bool = False) -> None:
        table = process_table()
        for pid, (_ppid, _name, cpu) in table.items():
            if pid not in self.first:
                self.first[pid] = cpu if initial else 0.0
                self.kind[pid] = self._kind(pid, table)
            self.last[pid] = cpu
        try:
            self.peak_mb = max(self.peak_mb, rss_mb(self.server))
        except (OSError, RuntimeError):
            pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.sample()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> dict[str, float]:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sample()
        (busy0, total0), (busy1, total1) = self.machine0, machine_cpu()
        used = dict.fromkeys(("server", "browser", "driver", "other"), 0.0)
        for pid, cpu in self.last.items():
            used[self.kind[pid]] += max(0.0, cpu - self.first[pid])
        return {"seconds": time.monotonic() - self.wall0, "machine_busy_core_s": busy1 - busy0,
                "machine_core_s": total1 - total0, **{f"{k}_core_s": v for k, v in used.items()}}


def wait_until_quiet(limit_s: float, log: Callable[[str], None], threshold: float = 0.25) -> float:
    """Wait (at most ``limit_s``) until the machine is less than ``threshold`` busy over 5 s; the last share."""
    deadline = time.monotonic() + limit_s
    while True:
        busy0, total0 = machine_cpu()
        time.sleep(5)
        busy1, total1 = machine_cpu()
        share = (busy1 - busy0) / max(total1 - total0, 1e-9)
        if share < threshold or time.monotonic() >= deadline:
            return share
        log(f"machine {share:.0%} busy before the load (other processes); waiting for it to calm down …")


# ------------------------------------------------------------------------------------------------
# The server: tests.support.live_app's, plus a record of every script run
# ------------------------------------------------------------------------------------------------

# Run as `python -c SERVER_HOOK run app.py ...`: the Streamlit CLI, with ScriptRunner._run_script
# wrapped so that every script run (a run and the reruns it absorbs) appends its wall time and its
# script thread's CPU time to BENCH_LOAD_RUNLOG. Nothing else in the server changes.
SERVER_HOOK = """
import json, os, sys, threading, time
from streamlit.runtime.scriptrunner import script_runner
original = script_runner.ScriptRunner._run_script
log, lock = open(os.environ["BENCH_LOAD_RUNLOG"], "a", buffering=1), threading.Lock()
def timed(self, rerun_data):
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        return original(self, rerun_data)
    finally:
        record = {"t": time.time(), "wall": time.perf_counter() - wall, "cpu": time.thread_time() - cpu,
                  "fragment": bool(rerun_data.fragment_id_queue)}
        with lock:
            log.write(json.dumps(record) + "\\n")
script_runner.ScriptRunner._run_script = timed
from streamlit.web.cli import main
sys.argv = ["streamlit", *sys.argv[1:]]
main(prog_name="streamlit")
"""


@dataclass(frozen=True)
class Served:
    url: str          # http://localhost:<port>, the host the redirect URI names
    oidc_url: str
    pid: int          # the streamlit process
    runlog: Path      # one JSON line per script run


@contextmanager
def serve(data_dir: Path) -> Iterator[Served]:
    """The demo's OIDC provider and `streamlit run app.py` on free loopback ports, exactly as
    ``tests.support.live_app.live_app`` starts them, but through SERVER_HOOK and with the pid known."""
    from services.demo.serve import demo_secrets_file, provider_command
    from services.settings import load_settings
    from tests.support.live_app import free_port, stop_process_group, wait_for

    port, oidc_port = free_port(), free_port()
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    runlog, provider_log, app_log = logs / "runs.jsonl", logs / "oidc.log", logs / "streamlit.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOWER_", "MLFLOW_TRACKING", "WAREHOUSE_"))}
    env.update({"TOWER_DATA_DIR": str(data_dir), "TOWER_DEMO": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                "BENCH_LOAD_RUNLOG": str(runlog)})
    secrets = demo_secrets_file(load_settings({"TOWER_DATA_DIR": str(data_dir)}), port=port, oidc_port=oidc_port)
    with provider_log.open("wb") as plog, app_log.open("wb") as alog:
        provider = subprocess.Popen(provider_command(oidc_port), stdout=plog, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=env)
        app = subprocess.Popen(
            [sys.executable, "-c", SERVER_HOOK, "run", str(PROJECT_ROOT / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--secrets.files", str(secrets)],
            stdout=alog, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=env, start_new_session=True)
        try:
            wait_for(f"http://127.0.0.1:{oidc_port}/.well-known/openid-configuration", 30, provider_log)
            wait_for(f"http://127.0.0.1:{port}/_stcore/health", 60, app_log)
            yield Served(url=f"http://localhost:{port}", oidc_url=f"http://127.0.0.1:{oidc_port}", pid=app.pid,
                         runlog=runlog)
        finally:
            stop_process_group(app)
            stop_process_group(provider)


def script_runs(runlog: Path, start: float, end: float) -> dict[str, Any]:
    """The server's script runs that ended in [start, end] (epoch seconds): wall and CPU summaries of
    the full runs, and how many fragment runs there were and what they cost."""
    runs, fragments = [], []
    if runlog.exists():
        for line in runlog.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if start <= record["t"] <= end:
                (fragments if record.get("fragment") else runs).append(record)
    return {"fragment_runs": len(fragments), "fragment_cpu_s": sum(r["cpu"] for r in fragments),
            "fragment_wall": summary([r["wall"] for r in fragments]),
            "wall": summary([r["wall"] for r in runs]), "cpu": summary([r["cpu"] for r in runs]),
            "wait": summary([max(0.0, r["wall"] - r["cpu"]) for r in runs]),
            "total_wall_s": sum(r["wall"] for r in runs + fragments),
            "total_cpu_s": sum(r["cpu"] for r in runs + fragments)}


# ------------------------------------------------------------------------------------------------
# The demo
# ------------------------------------------------------------------------------------------------


def prepare_template(cache: Path, log: Callable[[str], None]) -> Path:
    """The seeded demo with its monitoring results in ``cache/template``, (re)built when stale."""
    from services.demo.seed import demo_exists, seed_demo
    from services.monitoring.job import run_monitoring
    from services.settings import load_settings

    template = cache / "template"
    template.mkdir(parents=True, exist_ok=True)
    settings = load_settings({"TOWER_DATA_DIR": str(template)})
    marker = template / "demo-seed.json"
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    fresh = (demo_exists(settings) and marker.is_file()
             and json.loads(marker.read_text()).get("end_date") == yesterday)
    if not fresh:
        started = time.perf_counter()
        log(f"seeding the demo into {template} …")
        force = demo_exists(settings)
        if force:
            (template / "tower.db").unlink(missing_ok=True)
        seed_demo(settings, force=force)
        log(f"seeded in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    run_monitoring(settings)
    log(f"monitoring up to date in {time.perf_counter() - started:.1f} s")
    return template


# ------------------------------------------------------------------------------------------------
# One browser session
# ------------------------------------------------------------------------------------------------


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


# What keeps a page from counting as complete, for the failure reason of a step that timed out.
DIAGNOSE_JS = """() => {
  const B = window.__bench || {};
  const app = document.querySelector("[data-testid='stApp']");
  const busy = [...document.querySelectorAll("[data-stale='true'],[data-testid='stSkeleton'],"
      + "[data-testid='stSkeletonElement'],[data-testid='stAppSkeleton'],[data-testid='stSpinner']")]
    .slice(0, 4).map((e) => (e.getAttribute('data-stale') === 'true' ? 'stale ' : '')
      + (e.getAttribute('data-testid') || e.tagName) + (e.checkVisibility() ? '' : ' (hidden)')
      + (e.querySelector('[data-testid]') ? ' > ' + e.querySelector('[data-testid]').getAttribute('data-testid') : ''));
  return `script ${app && app.getAttribute('data-test-script-state')}, connection `
    + `${app && app.getAttribute('data-test-connection-state')}, runs ${B.runs}, render ${B.render !== null}, `
    + `busy: ${busy.join(', ') || 'none'}`;
}"""


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


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor() or "unknown")
    mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal:"))
    import streamlit

    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem / 2**20, 1),
            "os": platform.platform(), "python": platform.python_version(), "streamlit": streamlit.__version__}


async def _load(app: Any, args: argparse.Namespace, report: dict[str, Any], log: Callable[[str], None]) -> None:
    from playwright.async_api import async_playwright

    from services.demo.identities import DEMO_USERS
    from tests.support.live_app import CHROMIUM, CHROMIUM_ARGS

    server = app.pid
    pace = Pace(walks=args.walks, timeout_ms=int(args.step_timeout * 1000), think_s=args.think, ramp_s=args.ramp,
                artifacts=args.artifacts)
    deadline = time.monotonic() + args.budget
    memory = report["memory"]
    memory["idle_mb"] = rss_mb(server)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        report["machine"]["chromium"] = browser.version
        try:
            if args.warmup:
                log("warm-up: one session alone …")
                warm: list[SessionResult] = []
                warm_start = time.time()
                await run_session(browser, app, 0, DEMO_USERS[0].sub, replace(pace, walks=1, think_s=0.0), warm)
                report["server_runs"]["warmup"] = script_runs(app.runlog, warm_start, time.time())
                report["warmup"] = _session_dict(warm[0])
                if not warm[0].ok:
                    log(f"warm-up failed: {warm[0].error}")
                memory["warm_mb"] = rss_mb(server)
            if args.wait_quiet > 0:
                report["background_busy_before"] = await asyncio.to_thread(wait_until_quiet, args.wait_quiet, log)
            sampler = Sampler(server)
            sampler.start()
            load_start = time.time()
            results: list[SessionResult] = []
            memory["rounds"] = []
            for round_no in range(1, args.rounds + 1):
                remaining = deadline - time.monotonic()
                if remaining <= 10:
                    log(f"time budget reached before round {round_no}")
                    break
                log(f"round {round_no}: {args.sessions} concurrent sessions × {args.walks} walk(s) …")
                first = len(results)
                tasks = [asyncio.ensure_future(run_session(
                    browser, app, first + i + 1, DEMO_USERS[(first + i) % len(DEMO_USERS)].sub, pace, results,
                    start_delay=args.ramp * i / args.sessions)) for i in range(args.sessions)]
                started = time.monotonic()
                _done, pending = await asyncio.wait(tasks, timeout=remaining)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                memory["rounds"].append({"round": round_no, "sessions": len(tasks),
                                         "seconds": time.monotonic() - started, "rss_mb": rss_mb(server)})
                log(f"round {round_no} done in {time.monotonic() - started:.0f} s, "
                    f"{sum(r.ok for r in results[first:])}/{len(tasks)} ok, server RSS {rss_mb(server):.0f} MB")
            report["cpu"] = await sampler.stop()
            report["server_runs"]["load"] = script_runs(app.runlog, load_start, time.time())
            memory["peak_mb"] = max(sampler.peak_mb, rss_mb(server))
        finally:
            await browser.close()
    memory["after_mb"] = memory["rounds"][-1]["rss_mb"] if memory.get("rounds") else rss_mb(server)
    if args.release > 0:
        release = min(args.release, max(0.0, deadline + 60 - time.monotonic()))
        log(f"waiting {release:.0f} s for disconnected sessions to be released …")
        await asyncio.sleep(release)
        memory["released_after_s"], memory["released_mb"] = release, rss_mb(server)
    report["sessions"] = [_session_dict(r) for r in sorted(results, key=lambda r: r.index)]


def _session_dict(r: SessionResult) -> dict[str, Any]:
    return {"index": r.index, "user": r.user, "ok": r.ok, "error": r.error, "signin_s": r.signin_s, "pages": r.pages}


def apptest_times(data_dir: Path, repeat: int = 3) -> dict[str, Any]:
    """Each page's script run alone in AppTest (anonymous, read-only): cold first run, warm median."""
    code = r"""
import json, statistics, sys, time
from streamlit.testing.v1 import AppTest
from services.settings import PROJECT_ROOT
out = {}
for name, page, query in json.loads(sys.argv[1]):
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(page)
    for k, v in query.items():
        at.query_params[k] = v
    t = time.perf_counter(); at.run(); cold = time.perf_counter() - t
    warm = []
    for _ in range(int(sys.argv[2])):
        t = time.perf_counter(); at.run(); warm.append(time.perf_counter() - t)
    out[name] = {"cold_s": cold, "warm_s": statistics.median(warm), "exception": bool(at.exception)}
print(json.dumps(out))
"""
    pages = [[p.name, f"app_pages/{p.name}.py", dict(q.split("=", 1) for q in p.path.partition("?")[2].split("&") if q)]
             for p in PAGES]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOWER_", "MLFLOW_TRACKING", "WAREHOUSE_"))}
    env.update({"TOWER_DATA_DIR": str(data_dir), "TOWER_DEMO": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                "PYTHONPATH": str(PROJECT_ROOT)})
    done = subprocess.run([sys.executable, "-c", code, json.dumps(pages), str(repeat)], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def aggregate(report: dict[str, Any]) -> None:
    sessions = report["sessions"]
    ok = [s for s in sessions if s["ok"]]
    report["success"] = {"ok": len(ok), "total": len(sessions),
                         "rate": len(ok) / len(sessions) if sessions else 0.0,
                         "failures": [{"session": s["index"], "user": s["user"], "reason": s["error"]}
                                      for s in sessions if not s["ok"]]}
    # Timings of every completed step, failed sessions included (their completed steps happened).
    rows = [row for s in sessions for row in s["pages"]]
    per_page = {}
    for spec in PAGES:
        mine = [r for r in rows if r["page"] == spec.name]
        per_page[spec.name] = {key: summary([r[f"{key}_s"] for r in mine if r[f"{key}_s"] is not None])
                               for key in MEASURES}
    per_page["overall"] = {key: summary([r[f"{key}_s"] for r in rows if r[f"{key}_s"] is not None])
                           for key in MEASURES}
    report["pages"] = per_page
    report["nudges"] = sum(bool(row.get("nudged")) for row in rows)
    report["signin"] = summary([s["signin_s"] for s in sessions if s["signin_s"] is not None])
    memory = report["memory"]
    base = memory.get("warm_mb", memory["idle_mb"])
    count = sum(r["sessions"] for r in memory.get("rounds", [])) or 1
    memory["growth_mb"] = memory["after_mb"] - base
    memory["growth_mb_per_20"] = memory["growth_mb"] * 20 / count
    memory["peak_growth_mb_per_20"] = (memory["peak_mb"] - base) * 20 / count
    if "released_mb" in memory:
        memory["released_growth_mb_per_20"] = (memory["released_mb"] - base) * 20 / count
    p95 = per_page["overall"]["render"]["p95"]
    report["targets"] = {
        "success_rate": {"target": "100 % of sessions succeed", "measured": report["success"]["rate"], "unit": "%",
                         "met": report["success"]["rate"] >= TARGETS["success_rate"]},
        "p95_first_render_s": {"target": "p95 first render < 5 s", "measured": p95, "unit": "s",
                               "met": p95 is not None and p95 < TARGETS["p95_first_render_s"]},
        "growth_mb_per_20": {"target": "server memory growth < 100 MB per 20 sessions",
                             "measured": memory["growth_mb_per_20"], "unit": "MB",
                             "met": memory["growth_mb_per_20"] < TARGETS["growth_mb_per_20"]},
    }


def run_load(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Seed or reuse the demo, serve it, run the sessions; the report as a dict."""
    started = time.monotonic()
    template = Path(args.demo) if args.demo else prepare_template(Path(args.cache), log)
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    data_dir = workdir / "demo"
    shutil.copytree(template, data_dir, ignore=shutil.ignore_patterns("logs", "demo-secrets.toml"))
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "command": args.command,
        "machine": _machine(), "config": {"sessions": args.sessions, "walks": args.walks, "rounds": args.rounds,
                                          "warmup": args.warmup, "step_timeout_s": args.step_timeout,
                                          "think_s": args.think, "ramp_s": args.ramp,
                                          "driver": "one Chromium, one browser context per session, "
                                                    "Playwright async API (asyncio)"},
        "memory": {}, "warmup": None, "server_runs": {},
    }
    try:
        with serve(data_dir) as app:
            log(f"serving {app.url} (OIDC {app.oidc_url}) from {data_dir}")
            asyncio.run(_load(app, args, report, log))
        if args.apptest:
            log("timing each page's script alone in AppTest …")
            report["apptest"] = apptest_times(data_dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["wall_s"] = time.monotonic() - started
    aggregate(report)
    return report


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def table(report: dict[str, Any]) -> str:
    lines = ["| page | first render p50 / p95 (s) | complete p50 / p95 (s) | rerun p50 / p95 (s) | samples |",
             "|---|---|---|---|---|"]
    for name, stats in report["pages"].items():
        r, c, u = stats["render"], stats["complete"], stats["rerun"]
        label = f"**{name}**" if name == "overall" else name
        lines.append(f"| {label} | {_s(r['p50'])} / {_s(r['p95'])} | {_s(c['p50'])} / {_s(c['p95'])} | "
                     f"{_s(u['p50'])} / {_s(u['p95'])} | {r['n']} / {u['n']} |")
    return "\n".join(lines)


def breakdown(report: dict[str, Any]) -> str:
    lines = ["| page | navigation → script starts | script running (browser's view) | script end → complete | "
             "rerun: run's messages | rerun: rest |", "|---|---|---|---|---|---|"]
    for name, st in report["pages"].items():
        p = {k: st[k]["p50"] for k in MEASURES}
        after = None if None in (p["complete"], p["start"], p["script"]) else p["complete"] - p["start"] - p["script"]
        rest = None if None in (p["rerun"], p["rerun_script"]) else p["rerun"] - p["rerun_script"]
        lines.append(f"| {name} | {_s(p['start'])} | {_s(p['script'])} | {_s(after)} | {_s(p['rerun_script'])} "
                     f"| {_s(rest)} |")
    return "\n".join(lines)


def memory_lines(report: dict[str, Any]) -> list[str]:
    m = report["memory"]
    lines = [f"- idle (server started, nobody connected): {_mb(m.get('idle_mb'))} MB"]
    if "warm_mb" in m:
        lines.append(f"- after one warm-up session (imports, registry and warehouse caches filled): "
                     f"{_mb(m['warm_mb'])} MB — the baseline of the growth")
    for r in m.get("rounds", []):
        lines.append(f"- after round {r['round']} ({r['sessions']} sessions, {r['seconds']:.0f} s): "
                     f"{_mb(r['rss_mb'])} MB")
    lines.append(f"- peak during the load: {_mb(m.get('peak_mb'))} MB")
    if "released_mb" in m:
        lines.append(f"- {m['released_after_s']:.0f} s after the last session closed: {_mb(m['released_mb'])} MB")
    lines.append(f"- **growth: {m['growth_mb']:+,.0f} MB, i.e. {m['growth_mb_per_20']:+,.0f} MB per 20 sessions** "
                 f"(peak {m['peak_growth_mb_per_20']:+,.0f} MB per 20"
                 + (f"; {m['released_growth_mb_per_20']:+,.0f} MB per 20 once released" if
                    "released_growth_mb_per_20" in m else "") + ")")
    return lines


def cpu_lines(report: dict[str, Any]) -> list[str]:
    c = report.get("cpu")
    if not c or c["seconds"] <= 0:
        return []
    cores, wall = report["machine"]["cores"] or 1, c["seconds"]
    busy = c["machine_busy_core_s"] / c["machine_core_s"] if c["machine_core_s"] else 0
    lines = []
    if "background_busy_before" in report:
        lines.append(f"- other processes kept the machine {report['background_busy_before']:.0%} busy just before "
                     "the load started")
    return lines + [
        f"- machine CPU busy {busy:.0%} of {cores} cores over the {wall:.0f} s of load "
        f"({c['machine_busy_core_s'] / wall:.2f} cores on average), of which:",
        f"  - Streamlit server process: {c['server_core_s'] / wall:.2f} cores (one Python process; script runs "
        "share its GIL)",
        f"  - Chromium (all its processes): {c['browser_core_s'] / wall:.2f} cores",
        f"  - Playwright driver, OIDC provider, this script: {c['driver_core_s'] / wall:.2f} cores",
        f"  - other processes on the machine (not this benchmark): {c['other_core_s'] / wall:.2f} cores",
    ]


def bound_lines(report: dict[str, Any]) -> list[str]:
    """Why the first render misses its target, from the CPU each session step cost the browsers and
    the server: the floor that N browsers sharing the server's cores put under a page load."""
    c, warm = report.get("cpu"), report.get("warmup")
    rows = [r for s in report["sessions"] for r in s["pages"]]
    steps = len(rows) * 2 + sum(s["signin_s"] is not None for s in report["sessions"])
    if not c or not steps or report["targets"]["p95_first_render_s"]["met"]:
        return []
    cores, sessions = report["machine"]["cores"] or 1, report["config"]["sessions"]
    browser, server = c["browser_core_s"] / steps, c["server_core_s"] / steps
    alone = max((r["render_s"] for r in warm["pages"]), default=None) if warm and warm["ok"] else None
    return [
        f"The browsers, not the server, hold the CPU: each session step (a sign-in, a page load or a rerun; "
        f"{steps} in all) cost Chromium {browser:.2f} CPU-seconds on average (parsing and running Streamlit's "
        f"front end, drawing the canvas tables and Plotly charts in software) and the Streamlit server "
        f"{server:.2f}. When the {sessions} sessions load a page at about the same moment, their browsers alone need "
        f"{sessions} × {browser:.2f} / {cores} cores ≈ {sessions * browser / cores:.0f} s of this machine before the "
        f"last of them can have drawn it, whatever the server does. "
        + (f"One session alone renders every page within {alone:.1f} s. " if alone is not None else "")
        + "On a deployment the browsers run on the users' machines, and the server's share is what "
        "the *server-side script runs* above show; the 5 s target at 20 sessions cannot be shown with 20 "
        "Chromium renderers on the server's own two cores.",
    ]


def server_run_lines(report: dict[str, Any]) -> list[str]:
    runs = report.get("server_runs") or {}
    lines = []
    for key, label in (("warmup", "one session alone (warm-up)"), ("load", "during the load")):
        r = runs.get(key)
        if not r or not r["wall"]["n"]:
            continue
        lines.append(f"- {label}: {r['wall']['n']} full runs, wall p50 {_s(r['wall']['p50'])} s / p95 "
                     f"{_s(r['wall']['p95'])} s / max {_s(r['wall']['max'])} s; script-thread CPU p50 "
                     f"{_s(r['cpu']['p50'])} s / p95 {_s(r['cpu']['p95'])} s; waiting (wall − CPU: the GIL, "
                     f"the machine's other processes, I/O) p50 {_s(r['wait']['p50'])} s / p95 {_s(r['wait']['p95'])} s")
        if r.get("fragment_runs"):
            lines.append(f"  and {r['fragment_runs']} fragment runs (app.py's timed fragment, in every open page), "
                         f"{r['fragment_cpu_s']:.1f} CPU-seconds in all, wall p50 {_s(r['fragment_wall']['p50'])} s")
    load = runs.get("load")
    cpu = report.get("cpu")
    if load and load["wall"]["n"] and cpu and cpu["seconds"] > 0:
        lines.append(f"- the load's script runs used {load['total_cpu_s']:.0f} CPU-seconds in their threads; the "
                     f"server process {cpu['server_core_s']:.0f} in all (the rest: static files, websockets, "
                     f"sessions, DuckDB's own threads); the whole machine {cpu['machine_busy_core_s']:.0f}")
    return lines


def apptest_lines(report: dict[str, Any]) -> list[str]:
    at = report.get("apptest")
    if not at:
        return []
    if "error" in at:
        return [f"- AppTest timing failed: {at['error']}"]
    return [f"- {name}: cold {v['cold_s']:.2f} s, warm {v['warm_s']:.2f} s"
            + (" (exception!)" if v["exception"] else "") for name, v in at.items()]


def print_report(report: dict[str, Any]) -> None:
    s = report["success"]
    print()
    print(f"{s['total']} sessions, {s['ok']} succeeded ({s['rate']:.0%}); sign-in p50 {_s(report['signin']['p50'])} s, "
          f"p95 {_s(report['signin']['p95'])} s; wall {report['wall_s']:.0f} s")
    if report.get("nudges"):
        print(f"{report['nudges']} interaction(s) started no run within {NUDGE_AFTER_S:.0f} s and were repeated once")
    for f in s["failures"]:
        print(f"  FAILED session {f['session']} ({f['user']}): {f['reason']}")
    print(table(report))
    print("\nWhere the time goes (p50, s):")
    print(breakdown(report))
    print("\n".join(memory_lines(report) + cpu_lines(report) + server_run_lines(report) + apptest_lines(report)))
    for t in report["targets"].values():
        print(f"[{'x' if t['met'] else ' '}] {t['target']}: measured {_fmt_target(t)}")


def _fmt_target(t: dict[str, Any]) -> str:
    value = t["measured"]
    if value is None:
        return "—"
    return {"%": f"{value:.0%}", "s": f"{value:.2f} s", "MB": f"{value:+,.0f} MB"}[t["unit"]]


def markdown(report: dict[str, Any]) -> str:
    m, cfg, s = report["machine"], report["config"], report["success"]
    warm = report.get("warmup")
    out = [
        f"## Load: {cfg['sessions']} concurrent browser sessions, "
        + (f"users pausing {cfg['think_s']:.0f} s between steps" if cfg["think_s"] else "no pause between steps")
        + " (issue 5, point 5)",
        "",
        f"Measured {report['date']} with `{report['command']}` on {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gb']} GB RAM ({m['os']}); Python {m['python']}, Streamlit {m['streamlit']}, "
        f"Chromium {m.get('chromium', '?')} (Debian, headless). Wall time {report['wall_s']:.0f} s.",
        "",
        f"**Setup.** {cfg['sessions']} sessions × {cfg['rounds']} round(s), "
        + (f"started over {cfg['ramp_s']:.0f} s" if cfg["ramp_s"] else "started together")
        + (f", each user pausing {cfg['think_s']:.1f} s ± 50 % before every page and interaction"
           if cfg["think_s"] else ", no pause between steps (every user clicks as fast as the app answers)")
        + f"; {cfg['driver']}. "
        "Each session signs in through the demo's local OIDC provider (sessions spread over the 9 demo users), then "
        f"walks fleet → drift explorer (`?model=credit-risk`) → model detail (`?model=fraud-detection`) "
        f"{cfg['walks']} time(s), each page loaded by URL (a new Streamlit session, as a deep link or reload does) "
        "and then rerun once by a widget: " + "; ".join(f"{p.name}: {p.rerun}" for p in PAGES) + ". "
        "*First render*: navigation start → the page's title and main element (fleet and model: the data frame; "
        "drift: the heat map) visible. *Complete*: → script finished, nothing stale, no skeleton or spinner. "
        "*Rerun*: interaction → a new run started and the page complete again. Times are taken in the page "
        f"(`performance.now()`), each step bounded by {cfg['step_timeout_s']:.0f} s. The load generator's pages "
        "skip CSS animations (browser-only cost).",
        "",
        f"**Success: {s['ok']} / {s['total']} sessions ({s['rate']:.0%}).** "
        f"Sign-in (press Sign in → provider → back, signed in) p50 {_s(report['signin']['p50'])} s, "
        f"p95 {_s(report['signin']['p95'])} s.",
    ]
    if report.get("nudges"):
        out += ["", f"{report['nudges']} interaction(s) started no script run within {NUDGE_AFTER_S:.0f} s (the "
                "input was lost by a starved renderer) and were repeated once; their rerun time counts from the "
                "first attempt."]
    if s["failures"]:
        out += [""] + [f"- session {f['session']} ({f['user']}) failed at {f['reason']}" for f in s["failures"]]
    out += ["", table(report), "",
            "Where the time goes (medians, seconds). On loading, *script running* is the run state the page "
            "shows (`stApp[data-test-script-state]`), so it includes the messages' delivery and the page's own "
            "work while they arrive; on a rerun, *run's messages* spans the run's first to last websocket "
            "message (`new_session` → `script_finished`) as the browser receives them; *rest* is the page "
            "rendering the result:", "", breakdown(report), ""]
    if warm and warm["ok"]:
        out += ["One session alone (the warm-up, caches cold for the server's first run of each page): "
                + ", ".join(f"{r['page']} first render {r['render_s']:.2f} s / complete {r['complete_s']:.2f} s / "
                            f"rerun {r['rerun_s']:.2f} s" for r in warm["pages"]) + ".", ""]
    out += ["**Server memory** (Streamlit process RSS, `/proc/<pid>/status` VmRSS):", ""] + memory_lines(report)
    cpu = cpu_lines(report)
    if cpu:
        out += ["", "**CPU during the load:**", ""] + cpu
    runs = server_run_lines(report)
    if runs:
        out += ["", "**Server-side script runs** (each `ScriptRunner._run_script` call timed inside the server: "
                "wall time and the script thread's CPU time):", ""] + runs
    at = apptest_lines(report)
    if at:
        out += ["", "**Server-side script time alone** (each page's script in AppTest, no browser, no contention; "
                "cold = first run in a fresh process, warm = median of 3 reruns with the caches filled):", ""] + at
    out += ["", "**Targets:**", ""]
    out += [f"- [{'x' if t['met'] else ' '}] {t['target']}: {_fmt_target(t)}" for t in report["targets"].values()]
    bound = bound_lines(report)
    if bound:
        out += ["", "**What bounds the first render here.** " + bound[0]]
    return "\n".join(out) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="concurrent browser sessions per round (20)")
    parser.add_argument("--walks", type=int, default=2, help="fleet → drift → model walks per session (2)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --sessions new sessions (1)")
    parser.add_argument("--out", type=Path,
                        help="write the results as a section of this Markdown file (bench/RESULTS.md)")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="render a saved --json report again (with --out) instead of running anything")
    parser.add_argument("--section", default="load",
                        help="the section of --out to write, so that runs of different paces sit side by side (load)")
    parser.add_argument("--json", type=Path, help="write the full report as JSON to this file")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"where the demo is seeded once ({CACHE})")
    parser.add_argument("--demo", type=Path, help="an already seeded demo folder to copy instead of the cache")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the single warm-up session")
    parser.add_argument("--no-apptest", dest="apptest", action="store_false",
                        help="skip timing each page's script in AppTest")
    parser.add_argument("--release", type=float, default=0.0,
                        help="seconds to wait after the load before reading the server's RSS again (0)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean seconds a user pauses before each page and each interaction (0: none)")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread the sessions' starts over this many seconds")
    parser.add_argument("--wait-quiet", type=float, default=60.0,
                        help="wait up to this many seconds for other processes to leave the CPU before the load (60)")
    parser.add_argument("--artifacts", type=Path, default=PROJECT_ROOT / "test-artifacts" / "bench-load",
                        help="where a failed session's last screen is kept")
    parser.add_argument("--step-timeout", type=float, default=STEP_TIMEOUT_MS / 1000, help="per step, seconds (60)")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for all rounds; sessions still running then fail (480)")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.walks < 1 or args.rounds < 1:
        parser.error("--sessions, --walks and --rounds must be at least 1")
    args.command = "python -m bench.load " + " ".join(argv if argv is not None else sys.argv[1:])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = run_load(args, log=lambda msg: print(msg, flush=True))
    print_report(report)
    if args.json and not args.from_json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    if args.out:
        write_section(args.out, args.section, markdown(report))
        print(f"\nwritten {args.out}")
    return 0 if report["success"]["rate"] == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
