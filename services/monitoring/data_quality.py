"""Data quality per feature and window, against the reference: null share, unseen categories, values
outside the reference's range; each with its verdict under the ``data_quality`` rule (issue 14).

Definitions (the same rows as drift reads, so the numbers agree with the drift table beside them):

* **null share**: rows without a finite value (SQL NULL, NaN, +-inf) ÷ rows, as drift counts them
  (Evidently drops them before testing; ``stats.histogram``). It alerts when it is over the
  reference's null share + ``max_null_increase``.
* **unseen share** (categorical): rows whose category the reference never saw ÷ rows with a category.
  The reference's own is 0 by definition, so it alerts over ``max_unseen_share``.
* **out-of-range share** (numerical): finite values below the reference's finite minimum or above its
  finite maximum ÷ finite values. ±inf are not finite: they are in the null share, not here, so one
  bad value is counted once. The reference's own is 0 by definition: it alerts over
  ``max_out_of_range_share``. Categorical features have no range (the unseen share covers them).

The reference's minimum and maximum are not in its profile (the 1000-quantile edges stop at the
0.1 % quantile, so the fine histogram's tail bins are not "outside the range"), so they are fitted
once per reference (one statement) and kept beside the profile (``monitoring_fitted``, kind
``value_ranges``); a window costs one more statement, per day and version for the job
(``services.stores.warehouse.ranges``). A window with fewer than ``min_rows`` rows is not judged.

Stored per window and feature: ``null_share``, ``unseen_share`` (categorical) and
``out_of_range_share`` (numerical), each with ``threshold``/``alert`` where the rule applies. The
alert rules (``services.monitoring.alerts``) are ``data_quality_nulls``, ``data_quality_unseen`` and
``data_quality_range``, with the feature as subject.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from services.mapping import ModelMapping
from services.monitoring.config import DataQualityRule
from services.monitoring.fitted import kept_fit
from services.monitoring.reference import ReferenceProfile
from services.stores.warehouse import ranges as wr
from services.stores.warehouse.rows import Rows, log_rows, reference_rows
from services.stores.warehouse.sql import WHOLE, GroupKey

KIND = "value_ranges"
FIT_FORMAT = 1
NULL_METRIC, UNSEEN_METRIC, RANGE_METRIC = "null_share", "unseen_share", "out_of_range_share"
# Each check's alert rule (the subject is the feature), as alerts.py and health_chips.py know them.
RULES = {NULL_METRIC: "data_quality_nulls", UNSEEN_METRIC: "data_quality_unseen", RANGE_METRIC: "data_quality_range"}
CHECK_WORDS = {NULL_METRIC: "null share", UNSEEN_METRIC: "unseen-category share", RANGE_METRIC: "out-of-range share"}

Ranges = Mapping[str, tuple[float, float] | None]
"""The reference's finite (min, max) per numerical feature; None when it has no finite value."""


