"""How the benchmark measures: wall-clock and CPU clocks, peak memory, the machine it runs on."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any


class Clock:
    """Wall-clock seconds and CPU seconds (every thread of this process) since it was started.

    The CPU figure hardly moves with the machine's load, the wall-clock one does: both are kept.
    """

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def median_time(fn: Any, repeat: int) -> tuple[float, float]:
    """Median wall-clock and median CPU seconds of ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        clock = Clock()
        fn()
        wall, cpu = clock.stop()
        walls.append(wall)
        cpus.append(cpu)
    return statistics.median(walls), statistics.median(cpus)


def peak_mib() -> float:
    """This process's peak resident memory in MiB.

    ``VmHWM`` of /proc/self/status: ``ru_maxrss`` would not do, as Linux carries the parent's peak
    over a fork and exec into the child's.
    """
    for line in _read("/proc/self/status").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def wait_quiet(max_seconds: float) -> float:
    """Wait (at most ``max_seconds``) until the 1-minute load average is below the number of cores; that load."""
    deadline = time.monotonic() + max_seconds
    while os.getloadavg()[0] >= (os.cpu_count() or 1) and time.monotonic() < deadline:
        time.sleep(2)
    return os.getloadavg()[0]


def machine(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The CPU, memory, OS, load and package versions (``extra``: more packages to name)."""
    from importlib import metadata

    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), 0)
    versions = {}
    for package in ("duckdb", "duckdb-engine", "sqlalchemy", "evidently", "fairlearn", "pandas", "numpy", "scipy",
                    *extra):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": f"{mem_kib / 2**20:.0f} GiB",
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "load": " / ".join(f"{v:.1f}" for v in os.getloadavg()),
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items())}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
