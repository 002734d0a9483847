"""Which reference a drift comparison uses, as dates and as words: pure, no store is read.

A reference compared with a window it overlaps compares the window partly with itself, so every
feature drifts less than it does (the drift explorer's old default, the last week of a two-week
window, read "stable" under a red heat map). The explorer therefore refuses an overlapping log
period and proposes the period just before the window. Periods are half-open ``[start, end)`` in
naive UTC, like the windows of the monitoring job; a period of whole days is shown by its first
and last day.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pandas as pd

from services.mapping import ModelMapping
from services.monitoring.reference import reference_definition, reference_id
from services.stores.warehouse.rows import reference_rows

Period = tuple[datetime, datetime]
"""``[start, end)`` in naive UTC."""
ReferenceChoice = Period | tuple[None, None]
"""What a comparison is against, as the monitoring services take it: a period of the log, or
``(None, None)`` for the model's configured reference."""


def default_reference_period(window: Period) -> Period:
    """The period of the window's length that ends where the window starts."""
    start, end = window
    return start - (end - start), start


def _whole_days(period: Period) -> bool:
    return all(moment.time() == time() for moment in period)


def period_text(period: Period) -> str:
    """``2026-11-19 – 2026-12-02`` for whole days (the end is exclusive, so its day is not shown),
    else both ends with their times."""
    start, end = period
    if _whole_days(period) and end > start:
        return f"{start:%Y-%m-%d} – {end - timedelta(days=1):%Y-%m-%d}"
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M}"


def overlaps(a: Period, b: Period) -> bool:
    """Whether two half-open periods share any time (one ending where the other starts does not)."""
    return a[0] < b[1] and b[0] < a[1]


def reference_overlap(reference: Period, window: Period) -> str | None:
    """Why ``reference`` cannot serve as the reference of ``window`` (they share time), or None."""
    if not overlaps(reference, window):
        return None
    before = default_reference_period(window)
    return (f"The reference period {period_text(reference)} overlaps the window {period_text(window)}: the window "
            f"would be compared partly with itself, so drift would read smaller than it is. Pick a period that ends "
            f"before the window starts (the period just before it is {period_text(before)}) or starts after it ends.")


def configured_log_period(mapping: ModelMapping) -> Period | None:
    """The configured reference when it is a period of the log (``reference: {start, end}``), else None.

    ConfigError when the model has no reference or its period is invalid, as for the job."""
    rows = reference_rows(mapping)
    if rows.start is None or rows.end is None:
        return None
    return rows.start, rows.end


def configured_reference_text(mapping: ModelMapping) -> str:
    """The model's configured reference in words: a version's training data, its table, or its period of the log."""
    link = dict(mapping.reference.registry)
    if link:
        return (f"the training data of version {link.get('version')} ({link.get('dataset')}, digest "
                f"{link.get('digest')})")
    if mapping.reference.table:
        return f"the reference table {mapping.reference.table}"
    period = configured_log_period(mapping)
    return f"the configured log period {period_text(period)}" if period else "no configured reference"


def reference_text(mapping: ModelMapping, choice: ReferenceChoice) -> str:
    """The reference a comparison uses: a chosen period of the log, or the configured one."""
    start, end = choice
    if start is None or end is None:
        return configured_reference_text(mapping)
    period = start, end
    return f"the log period {period_text(period)} (UTC days)" if _whole_days(period) else \
        f"the log period {period_text(period)} (UTC)"


def days_on_other_reference(heatmap: pd.DataFrame, mapping: ModelMapping) -> int:
    """Days of a stored drift heat map (columns day, reference_id) that `monitor run` computed against
    another reference definition than the configured one (the mapping changed since; the next run
    recomputes the days of its backfill)."""
    if heatmap.empty:
        return 0
    current = reference_id(reference_definition(mapping))
    return int(heatmap.loc[heatmap["reference_id"] != current, "day"].nunique())
