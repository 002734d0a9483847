"""The drift and fairness evidence a promotion reads, from the stored monitoring results (and the
training-skew comparison, computed when a decision asks)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.governance.skew_gate import SkewGate, SkewReading
from services.monitoring import training_skew
from services.monitoring.store import ALL_VERSIONS, monitoring_results
from services.monitoring.tower_reads import read_rows
from services.segments import OVERALL
from services.settings import Settings
from services.stores.registry import Registry


class TowerMonitoringEvidence:
    """``services.governance.context.MonitoringEvidence`` from the stored monitoring results."""

    def __init__(self, tower: Engine, *, settings: Settings | None = None, registry: Registry | None = None,
                 warehouse: Engine | None = None) -> None:
        self.tower = tower
        self.settings, self.registry, self.warehouse = settings, registry, warehouse

    def training_skew(self, model: str, version: str, gate: SkewGate, now: datetime) -> SkewReading:
        """The candidate's training data against the traffic before ``now`` (``services.monitoring.training_skew``)."""
        if self.settings is None or self.registry is None or self.warehouse is None:
            return SkewReading("", "", missing="The warehouse is not configured or cannot be opened: the training "
                                               "data cannot be compared with live traffic.")
        return training_skew.training_skew(self.settings, self.registry, self.tower, self.warehouse, model, version,
                                           gate, now)

    def latest_drift_share(self, model: str, version: str) -> float | None:
        """Share of drifted features in the latest window in which ``version`` served (None: never seen)."""
        return self.segment_drift_share(model, version, OVERALL)

    def latest_fairness_dpd(self, model: str) -> float | None:
        """The worst demographic parity difference over the sensitive attributes, in the latest window."""
        return self.segment_fairness_dpd(model, OVERALL)

    # issue 14: the same readings for one segment (services.governance.segment_gates.SegmentEvidence)
    def segment_drift_share(self, model: str, version: str, segment: str) -> float | None:
        """``latest_drift_share`` among the rows of ``segment`` ('' = the whole population)."""
        r = monitoring_results.c
        rows = read_rows(self.tower, sa.select(r.value).where(
            r.model == model, r.segment == segment, r.version == str(version), r.metric == "drift_share",
            r.value.is_not(None))
            .order_by(r.window_start.desc()).limit(1))
        return None if not rows else float(rows[0].value)

    def segment_fairness_dpd(self, model: str, segment: str) -> float | None:
        """``latest_fairness_dpd`` among the rows of ``segment`` ('' = the whole population)."""
        r = monitoring_results.c
        latest = (sa.select(sa.func.max(r.window_start)).where(
            r.model == model, r.segment == segment, r.version == ALL_VERSIONS,
            r.metric == "demographic_parity_difference", r.value.is_not(None)).scalar_subquery())
        rows = read_rows(self.tower, sa.select(sa.func.max(r.value)).where(
            r.model == model, r.segment == segment, r.version == ALL_VERSIONS,
            r.metric == "demographic_parity_difference",
            r.window_start == latest))
        return None if not rows or rows[0][0] is None else float(rows[0][0])
