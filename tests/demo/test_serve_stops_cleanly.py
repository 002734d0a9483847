"""`make run` (python -m services.cli demo serve) stops everything it started, and refuses busy ports.

Real launchers, real servers: the OIDC provider lives in its own session, so only the launcher's
own handling can stop it when a supervisor or terminal signals the launcher's process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.demo.processes import free_port, port_is_free, stop_process_group, wait_for
from services.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow  # each test starts the CLI (~5 s of imports); the signal tests start the servers too

START_TIMEOUT_S = 90
EXIT_TIMEOUT_S = 30


def launcher_env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "TOWER_DATA_DIR": str(data_dir), "TOWER_DEMO": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}


def serve_command(port: int, oidc_port: int) -> list[str]:
    return [sys.executable, "-m", "services.cli", "demo", "serve", "--port", str(port), "--oidc-port", str(oidc_port)]


def accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def assert_nothing_listens(port: int, host: str) -> None:
    assert not accepts_connections(host, port), f"something still accepts connections on {host}:{port}"
    assert port_is_free(host, port), f"port {port} on {host} cannot be bound"


@contextmanager
def holding_port(host: str, port: int) -> Iterator[socket.socket]:
    """Another program's server on ``host:port``, for as long as the block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, port))
        sock.listen()
        yield sock


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_launchers_group_stops_app_and_oidc_provider(sig: signal.Signals, tmp_path: Path) -> None:
    port, oidc_port = free_port(), free_port()
    log = tmp_path / "launcher.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(serve_command(port, oidc_port), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=launcher_env(tmp_path), cwd=PROJECT_ROOT,
                                    start_new_session=True)
    try:
        def launcher_died() -> bool:
            return launcher.poll() is not None

        for url in (f"http://127.0.0.1:{oidc_port}/.well-known/openid-configuration",
                    f"http://localhost:{port}/_stcore/health"):
            assert wait_for(url, START_TIMEOUT_S, give_up=launcher_died), (
                f"{url} did not answer (launcher exit code {launcher.poll()}):\n{log.read_text(errors='replace')}")

        os.killpg(launcher.pid, sig)
        try:
            code = launcher.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the launcher did not exit within {EXIT_TIMEOUT_S} s of {sig.name}")
        assert code == 0, log.read_text(errors="replace")
        assert_nothing_listens(oidc_port, "127.0.0.1")
        assert_nothing_listens(port, "127.0.0.1")
    finally:
        stop_process_group(launcher)  # only if the test failed: the launcher has exited otherwise


@pytest.mark.parametrize(("taken", "what", "option"), [("oidc", "OIDC provider", "--oidc-port"),
                                                        ("app", "the app", "--port")])
def test_a_busy_port_is_refused_before_anything_starts(taken: str, what: str, option: str, tmp_path: Path) -> None:
    port, oidc_port = free_port(), free_port()
    busy, other = (oidc_port, port) if taken == "oidc" else (port, oidc_port)
    with holding_port("127.0.0.1", busy):
        started = time.monotonic()
        result = subprocess.run(serve_command(port, oidc_port), stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, env=launcher_env(tmp_path), cwd=PROJECT_ROOT, timeout=60)
        elapsed = time.monotonic() - started

    assert result.returncode == 2, result.stderr
    assert f"Port {busy} " in result.stderr and "already in use" in result.stderr, result.stderr
    assert what in result.stderr, result.stderr  # says what the port was for
    assert option in result.stderr, result.stderr  # the way out is named
    assert result.stderr.startswith("error: "), result.stderr  # a one-line refusal, not a traceback
    assert elapsed < 30, f"refusing took {elapsed:.0f} s: it must not wait for a server"
    assert_nothing_listens(other, "127.0.0.1")
    assert not (tmp_path / "demo-secrets.toml").exists(), "nothing is prepared for a launch that is refused"
