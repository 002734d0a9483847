"""A real MLflow tracking server on a free loopback port, for tests of the REST path.

``run_mlflow_server`` starts ``python -m mlflow server`` (the interpreter running the tests) in its
own process group, waits for ``GET /health`` to answer, yields the server's URL and, on exit, stops
the whole process group (the CLI starts uvicorn as a child), so leaving the ``with`` block is also
how a test simulates a server going away.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from services.demo.processes import free_port, stop_process_group

STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_CHARS = 4000


def log_tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<server log unreadable: {exc}>"
    return text[-LOG_TAIL_CHARS:] if text else "<server log empty>"


@contextlib.contextmanager
def run_mlflow_server(
    backend_uri: str, artifacts_dir: Path, *, startup_timeout_s: float = STARTUP_TIMEOUT_S
) -> Iterator[str]:
    """Serve ``backend_uri`` at http://127.0.0.1:<free port> for the duration of the block."""
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--backend-store-uri", backend_uri,
        "--serve-artifacts",
        "--artifacts-destination", str(artifacts_dir),
        "--workers", "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env["PYTHONUNBUFFERED"] = "1"
    # MLflow 3 servers start a job runner and ~7 huey consumer processes (GenAI jobs) by default;
    # the tracking/registry API does not need them and they double the startup time.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    fd, log_name = tempfile.mkstemp(prefix=f"mlflow-server-{port}-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(fd, "wb") as log:
        proc = subprocess.Popen(  # fixed argv, our own interpreter
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=artifacts_dir, env=env, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with code {proc.returncode} before answering {url}/health.\n"
                    f"Command: {' '.join(command)}\nServer log:\n{log_tail(log_path)}"
                )
            try:
                response = requests.get(f"{url}/health", timeout=2)
                if response.status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not answer {url}/health within {startup_timeout_s:.0f} s.\n"
                    f"Command: {' '.join(command)}\nServer log:\n{log_tail(log_path)}"
                )
            time.sleep(0.2)
        yield url
    finally:
        stop_process_group(proc, STOP_TIMEOUT_S)
        with contextlib.suppress(OSError):
            log_path.unlink()
