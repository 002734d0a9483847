"""Small objects fitted on a reference, kept in tower state beside its profile.

A kind (``calibration``, ``pca``, …) owns the JSON of its payload; this module only keeps it, once
per (reference id, kind). A reference id is the digest of the reference's definition
(``reference.reference_id``), so a changed mapping or reference gets a new fit, and the same fit is
reused by every window, report and page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from services.errors import TowerStateUnavailable
from services.monitoring.store import monitoring_fitted

T = TypeVar("T")


def _tower_error(exc: sa_exc.DBAPIError) -> TowerStateUnavailable:
    return TowerStateUnavailable(f"The tower state cannot be read or written: {str(exc.orig).splitlines()[0]}",
                                 "Check TOWER_DB_URL (and run the monitoring job, which creates its tables).")


def load_fitted(tower: Engine, reference_id: str, kind: str) -> dict[str, Any] | None:
    """The kept payload of ``kind`` fitted on this reference, or None."""
    t = monitoring_fitted
    try:
        with tower.connect() as conn:
            row = conn.execute(sa.select(t.c.payload).where(t.c.reference_id == reference_id,
                                                            t.c.kind == kind)).first()
    except sa_exc.DBAPIError as exc:
        raise _tower_error(exc) from exc
    if row is None:
        return None
    try:  # a payload that is not a JSON object (edited, truncated) is as good as none: it is fitted again
        payload = json.loads(row.payload)
    except ValueError:
        return None
    return dict(payload) if isinstance(payload, dict) else None


def store_fitted(tower: Engine, reference_id: str, kind: str, model: str, payload: dict[str, Any]) -> None:
    """Keep (or replace) a fitted payload; NaN and ±inf are refused (they are not JSON)."""
    t = monitoring_fitted
    body = json.dumps(payload, sort_keys=True, allow_nan=False)
    try:
        with tower.begin() as conn:
            conn.execute(sa.delete(t).where(t.c.reference_id == reference_id, t.c.kind == kind))
            conn.execute(sa.insert(t).values(reference_id=reference_id, kind=kind, model=model, payload=body,
                                             computed_at=datetime.now(UTC).replace(tzinfo=None)))
    except sa_exc.IntegrityError:
        return  # another run fitted the same reference at the same moment: theirs is as good
    except sa_exc.DBAPIError as exc:
        raise _tower_error(exc) from exc


def load_or_fit(tower: Engine, reference_id: str, kind: str, model: str, fit: Callable[[], dict[str, Any]],
                *, refresh: bool = False) -> dict[str, Any]:
    """The kept payload, fitted (by ``fit``) and kept the first time, or again with ``refresh``."""
    if not refresh:
        found = load_fitted(tower, reference_id, kind)
        if found is not None:
            return found
    payload = fit()
    store_fitted(tower, reference_id, kind, model, payload)
    return payload


def kept_fit(tower: Engine, reference_id: str, kind: str, model: str, fit: Callable[[], dict[str, Any]],
             read: Callable[[dict[str, Any]], T | None], *, refresh: bool = False) -> T:
    """The kept fit as ``read`` understands it, fitted (and kept) the first time or with ``refresh``.

    A kept payload ``read`` refuses (None: an older tower's format, or edited in tower state) is fitted
    again and replaced, never trusted or crashed on; a fresh fit that does not read back is a bug."""
    found = read(load_or_fit(tower, reference_id, kind, model, fit, refresh=refresh))
    if found is None:
        found = read(load_or_fit(tower, reference_id, kind, model, fit, refresh=True))
    if found is None:
        raise ValueError(f"a fresh {kind} fit of reference {reference_id} does not read back")
    return found