class _DriftLike(Protocol):
    """What a data-quality check reads of a feature's drift result (``results.DriftResult``)."""

    @property
    def column(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def null_share(self) -> float | None: ...
    @property
    def reference_null_share(self) -> float | None: ...
    @property
    def unseen_share(self) -> float | None: ...
    @property
    def current_n(self) -> int: ...


@dataclass(frozen=True)
class QualityResult:
    """One feature's data quality in a window; a ``*_limit`` None is not checked, an ``*_alert`` None
    not judged (rule off, too few rows, nothing to measure)."""

    column: str
    kind: str
    null_share: float | None
    reference_null_share: float | None
    null_limit: float | None
    null_alert: bool | None
    unseen_share: float | None  # categorical only
    unseen_limit: float | None
    unseen_alert: bool | None
    out_of_range_share: float | None  # numerical only
    reference_range: tuple[float, float] | None
    range_limit: float | None
    range_alert: bool | None

    @property
    def alert(self) -> bool | None:
        """True when any check alerts, False when at least one was judged and none alerts."""
        verdicts = [v for v in (self.null_alert, self.unseen_alert, self.range_alert) if v is not None]
        return any(verdicts) if verdicts else None

    def checks(self) -> tuple[tuple[str, float | None, float | None, bool | None], ...]:
        """(metric, value, limit, alert) of the checks that apply to this feature's kind."""
        out = [(NULL_METRIC, self.null_share, self.null_limit, self.null_alert)]
        if self.kind == "categorical":
            out.append((UNSEEN_METRIC, self.unseen_share, self.unseen_limit, self.unseen_alert))
        else:
            out.append((RANGE_METRIC, self.out_of_range_share, self.range_limit, self.range_alert))
        return tuple(out)

    def to_json(self, num: Callable[[Any], Any]) -> dict[str, Any]:
        return {"column": self.column, "null_share": num(self.null_share),
                "reference_null_share": num(self.reference_null_share), "unseen_share": num(self.unseen_share),
                "out_of_range_share": num(self.out_of_range_share), "alert": self.alert}


def _over(value: float | None, limit: float | None, judged: bool) -> bool | None:
    if not judged or value is None or limit is None or not math.isfinite(value):
        return None
    return bool(value > limit)


def column_results(drift: Sequence[_DriftLike], rows: int, rule: DataQualityRule,
                   outside: Mapping[str, int] | None = None, ranges: Ranges | None = None
                   ) -> tuple[QualityResult, ...]:
    """Every feature's data quality from its drift result (null and unseen shares), the window's
    out-of-range counts and the reference ranges (None: not computed for this report). Pure."""
    judged = rule.enabled and rows >= rule.min_rows
    out = []
    for d in drift:
        null_limit = None
        if rule.enabled and rule.max_null_increase is not None and d.reference_null_share is not None:
            null_limit = min(1.0, d.reference_null_share + rule.max_null_increase)
        unseen_limit = rule.max_unseen_share if rule.enabled and d.kind == "categorical" else None
        share, bounds = None, None
        if d.kind == "numerical" and ranges is not None:
            bounds = ranges.get(d.column)
            if bounds is not None and outside is not None and d.current_n > 0:
                share = outside.get(d.column, 0) / d.current_n
        range_limit = rule.max_out_of_range_share if rule.enabled and d.kind == "numerical" else None
        out.append(QualityResult(
            column=d.column, kind=d.kind, null_share=d.null_share, reference_null_share=d.reference_null_share,
            null_limit=null_limit, null_alert=_over(d.null_share, null_limit, judged),
            unseen_share=d.unseen_share if d.kind == "categorical" else None, unseen_limit=unseen_limit,
            unseen_alert=_over(d.unseen_share, unseen_limit, judged),
            out_of_range_share=share, reference_range=bounds, range_limit=range_limit,
            range_alert=_over(share, range_limit, judged)))
    return tuple(out)


def result_rows(drift: Sequence[_DriftLike], quality: Sequence[QualityResult], add: Callable[..., None]) -> None:
    """The stored rows through the report's ``add(metric, value, column=, threshold=, alert=)``: each
    feature's checks (with their verdicts), or its bare null and unseen shares for a report built
    without data quality."""
    by_column = {q.column: q for q in quality}
    for d in drift:
        q = by_column.get(d.column)
        if q is None:
            if d.kind == "categorical":
                add(UNSEEN_METRIC, d.unseen_share, column=d.column)
            add(NULL_METRIC, d.null_share, column=d.column)
            continue
        for metric, value, limit, alert in q.checks():
            if metric == RANGE_METRIC and value is None and q.reference_range is None and limit is None:
                continue
            add(metric, value, column=d.column, threshold=limit, alert=alert)


# --------------------------------------------------------------------------------------------
# The reference's ranges (kept in tower state) and a window's counts outside them (warehouse)
# --------------------------------------------------------------------------------------------
def _reference_of(mapping: ModelMapping, profile: ReferenceProfile) -> Rows:
    log_range = profile.definition.get("log_range")
    if log_range:
        start, end = (datetime.fromisoformat(v) for v in log_range)
        return reference_rows(mapping, start, end)
    return reference_rows(mapping)


def fit_payload(engine: Engine, mapping: ModelMapping, profile: ReferenceProfile) -> dict[str, Any]:
    """The reference's finite min and max per numerical feature (one statement), as kept JSON."""
    found = wr.value_ranges(engine, mapping, _reference_of(mapping, profile), list(mapping.numerical))
    return {"format": FIT_FORMAT, "ranges": {c: None if b is None else [b[0], b[1]] for c, b in found.items()}}


def ranges_from_payload(payload: dict[str, Any], mapping: ModelMapping) -> dict[str, tuple[float, float] | None] | None:
    """The kept ranges, or None when the payload is not what ``fit_payload`` writes for this mapping
    (edited in the tower state, an older format, a feature added): then they are fitted again. Column
    names reach SQL only from the mapping; bounds are finite with min <= max."""
    try:
        if payload.get("format") != FIT_FORMAT or not isinstance(payload.get("ranges"), dict):
            return None
        raw = payload["ranges"]
        if set(raw) != set(mapping.numerical):
            return None
        out: dict[str, tuple[float, float] | None] = {}
        for column in mapping.numerical:
            value = raw[column]
            if value is None:
                out[column] = None
                continue
            lo, hi = float(value[0]), float(value[1])
            if len(value) != 2 or not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                return None
            out[column] = (lo, hi)
        return out
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def reference_ranges(tower: Engine, engine: Engine, mapping: ModelMapping, profile: ReferenceProfile, *,
                     refresh: bool = False) -> dict[str, tuple[float, float] | None]:
    """The reference's ranges, fitted and kept the first time (``refresh``: fitted again)."""
    def fit() -> dict[str, Any]:
        return fit_payload(engine, mapping, profile)

    return kept_fit(tower, profile.reference_id, KIND, mapping.name, fit,
                    lambda payload: ranges_from_payload(payload, mapping), refresh=refresh)


def window_outside(engine: Engine, mapping: ModelMapping, ranges: Ranges, start: datetime, end: datetime, *,
                   by_day: bool = False, by_version: bool = False) -> dict[GroupKey, dict[str, int]]:
    """Finite values outside the reference range per feature and group (one statement); with
    ``by_version`` also each day's all-versions group (version None), added up from its versions."""
    bounds = {c: b for c, b in ranges.items() if b is not None}
    counts = wr.outside_counts(engine, mapping, log_rows(mapping, start, end), bounds, by_day=by_day,
                               by_version=by_version)
    if by_version:
        days: dict[datetime | None, dict[str, int]] = {}
        for (day, _), part in counts.items():
            total = days.setdefault(day, dict.fromkeys(bounds, 0))
            for column, n in part.items():
                total[column] += n
        counts.update({(day, None): total for day, total in days.items()})
    if not by_day and not by_version:
        counts.setdefault(WHOLE, dict.fromkeys(bounds, 0))
    return counts
