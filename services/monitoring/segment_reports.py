"""A window's report for the whole population and for each declared segment (the report command's JSON).

Each segment's report is the same code as the whole population's, run on the segment's rows against
the segment's own reference rows (``ModelMapping.for_segment``), so its numbers equal what the
unsegmented code gives on a log holding only those rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from services.errors import ConfigError
from services.mapping import ModelMapping
from services.monitoring.config import AlertRules
from services.monitoring.data_quality import reference_ranges
from services.monitoring.estimated_performance import calibration_for
from services.monitoring.multivariate import reconstruction_model
from services.monitoring.reference import load_or_compute
from services.monitoring.report import window_report


def report_json(tower: Engine, warehouse: Engine, mapping: ModelMapping, start: datetime, end: datetime, *,
                rules: AlertRules | None = None, reference_start: datetime | None = None,
                reference_end: datetime | None = None) -> dict[str, Any]:
    """The JSON of one population's report (``mapping.segment`` None: the whole log)."""
    profile = load_or_compute(tower, warehouse, mapping, reference_start, reference_end)
    pca = reconstruction_model(tower, warehouse, mapping, profile)  # multivariate drift
    calibration = calibration_for(tower, warehouse, mapping, profile)  # CBPE (estimated_performance)
    ranges = reference_ranges(tower, warehouse, mapping, profile)  # data quality: out-of-range shares
    return window_report(warehouse, mapping, profile, start, end, rules=rules, pca=pca,
                         calibration=calibration, ranges=ranges).to_json()


def segmented_report_json(tower: Engine, warehouse: Engine, mapping: ModelMapping, start: datetime, end: datetime,
                          *, segment: str | None = None, rules: AlertRules | None = None,
                          reference_start: datetime | None = None,
                          reference_end: datetime | None = None) -> dict[str, Any]:
    """The report of ``segment`` (None: the whole population), with ``segments``: one report per
    declared segment (only for the whole population). A segment whose reference holds no rows is
    listed with its error instead of a report."""
    def of(population: ModelMapping) -> dict[str, Any]:
        return report_json(tower, warehouse, population, start, end, rules=rules, reference_start=reference_start,
                           reference_end=reference_end)

    chosen = mapping.for_segment(segment)
    out = of(chosen)
    out["segment"] = None if chosen.segment is None else chosen.segment.definition()
    if chosen.segment is not None:
        return out
    parts = []
    for s in mapping.segments:
        try:
            parts.append({"segment": s.definition(), **of(mapping.for_segment(s.name))})
        except ConfigError as exc:
            parts.append({"segment": s.definition(), "error": exc.message})
    out["segments"] = parts
    return out
