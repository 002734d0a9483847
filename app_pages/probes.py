"""Cheap questions to the backends that are down, through the outage board (so at most one every 10 s)."""

from __future__ import annotations

import sqlalchemy as sa

from app_pages import cached
from services.errors import TowerError
from services.outages import REGISTRY, TOWER, WAREHOUSE, Outage
from services.settings import Settings


def _probe(settings: Settings, backend: str) -> None:
    if backend == REGISTRY:
        cached.registry(settings).ping()
    elif backend == WAREHOUSE:
        with cached.engine(settings).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    elif backend == TOWER:
        cached.governance.clear()  # rebuilt on the next call: its engine may predate the outage
        with cached.governance(settings).engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))


def recovered(settings: Settings, outages: list[Outage]) -> bool:
    """True when every backend that was down answers again."""
    try:
        for outage in outages:
            cached.guarded(settings, outage.backend, lambda b=outage.backend: _probe(settings, b))
    except TowerError:
        return False
    except Exception:  # a probe must never break the page it watches over
        return False
    return not cached.board().current(cached.targets(settings))
