"""Which backend is down, since when, and not asking it again too often.

One board per process, shared by every session: an outage of the registry is the same outage for
everybody. After a failure, calls to that backend fail at once for ``cooldown_s`` (so a page with
ten registry calls does not wait ten timeouts), then one call is let through to see whether the
backend is back; its success clears the outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from services.errors import RegistryUnavailable, TowerError, TowerStateUnavailable, WarehouseUnavailable

T = TypeVar("T")
REGISTRY, WAREHOUSE, TOWER = "MLflow registry", "warehouse", "tower state"
KIND_OF: dict[type[TowerError], str] = {
    RegistryUnavailable: REGISTRY, WarehouseUnavailable: WAREHOUSE, TowerStateUnavailable: TOWER}


@dataclass(frozen=True)
class Outage:
    backend: str
    target: str  # the store's URL: outages are per store, not per kind of store
    since: datetime  # UTC, first failure of this outage
    error: TowerError  # the latest failure
    last_attempt: float  # monotonic seconds


def backend_of(error: BaseException) -> str | None:
    return next((kind for cls, kind in KIND_OF.items() if isinstance(error, cls)), None)


class OutageBoard:
    def __init__(self, cooldown_s: float = 10.0, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.cooldown_s = cooldown_s
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()
        self._outages: dict[tuple[str, str], Outage] = {}

    def call(self, backend: str, targets: dict[str, str], fn: Callable[[], T]) -> T:
        """Run ``fn`` unless ``backend`` (at its target) failed less than ``cooldown_s`` ago.

        ``targets`` maps each backend to its store URL for this call; a failure is recorded against
        the backend it names (a report reads the warehouse and the tower state).
        """
        key = (backend, targets[backend])
        with self._lock:
            outage = self._outages.get(key)
        if outage is not None and self._clock() - outage.last_attempt < self.cooldown_s:
            raise outage.error
        try:
            result = fn()
        except TowerError as err:
            self.failed(err, targets)
            raise
        with self._lock:
            self._outages.pop(key, None)
        return result

    def failed(self, error: TowerError, targets: dict[str, str]) -> None:
        backend = backend_of(error)
        if backend is None or backend not in targets:
            return
        key = (backend, targets[backend])
        with self._lock:
            previous = self._outages.get(key)
            since = previous.since if previous else self._wall()
            self._outages[key] = Outage(backend, key[1], since, error, self._clock())

    def since(self, error: BaseException, targets: dict[str, str]) -> datetime | None:
        backend = backend_of(error)
        with self._lock:
            outage = self._outages.get((backend, targets.get(backend, ""))) if backend else None
        return outage.since if outage else None

    def current(self, targets: dict[str, str]) -> list[Outage]:
        """The outages of these stores, oldest first."""
        with self._lock:
            found = [self._outages.get(key) for key in targets.items()]
        return sorted((o for o in found if o is not None), key=lambda o: o.since)
