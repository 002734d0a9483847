"""The whole fleet's traffic in a few statements: each model's window summary and requests per day.

The fleet page needs, for every mapped model, what :func:`logs.window_summary` and the day sums of
:func:`logs.traffic_by_day` give for one. Asked per model that is two statements a model (400 for a
fleet of 200); here the mapped tables' window rows are put together with UNION ALL, tagged by the
model's position (an inline integer, so no name reaches SQL and no untyped parameter sits in a select
list), and grouped by it: two statements per chunk of models (three on dialects without a quantile
aggregate), with the same numbers as the per-model reads.

One broken log table (missing, a column renamed) fails the whole statement; the chunk is then split
in halves until the statements that fail hold a single model, so a broken table costs its own model
(reported in ``failed`` with the per-model read's MappingError) and a few extra statements, never the
others' numbers. A warehouse that cannot answer at all (WarehouseUnavailable) fails the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.errors import MappingError
from services.mapping import ModelMapping
from services.stores.warehouse.engine import connection
from services.stores.warehouse.logs import (
    QUANTILE_COLUMNS,
    WindowSummary,
    labelled_quantiles,
    native_quantiles,
    ranked_quantiles,
    summary_from,
    unpack_quantiles,
    window_rows,
)
from services.stores.warehouse.sql import naive_utc_or_none, union_all

CHUNK = 64  # models per statement: bounds the statement's size (and SQLite's bound parameters) on big fleets


@dataclass(frozen=True)
class FleetTraffic:
    """Per model name: its window summary and its requests per UTC day (days without traffic left out)."""

    summaries: dict[str, WindowSummary] = field(default_factory=dict)
    requests_by_day: dict[str, dict[datetime, int]] = field(default_factory=dict)
    failed: dict[str, MappingError] = field(default_factory=dict)  # models whose own log could not be read


def fleet_traffic(engine: Engine, mappings: Sequence[ModelMapping], start: datetime, end: datetime, *,
                  chunk: int = CHUNK) -> FleetTraffic:
    """Window summary and requests per day of every mapping over ``[start, end)``, batched."""
    out = FleetTraffic()
    for at in range(0, len(mappings), chunk):
        _read_or_split(engine, list(mappings[at:at + chunk]), start, end, out)
    return out


def _read_or_split(engine: Engine, group: list[ModelMapping], start: datetime, end: datetime,
                   out: FleetTraffic) -> None:
    try:
        summaries, by_day = _read(engine, group, start, end)
    except MappingError as exc:
        if len(group) == 1:
            out.failed[group[0].name] = exc
            return
        half = len(group) // 2
        _read_or_split(engine, group[:half], start, end, out)
        _read_or_split(engine, group[half:], start, end, out)
        return
    out.summaries.update(summaries)
    out.requests_by_day.update(by_day)


def _tagged_rows(engine: Engine, group: Sequence[ModelMapping], start: datetime, end: datetime) -> Any:
    """Every model's window rows (UTC day, ts, latency, is_error), tagged with the model's position."""
    dialect = engine.dialect.name
    selects = []
    for index, mapping in enumerate(group):
        rows = window_rows(mapping, dialect, start, end, ("day",))
        tag = sa.literal_column(str(index), sa.Integer()).label("model")
        selects.append(sa.select(tag, *rows.c))
    return union_all(selects).subquery("fleet")


def _read(engine: Engine, group: Sequence[ModelMapping], start: datetime, end: datetime
          ) -> tuple[dict[str, WindowSummary], dict[str, dict[datetime, int]]]:
    dialect = engine.dialect.name
    # Built once for both statements: building 200 selects costs more Python than DuckDB spends running them.
    whole = _tagged_rows(engine, group, start, end)
    columns: list[Any] = [whole.c.model, sa.func.count().label("requests"),
                          sa.func.sum(whole.c.is_error).label("errors"),
                          sa.func.max(whole.c.ts, type_=sa.types.NullType()).label("last_seen")]
    native = native_quantiles(dialect, whole.c.latency)
    if native is not None:
        columns += labelled_quantiles(native)
    per_day = sa.select(whole.c.model, whole.c.day, sa.func.count().label("requests")).group_by(
        whole.c.model, whole.c.day)
    # The first mapping names the table in a MappingError: only read when the group is that one model.
    with connection(engine, group[0]) as conn:
        records = {int(row["model"]): unpack_quantiles(dict(row)) for row in conn.execute(
            sa.select(*columns).group_by(whole.c.model)).mappings()}
        if native is None:
            ranked = ranked_quantiles(conn, whole, ("model",))
            for (index,), found in ranked.items():
                records[int(index)].update(zip(QUANTILE_COLUMNS, found, strict=True))
        daily = list(conn.execute(per_day).mappings())
    summaries = {m.name: summary_from(records.get(i)) for i, m in enumerate(group)}
    by_day: dict[str, dict[datetime, int]] = {m.name: {} for m in group}
    for row in daily:
        day = naive_utc_or_none(row["day"])
        if day is not None:
            by_day[group[int(row["model"])].name][day] = int(row["requests"])
    return summaries, by_day
