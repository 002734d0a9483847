"""The run: the warm-up, the rounds of concurrent sessions, the AppTest timings, and the figures they add up to."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load.machine import Sampler, describe_machine, rss_mb, wait_until_quiet
from bench.load.pages import PAGES
from bench.load.results import MEASURES, SessionResult, session_dict, summary
from bench.load.server import prepare_template, script_runs, serve
from bench.load.session import Pace, run_session
from services.settings import PROJECT_ROOT

TARGETS = {"success_rate": 1.0, "p95_first_render_s": 5.0, "growth_mb_per_20": 100.0}


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
                report["warmup"] = session_dict(warm[0])
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
    report["sessions"] = [session_dict(r) for r in sorted(results, key=lambda r: r.index)]


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
        "machine": describe_machine(), "config": {"sessions": args.sessions, "walks": args.walks, "rounds": args.rounds,
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
