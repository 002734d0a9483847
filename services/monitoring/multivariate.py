"""Multivariate drift: one number per model and window, the PCA reconstruction error, against its band.

The definition is in ``services.stats.reconstruction`` (NannyML's data reconstruction drift on the
numerical features); the SQL in ``services.stores.warehouse.reconstruction``. This module

* fits the PCA and its band on a reference once and keeps them in tower state beside the reference
  profile (``monitoring_fitted``, kind ``pca``, keyed by the reference id): three warehouse
  statements, no row pulled. A reference that gives no PCA (fewer than two numerical features,
  uncorrelated features, too few rows) is kept too, as its reason, so it is not tried every run;
* computes a window's value (one statement, per day and version for the job), and
* turns it into the report's ``multivariate_drift`` object and the stored result rows:
  ``reconstruction_error`` (model level, ``threshold`` = the band's upper bound, ``alert`` = outside
  the band) and ``reconstruction_error_lower`` (the lower bound, NULL when the band has none).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from services.mapping import ModelMapping
from services.monitoring.fitted import kept_fit
from services.monitoring.reference import ReferenceProfile
from services.stats import reconstruction as rc
from services.stores.warehouse import reconstruction as wr
from services.stores.warehouse.rows import Rows, log_rows, reference_rows
from services.stores.warehouse.sql import WHOLE, GroupKey

KIND = "pca"
FIT_FORMAT = 1
METRIC = "reconstruction_error"
LOWER_METRIC = "reconstruction_error_lower"
METHOD = "pca"
NOT_COMPUTED = "not computed for this report"


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class MultivariateResult:
    """A window's reconstruction error against the reference band; ``reason`` says why there is no value."""

    value: float | None
    lower: float | None
    upper: float | None
    drifted: bool | None
    rows: int = 0
    missing: int = 0  # feature values imputed by the reference mean (NULL, NaN, +-inf)
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"value": _finite(self.value), "lower": _finite(self.lower), "upper": _finite(self.upper),
                "drifted": self.drifted, "reason": self.reason}

    def result_rows(self, add: Callable[..., None]) -> None:
        """Add the stored rows through the report's ``add(metric, value, threshold=, alert=, method=)``."""
        if self.value is None and self.upper is None:
            return  # no PCA (or no band and no value): nothing to chart or alert on
        add(METRIC, self.value, threshold=self.upper, alert=self.drifted, method=METHOD)
        add(LOWER_METRIC, self.lower, method=METHOD)


@dataclass(frozen=True)
class ReconstructionModel:
    """The kept fit of one reference: a PCA with its band, or the reason there is none."""

    fit: rc.PcaFit | None
    band: rc.Band | None
    reason: str | None

    def result(self, sums: wr.ErrorSums | None) -> MultivariateResult:
        lower = self.band.lower if self.band else None
        upper = self.band.upper if self.band else None
        if self.fit is None:
            return MultivariateResult(None, None, None, None, reason=self.reason)
        if sums is None or sums.rows == 0:
            return MultivariateResult(None, lower, upper, None, reason="no rows in the window")
        value = sums.mean
        return MultivariateResult(value, lower, upper, rc.outside(value, lower, upper), rows=sums.rows,
                                  missing=sums.missing, reason=self.reason)


def _reference_of(mapping: ModelMapping, profile: ReferenceProfile) -> Rows:
    log_range = profile.definition.get("log_range")
    if log_range:
        start, end = (datetime.fromisoformat(v) for v in log_range)
        return reference_rows(mapping, start, end)
    return reference_rows(mapping)


def fit_payload(engine: Engine, mapping: ModelMapping, profile: ReferenceProfile) -> dict[str, Any]:
    """Fit the PCA and its band on the profile's reference (three warehouse statements), as kept JSON."""
    base: dict[str, Any] = {"format": FIT_FORMAT}
    columns = list(mapping.numerical)
    if len(columns) < 2:
        return {**base, "reason": f"{len(columns)} numerical feature(s) mapped; a reconstruction error needs at "
                                  "least 2."}
    rows = _reference_of(mapping, profile)
    moments = wr.reference_moments(engine, mapping, rows, columns)
    left_out = wr.missing_columns(columns, moments)
    usable = [c for c in columns if c not in left_out]
    note = f" (left out, no finite reference value: {', '.join(left_out)})" if left_out else ""
    try:
        fit = rc.fit_from_moments(usable, [moments.means[c] for c in usable], moments.cross, moments.rows)
    except rc.NotFittable as exc:
        return {**base, "reason": f"no PCA on the reference: {exc}{note}"}
    size = rc.chunk_size(moments.rows)
    fitted = {**base, "columns": list(fit.columns), "means": fit.means.tolist(), "scales": fit.scales.tolist(),
              "components": fit.components.tolist(), "explained": fit.explained, "rows": moments.rows,
              "left_out": left_out}
    if size < 1:
        return {**fitted, "reason": f"the reference has {moments.rows} rows, too few for "
                                    f"{rc.REFERENCE_CHUNKS} chunks: no band"}
    chunks = wr.chunk_errors(engine, mapping, rows, fit.columns, fit.means, fit.scales, fit.residual_matrix, size)
    try:
        band = rc.band([mean for _, mean in chunks])
    except rc.NotFittable as exc:
        return {**fitted, "reason": str(exc)}
    return {**fitted, "band": {"mean": band.mean, "lower": band.lower, "upper": band.upper, "chunks": band.chunks,
                               "chunk_size": size, "chunk_means": [mean for _, mean in chunks]},
            "reason": None}


