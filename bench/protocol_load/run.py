"""The run: serve the demo (one replica, or replicas behind HAProxy), warm it up, then each load level.

A level: N sessions sign in (the real round trip, before the clock starts), connect, and when all are
connected walk their pages at once. Measured over the walk: every page's times, the CPU each process
used (/proc), every replica's RSS before and after, and the servers' own record of their script runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load.machine import describe_machine, machine_cpu, process_table, rss_mb
from bench.load.results import summary
from bench.load.server import SERVER_HOOK, prepare_template, script_runs
from bench.protocol_load.tower_state import postgres_tower_state
from bench.protocol_load.walk import PAGES, USERS, Session, prepare, walk
from tests.support.replicas import Deployment, deployment

TARGETS = {"sessions": 50, "success_rate": 1.0, "p95_first_delta_s": 2.0, "p95_finished_s": 5.0, "growth_mb": 100.0}


def cpu_by_page(runlog: Path, start: float, end: float) -> dict[str, Any]:
    """The script thread's CPU seconds of each full run that ended in [start, end], by page url path."""
    by_page: dict[str, list[float]] = {}
    if runlog.exists():
        for line in runlog.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if start <= record["t"] <= end and not record.get("fragment") and "page" in record:
                by_page.setdefault(record["page"] or "fleet", []).append(record["cpu"])
    return {page: summary(values) for page, values in sorted(by_page.items())}


