"""The server's RSS and every process's CPU, read from /proc; and what machine this is."""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def describe_machine() -> dict[str, Any]:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor() or "unknown")
    mem = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
               if ln.startswith("MemTotal:"))
    import streamlit

    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(mem / 2**20, 1),
            "os": platform.platform(), "python": platform.python_version(), "streamlit": streamlit.__version__}