def model_from_payload(payload: dict[str, Any], mapping: ModelMapping) -> ReconstructionModel | None:
    """The kept payload as a model; None when it is not what ``fit_payload`` writes for this mapping
    (edited in the tower state, or by another version): column names reach SQL only from the mapping,
    numbers only finite, so such a payload is fitted again rather than trusted."""
    try:
        if payload.get("format") != FIT_FORMAT:
            return None
        if "components" not in payload:
            reason = payload.get("reason")
            return ReconstructionModel(None, None, reason) if isinstance(reason, str) else None
        columns = payload["columns"]
        if (not isinstance(columns, list) or len(set(columns)) != len(columns)
                or not set(columns) <= set(mapping.numerical)):
            return None
        d = len(columns)
        means, scales = np.asarray(payload["means"], dtype=float), np.asarray(payload["scales"], dtype=float)
        components = np.asarray(payload["components"], dtype=float)
        if (means.shape != (d,) or scales.shape != (d,) or components.ndim != 2 or components.shape[1] != d
                or not 1 <= components.shape[0] < d or not (scales > 0).all()
                or not all(np.isfinite(a).all() for a in (means, scales, components))):
            return None
        fit = rc.PcaFit(columns=tuple(columns), means=means, scales=scales, components=components,
                        explained=float(payload["explained"]))
        b = payload.get("band")
        band = None
        if b is not None:
            lower = None if b["lower"] is None else float(b["lower"])
            band = rc.Band(mean=float(b["mean"]), lower=lower, upper=float(b["upper"]), chunks=int(b["chunks"]))
            if not all(math.isfinite(v) for v in (band.mean, band.upper, band.lower or 0.0)):
                return None
        reason = payload.get("reason")
        return ReconstructionModel(fit, band, reason if isinstance(reason, str) else None)
    except (KeyError, TypeError, ValueError):
        return None


def reconstruction_model(tower: Engine, engine: Engine, mapping: ModelMapping, profile: ReferenceProfile, *,
                         refresh: bool = False) -> ReconstructionModel:
    """The PCA of this reference, fitted and kept the first time (``refresh``: fitted again)."""
    def fit() -> dict[str, Any]:
        return fit_payload(engine, mapping, profile)

    return kept_fit(tower, profile.reference_id, KIND, mapping.name, fit,
                    lambda payload: model_from_payload(payload, mapping), refresh=refresh)


def window_results(engine: Engine, mapping: ModelMapping, model: ReconstructionModel, start: datetime,
                   end: datetime, *, by_day: bool = False, by_version: bool = False
                   ) -> dict[GroupKey, MultivariateResult]:
    """The window's result per group (one statement); with ``by_version`` also each day's all-versions
    group (version None), added up from its versions. Without grouping the whole window is always present."""
    fit = model.fit
    if fit is None:
        return {WHOLE: model.result(None)} if not by_day and not by_version else {}
    sums = wr.error_sums(engine, mapping, log_rows(mapping, start, end), fit.columns, fit.means, fit.scales,
                         fit.residual_matrix, by_day=by_day, by_version=by_version)
    if by_version:
        days: dict[datetime | None, wr.ErrorSums] = {}
        for (day, _), part in sums.items():
            days[day] = days[day] + part if day in days else part
        sums.update({(day, None): total for day, total in days.items()})
    results = {key: model.result(part) for key, part in sums.items()}
    if not by_day and not by_version:
        results.setdefault(WHOLE, model.result(None))
    return results


def window_result(engine: Engine, mapping: ModelMapping, model: ReconstructionModel, start: datetime,
                  end: datetime) -> MultivariateResult:
    return window_results(engine, mapping, model, start, end)[WHOLE]


def unavailable(reason: str = NOT_COMPUTED) -> MultivariateResult:
    return MultivariateResult(None, None, None, None, reason=reason)
