"""What changed since last week, per model, for the fleet: new alerts, p95 latency, drift share.

Read from the stored monitoring (never the warehouse), two tower-state queries for the whole fleet
whatever its size: one over ``alert_episodes``, one over ``monitoring_results``. With ``end`` the
fleet window's end (exclusive, midnight UTC):

* **new alerts**: episodes whose onset window is in ``[end - 7 d, end)``, open or since resolved;
* **p95**: the mean of the daily p95 latencies (all versions, whole population) of that week against
  the mean of the week before, as a relative change ("p95 +40 %");
* **drift share**: the mean daily share of drifted features, that week minus the week before, in
  percentage points.

A change needs both weeks to have results; otherwise it is left out rather than guessed. The text is
pure (:func:`describe`), the read is :func:`week_changes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.monitoring.store import ALL_VERSIONS, alert_episodes, monitoring_results
from services.monitoring.tower_reads import read_rows
from services.segments import OVERALL

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class WeekChange:
    model: str
    new_alerts: int
    p95_ms: float | None  # mean daily p95 of the last week
    p95_before_ms: float | None  # ... of the week before
    drift_share: float | None
    drift_share_before: float | None

    @property
    def p95_change(self) -> float | None:
        """Relative change of the mean daily p95 (0.4 = +40 %); None without both weeks."""
        if self.p95_ms is None or not self.p95_before_ms:
            return None
        return self.p95_ms / self.p95_before_ms - 1

    @property
    def drift_share_change(self) -> float | None:
        if self.drift_share is None or self.drift_share_before is None:
            return None
        return self.drift_share - self.drift_share_before

    def describe(self) -> str:
        """'2 new alerts · p95 +40 % · drift share +25 pp' (the parts that can be said)."""
        parts = [f"{self.new_alerts} new alert" + ("" if self.new_alerts == 1 else "s")]
        p95 = self.p95_change
        if p95 is not None:
            parts.append(f"p95 {_signed(100 * p95)} %")
        drift = self.drift_share_change
        if drift is not None:
            parts.append(f"drift share {_signed(100 * drift)} pp")
        return " · ".join(parts)


def _signed(value: float) -> str:
    shown = round(value)
    return "±0" if shown == 0 else f"{shown:+d}"


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def week_changes(tower: Engine, models: Sequence[str], end: datetime) -> dict[str, WeekChange]:
    """Each model's change over the week before ``end`` (two queries for all ``models``)."""
    if not models:
        return {}
    models = list(dict.fromkeys(models))
    last, before = end - WEEK, end - 2 * WEEK
    e, r = alert_episodes.c, monitoring_results.c
    opened = {row.model: int(row.n) for row in read_rows(tower, sa.select(e.model, sa.func.count().label("n")).where(
        e.model.in_(models), e.opened_window >= last, e.opened_window < end).group_by(e.model))}
    rows = read_rows(tower, sa.select(r.model, r.metric, r.window_start, r.value).where(
        r.model.in_(models), r.segment == OVERALL, r.version == ALL_VERSIONS, r.column_name == "",
        r.slice_key == "", r.metric.in_(["p95_ms", "drift_share"]), r.window_start >= before,
        r.window_start < end, r.value.is_not(None)))
    series: dict[tuple[str, str, bool], list[float]] = {}
    for row in rows:
        series.setdefault((row.model, row.metric, row.window_start >= last), []).append(float(row.value))

    def mean(model: str, metric: str, recent: bool) -> float | None:
        return _mean(series.get((model, metric, recent), []))

    return {m: WeekChange(m, opened.get(m, 0), mean(m, "p95_ms", True), mean(m, "p95_ms", False),
                          mean(m, "drift_share", True), mean(m, "drift_share", False)) for m in models}
