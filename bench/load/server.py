"""The served demo: its seeded template, the server as tests.support.live_app starts it, its record of runs.

The demo is seeded once into a cache folder and copied for each run; the server is started through
``SERVER_HOOK`` so that every script run's wall and CPU time is recorded inside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.load.results import summary
from services.settings import PROJECT_ROOT

CACHE = PROJECT_ROOT / ".tower" / "bench-load"


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
                  "fragment": bool(rerun_data.fragment_id_queue), "page": rerun_data.page_name}
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
