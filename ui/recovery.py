"""Cheap questions to the backends that are down, through the outage board (so at most one every 10 s)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from services.errors import TowerError
from services.outages import REGISTRY, TOWER, WAREHOUSE, Outage
from services.settings import Settings
from services.stores import tower_db
from services.stores.warehouse import engine as warehouse
from ui import backends


def _probe(settings: Settings, backend: str) -> None:
    if backend == REGISTRY:
        backends.registry(settings).ping()
    elif backend == WAREHOUSE:
        warehouse.ping(backends.engine(settings))
    elif backend == TOWER:
        backends.stores.clear()  # rebuilt on the next call: its engine may predate the outage
        tower_db.ping(backends.tower(settings))


def recovered(settings: Settings, outages: list[Outage]) -> bool:
    """True when every backend that was down answers again."""
    try:
        for outage in outages:
            backends.guarded(settings, outage.backend,
                             cast(Callable[[], None], lambda b=outage.backend: _probe(settings, b)))
    except TowerError:
        return False
    except Exception:  # a probe must never break the page it watches over
        return False
    return not backends.board().current(backends.targets(settings))
