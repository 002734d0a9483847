"""Which rows an aggregate reads: the log in a window, or the model's reference.

A :class:`Rows` names a table and optionally a time range: the log in a window (:func:`log_rows`)
or the model's reference (:func:`reference_rows`: its own table, or a time range of the log).
:func:`rows_source` turns it into the subquery the aggregates group, by UTC day and/or version in
the same statement (``by_day``/``by_version``), so a 35-day backfill costs the same few round
trips as one window. Windows are half-open, ``[start, end)``, in naive UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.errors import ConfigError
from services.mapping import ModelMapping
from services.segments import Segment
from services.stores.warehouse.sql import naive_utc, split_table_name, utc_day


@dataclass(frozen=True)
class Rows:
    """The rows an aggregate reads: a table, and a time range of it when ``start``/``end`` are set.

    ``is_log`` tells whether the table is the model's prediction log (it then has the mapped
    timestamp, latency and status columns); a reference table may hold only features, predictions
    and labels.
    """

    table: str
    is_log: bool
    start: datetime | None = None
    end: datetime | None = None
    segment: Segment | None = None  # only this segment's rows
    # Only the rows of one snapshot of a table (column, value): a registry reference's training data.
    # The column is a validated identifier, the value reaches SQL as a bound parameter.
    snapshot: tuple[str, str] | None = None

    @property
    def description(self) -> str:
        where = "" if self.segment is None else f", segment {self.segment.describe()}"
        if self.snapshot is not None:
            where = f" where {self.snapshot[0]} = {self.snapshot[1]!r}{where}"
        if self.start is None:
            return f"table {self.table}{where}"
        return f"{self.table} from {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M}{where}"


def _window(start: datetime, end: datetime, what: str) -> tuple[datetime, datetime]:
    start, end = naive_utc(start), naive_utc(end)
    if start >= end:
        raise ConfigError(f"The {what} starts at {start:%Y-%m-%d %H:%M:%S} but ends at {end:%Y-%m-%d %H:%M:%S}; "
                          "its start must be before its end.")
    return start, end


def log_rows(mapping: ModelMapping, start: datetime, end: datetime) -> Rows:
    """The prediction log of ``mapping`` in ``[start, end)``; ConfigError unless start < end."""
    start, end = _window(start, end, "window")
    return Rows(mapping.table, True, start, end, mapping.segment)


def reference_rows(mapping: ModelMapping, start: datetime | None = None, end: datetime | None = None) -> Rows:
    """The reference of ``mapping``: ``[start, end)`` of the log when given, else its configured reference.

    The configured reference is its own table (``reference.table``) or a time range of the log
    (``reference.start``/``reference.end``). ConfigError when there is none or a range is invalid.
    """
    if start is not None or end is not None:
        if start is None or end is None:
            raise ConfigError("A reference range needs both a start and an end.")
        start, end = _window(start, end, "reference range")
        return Rows(mapping.table, True, start, end, mapping.segment)
    ref = mapping.reference
    if ref.table:
        snapshot = (ref.snapshot_column, ref.snapshot or "") if ref.snapshot_column else None
        return Rows(ref.table, False, segment=mapping.segment, snapshot=snapshot)
    if ref.start and ref.end:
        try:
            parsed = datetime.fromisoformat(ref.start), datetime.fromisoformat(ref.end)
        except ValueError as exc:
            raise ConfigError(f"models.{mapping.name}.reference: start and end must be ISO dates or times.") from exc
        start, end = _window(*parsed, f"reference range of models.{mapping.name}")
        return Rows(mapping.table, True, start, end, mapping.segment)
    raise ConfigError(f"Model '{mapping.name}' has no reference configured.",
                      f"Set models.{mapping.name}.reference (a table, or start and end of the log) in tower.yaml, "
                      "or give a reference range.")


def log_timestamp(mapping: ModelMapping) -> Any:
    """The log's mapped timestamp column."""
    return sa.column(mapping.column("timestamp"), sa.DateTime())


def segment_filter(segment: Segment | None) -> list[Any]:
    """The WHERE conditions of a segment, its values bound as parameters (none for the whole population)."""
    if segment is None:
        return []
    column: sa.ColumnClause[Any] = sa.column(segment.column)
    if segment.values is not None:
        return [column.in_(list(segment.values))]
    lower = [] if segment.lo is None else [column >= segment.lo]
    return lower + ([] if segment.hi is None else [column < segment.hi])


def row_filter(mapping: ModelMapping, rows: Rows) -> list[Any]:
    """The WHERE conditions of the rows: their time range (none for a whole table), snapshot and segment."""
    where = segment_filter(rows.segment)
    if rows.snapshot is not None:
        where = [sa.column(rows.snapshot[0]) == sa.bindparam(None, rows.snapshot[1], type_=sa.String()), *where]
    if rows.start is None or rows.end is None:
        return where
    ts = log_timestamp(mapping)
    return [ts >= rows.start, ts < rows.end, *where]


def rows_source(mapping: ModelMapping, rows: Rows, dialect: str, by_day: bool, by_version: bool,
                columns: Sequence[str], exprs: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """A subquery of ``rows`` with ``day``/``version`` (as asked) and the labelled ``exprs``.

    ``columns`` are the physical columns the expressions read. Outer queries group by the
    subquery's columns, so no expression (nor its bound parameters) is repeated in GROUP BY.
    """
    keys: list[Any] = []
    needed = list(columns) + ([rows.segment.column] if rows.segment is not None else [])
    if rows.snapshot is not None:
        needed.append(rows.snapshot[0])
    if rows.start is not None or by_day:
        needed.append(mapping.column("timestamp"))
    if by_day:
        if not rows.is_log:
            raise ValueError("only the prediction log can be grouped by day")
        keys.append(utc_day(dialect, log_timestamp(mapping)).label("day"))
    if by_version:
        needed.append(mapping.column("version"))
        keys.append(sa.column(mapping.column("version")).label("version"))
    schema, name = split_table_name(rows.table)
    table = sa.table(name, *(sa.column(c) for c in dict.fromkeys(needed)), schema=schema)
    query = (sa.select(*keys, *(expr.label(label) for label, expr in exprs.items()))
             .select_from(table).where(*row_filter(mapping, rows)))
    return query.subquery(), [k.name for k in keys]