class CpuWindow:
    """CPU seconds each process used between ``start`` and ``stop``: ours by name, this generator, the rest."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def _snapshot(self) -> dict[int, tuple[int, str, float]]:
        return process_table()

    def start(self) -> None:
        self.first, self.machine0, self.wall0 = self._snapshot(), machine_cpu(), time.monotonic()

    def stop(self) -> dict[str, Any]:
        last, (busy1, total1), wall = self._snapshot(), machine_cpu(), time.monotonic() - self.wall0
        (busy0, total0) = self.machine0
        by_pid = {pid: name for name, pid in self.pids.items()}
        me = os.getpid()
        used: dict[str, float] = {name: 0.0 for name in self.pids} | {"generator": 0.0, "other": 0.0}
        for pid, (_ppid, _name, cpu) in last.items():
            spent = max(0.0, cpu - (self.first[pid][2] if pid in self.first else 0.0))
            used[by_pid.get(pid, "generator" if pid == me else "other")] += spent
        return {"seconds": wall, "machine_busy_core_s": busy1 - busy0, "machine_core_s": total1 - total0,
                "core_s": used}


async def _level(app: Deployment, count: int, args: argparse.Namespace, runlogs: dict[str, Path],
                 log: Callable[[str], None]) -> dict[str, Any]:
    sessions = [Session(i + 1, USERS[i % len(USERS)], app.url) for i in range(count)]
    log(f"{count} sessions: signing in through the OIDC provider …")
    started = time.perf_counter()
    gate = asyncio.Semaphore(args.signin_concurrency)

    async def signed(session: Session) -> None:
        async with gate:
            await prepare(session, args.timeout)

    await asyncio.gather(*(signed(s) for s in sessions))
    signin_wall = time.perf_counter() - started
    log(f"signed in {sum(s.error is None for s in sessions)}/{count} in {signin_wall:.0f} s; "
        "connecting, then all at once …")
    rss_before = {r.name: rss_mb(r.pid) for r in app.replicas if r.running}
    go = asyncio.Event()
    pages = PAGES[:args.pages]
    tasks = [asyncio.ensure_future(walk(s, go, pages, args.timeout)) for s in sessions]
    await asyncio.sleep(0)
    deadline = time.monotonic() + args.timeout
    while sum(s.connect_s is not None or s.error is not None for s in sessions) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    cpu = CpuWindow(app.pids)
    cpu.start()
    t0 = time.time()
    go.set()
    await asyncio.gather(*tasks)
    t1 = time.time()
    used = cpu.stop()
    rss_after = {r.name: rss_mb(r.pid) for r in app.replicas if r.running}
    rows = [row for s in sessions for row in s.pages]
    per_page: dict[str, Any] = {}
    for name in [p.name for p in pages] + ["overall"]:
        mine = [r for r in rows if name in ("overall", r["page"]) and r["ok"]]
        per_page[name] = {"first_delta": summary([r["first_delta_s"] for r in mine if r["first_delta_s"] is not None]),
                          "title": summary([r["title_s"] for r in mine if r.get("title_s") is not None]),
                          "finished": summary([r["finished_s"] for r in mine if r["finished_s"] is not None])}
    ok = [s for s in sessions if s.ok]
    runs = {name: script_runs(path, t0, t1 + 1) for name, path in runlogs.items()}
    by_page = {name: cpu_by_page(path, t0, t1 + 1) for name, path in runlogs.items()}
    result = {
        "sessions": count, "ok": len(ok), "success_rate": len(ok) / count,
        "failures": [{"session": s.index, "user": s.user, "reason": s.error} for s in sessions if not s.ok][:10],
        "failed": count - len(ok), "signin": summary([s.signin_s for s in sessions if s.signin_s is not None]),
        "signin_wall_s": signin_wall,
        "signin_retries": sum(s.signin_retries for s in sessions), "walk_s": t1 - t0, "pages": per_page,
        "page_runs_ok": sum(r["ok"] for r in rows),
        "throughput_pages_s": sum(r["ok"] for r in rows) / max(t1 - t0, 1e-9),
        "cpu": used, "rss_before_mb": rss_before, "rss_after_mb": rss_after,
        "growth_mb": sum(rss_after.values()) - sum(rss_before.get(k, 0.0) for k in rss_after),
        "server_runs": runs, "server_cpu_by_page": by_page, "bytes": summary([r["bytes"] for r in rows]),
    }
    overall = per_page["overall"]
    log(f"{count} sessions: {len(ok)}/{count} ok in {t1 - t0:.1f} s; p95 first delta "
        f"{overall['first_delta']['p95'] or 0:.2f} s, finished {overall['finished']['p95'] or 0:.2f} s; "
        f"RSS {sum(rss_before.values()):.0f} → {sum(rss_after.values()):.0f} MB")
    return result


@contextmanager
def _served(args: argparse.Namespace, data_dir: Path,
            log: Callable[[str], None]) -> Iterator[tuple[Deployment, dict[str, Path]]]:
    env: dict[str, str] = {}
    if args.page_run_slots:
        env["TOWER_PAGE_RUN_SLOTS"] = str(args.page_run_slots)
    with postgres_tower_state(args.postgres, data_dir, log) if args.postgres else _nothing() as tower_url:
        if tower_url:
            env["TOWER_DB_URL"] = tower_url
        runlogs = {f"app{i}": data_dir / "logs" / f"runs-app{i}.jsonl" for i in range(1, args.replicas + 1)}
        (data_dir / "logs").mkdir(parents=True, exist_ok=True)
        with deployment(data_dir, args.replicas, proxy=args.proxy, env=env,
                        app_command=[sys.executable, "-c", SERVER_HOOK],
                        replica_env={name: {"BENCH_LOAD_RUNLOG": str(path)} for name, path in runlogs.items()}) as app:
            yield app, runlogs


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


async def _all_levels(app: Deployment, args: argparse.Namespace, runlogs: dict[str, Path], report: dict[str, Any],
                      log: Callable[[str], None]) -> None:
    report["rss_idle_mb"] = {r.name: rss_mb(r.pid) for r in app.replicas}
    if args.warmup:
        # One session per replica, so that each process has imported the pages and filled its caches.
        log("warm-up …")
        report["warmup"] = await _level(app, max(1, args.replicas), args, runlogs, lambda _m: None)
    report["levels"] = []
    for count in args.sessions:
        if args.pause > 0 and report["levels"]:
            await asyncio.sleep(args.pause)  # let the previous level's sessions be released
        report["levels"].append(await _level(app, count, args, runlogs, log))


def run_protocol_load(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Seed or reuse the demo, serve it, run every level; the report as a dict."""
    started = time.monotonic()
    template = Path(args.demo) if args.demo else prepare_template(Path(args.cache), log)
    workdir = Path(tempfile.mkdtemp(prefix="bench-protocol-"))
    data_dir = workdir / "demo"
    shutil.copytree(template, data_dir, ignore=shutil.ignore_patterns("logs", "demo-secrets.toml"))
    load_before = os.getloadavg()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "command": args.command,
        "machine": describe_machine(), "load_before": load_before,
        "config": {"replicas": args.replicas, "proxy": args.proxy,
                   "tower_state": "PostgreSQL" if args.postgres else "SQLite",
                   "pages": [f"{p.name} ({p.path or '/'}{'?' + p.query if p.query else ''})"
                             for p in PAGES[:args.pages]],
                   "users": list(USERS), "timeout_s": args.timeout, "page_run_slots": args.page_run_slots},
    }
    try:
        with _served(args, data_dir, log) as (app, runlogs):
            log(f"serving {app.url} from {len(app.replicas)} replica(s){' behind HAProxy' if app.proxy else ''}")
            asyncio.run(_all_levels(app, args, runlogs, report, log))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["load_after"] = os.getloadavg()
    report["wall_s"] = time.monotonic() - started
    return report
