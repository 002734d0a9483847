"""Cheap questions to the backends that are down, through the outage board (so at most one every 10 s)."""

from __future__ import annotations

import sqlalchemy as sa

from services.errors import TowerError
from services.outages import REGISTRY, TOWER, WAREHOUSE, Outage
from services.settings import Settings
from ui import backends


def _probe(settings: Settings, backend: str) -> None:
    if backend == REGISTRY:
        backends.registry(settings).ping()
    elif backend == WAREHOUSE:
        with backends.engine(settings).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    elif backend == TOWER:
        backends.stores.clear()  # rebuilt on the next call: its engine may predate the outage
        with backends.governance(settings).engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))


def recovered(settings: Settings, outages: list[Outage]) -> bool:
    """True when every backend that was down answers again."""
    try:
        for outage in outages:
            backends.guarded(settings, outage.backend, lambda b=outage.backend: _probe(settings, b))
    except TowerError:
        return False
    except Exception:  # a probe must never break the page it watches over
        return False
    return not backends.board().current(backends.targets(settings))
