"""Small helpers for the local servers the demo launcher starts: ports, readiness and stopping.

They hold no knowledge of the demo itself, so the launcher, the browser tests and the benchmarks
can share them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from typing import Any

# Errors a bind reports when the address itself does not exist here (no IPv6 on the machine, say):
# nothing can listen there either, so they do not make a port busy.
_ADDRESS_ABSENT = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}
# The servers are local: a proxy from the environment must not answer for them.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def port_is_free(host: str, port: int) -> bool:
    """True if a server could listen on ``port`` at every address ``host`` resolves to.

    It binds the way uvicorn and Streamlit do (SO_REUSEADDR on, on POSIX), so a live listener
    makes the port busy while connections of a server that just stopped, lingering in TIME_WAIT,
    do not: those would not stop the servers from binding it again.
    """
    addresses = {(info[0], info[4][:2]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    for family, address in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            if os.name == "posix":  # on Windows the option would let us bind over a live listener
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno not in _ADDRESS_ABSENT:
                    return False
    return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, picked by the OS (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, timeout_s: float, *, give_up: Callable[[], bool] | None = None) -> bool:
    """True once ``url`` answers 200; False after ``timeout_s``, or as soon as ``give_up()`` is true.

    A server we just started takes a moment to listen; ``give_up`` lets the caller stop waiting
    when the server has died or a stop was asked for, instead of sitting out the timeout.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if give_up is not None and give_up():
            return False
        try:
            with _DIRECT.open(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout_s: float = 5.0) -> None:
    """Send ``sig`` to one child, give it ``timeout_s`` to finish, then SIGKILL it; always reaps it.

    For a child that shares our process group (so the terminal's Ctrl-C reaches it too) and
    therefore cannot be stopped with :func:`stop_process_group`.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)


def stop_process_group(proc: subprocess.Popen[Any], timeout_s: float = 5.0) -> None:
    """SIGTERM the process group of a child started with ``start_new_session``, SIGKILL what lingers.

    Such a child is out of reach of the signals sent to our own group (Ctrl-C, a supervisor's
    SIGTERM), so it has to be stopped explicitly, along with anything it started.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)
    # The leader has just been reaped (or is stuck): kill it and any grandchildren left in its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)
