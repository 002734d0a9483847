"""What bounds the histogram push-down: its parts, alternatives and the pure-Python statistics."""

# ruff: noqa: S608 -- every statement here is built from this package's constant names and numbers
from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.monitoring.data import LOG_TABLE, WINDOW, bench_mapping
from bench.monitoring.machine import median_time
from bench.monitoring.stores import backends, open_warehouse


def _operators(conn: Any, statement: str, parameters: Any) -> dict[str, int]:
    """How many operators of each kind (scans, aggregates, unions...) DuckDB's physical plan holds."""
    import re

    plan = "\n".join(str(v) for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters).fetchall()
                     for v in row)
    found: dict[str, int] = {}
    for name in re.findall(r"[╭┌]─+ ([A-Za-z_ ]+?) ─", plan):
        found[name] = found.get(name, 0) + 1
    return found


def run_probe(db: Path, tower: str, repeat: int) -> dict[str, Any]:
    """What bounds the histogram push-down: its parts, alternatives, and the pure-Python statistics.

    Every query runs ``repeat`` times in this process (DuckDB's buffer pool warm after the first);
    the median is kept.
    """
    import numpy as np
    import sqlalchemy as sa

    from services.monitoring import reference
    from services.monitoring import report as report_module
    from services.stats.two_sample import ks_pvalue
    from services.stores.warehouse import binning
    from services.stores.warehouse.histograms import numeric_histograms
    from services.stores.warehouse.rows import log_rows, rows_source
    from services.stores.warehouse.sql import WHOLE, finite_value

    mapping = bench_mapping()
    stores = backends(db, tower, create_schema=False)
    engine = open_warehouse(stores)

    profile = reference.stored_profile(stores.tower(),
                                       reference.reference_id(reference.reference_definition(mapping)))
    columns = [c for c, r in profile.numerical.items() if not r.value_counted]
    edges = {c: profile.numerical[c].edges for c in columns}
    shifts = {c: profile.numerical[c].histogram.shift for c in columns}
    rows = log_rows(mapping, *WINDOW)
    window = tuple(WINDOW)
    out: dict[str, Any] = {"columns": len(columns), "rows": None, "seconds": {}, "cpu": {}, "operators": {}}

    def measure(key: str, fn: Any) -> None:
        out["seconds"][key], out["cpu"][key] = median_time(fn, repeat)

    def x_of(c: str) -> str:
        return f"(SELECT CASE WHEN isfinite({c}::DOUBLE) THEN {c}::DOUBLE END AS x FROM {LOG_TABLE} " \
               "WHERE ts >= $1 AND ts < $2)"

    def linear_grid(e: np.ndarray) -> tuple[float, float, list[int]]:
        width = (e[-1] - e[0]) / binning.GRID_CELLS if e.size > 1 and e[-1] > e[0] else 1.0
        lower = np.searchsorted(e, e[0] + width * np.arange(binning.GRID_CELLS), side="left")
        return float(e[0]), float(1 / width), [int(v) for v in lower]

    def cell(c: str) -> str:
        origin, scale, _ = linear_grid(edges[c])
        return f"least(greatest(floor((x - ({origin!r})) * {scale!r}), 0.0), {binning.GRID_CELLS - 1}.0)::BIGINT"

    def union(parts: list[str]) -> str:
        return " UNION ALL ".join(parts)

    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    with engine.connect() as conn:
        out["rows"] = conn.exec_driver_sql(f"SELECT count(*) FROM {LOG_TABLE} WHERE ts >= $1 AND ts < $2",
                                           window).scalar()

        def sql(text: str, parameters: Sequence[Any] = window) -> Any:
            return lambda: conn.exec_driver_sql(text, tuple(parameters)).fetchall()

        sums = ", ".join(f"sum({c})" for c in columns)
        measure("scan", sql(f"SELECT count(*), {sums} FROM {LOG_TABLE} WHERE ts >= $1 AND ts < $2"))
        measure("branches", sql(union(
            [f"SELECT {i} AS f, count(x), sum(x) FROM {x_of(c)}" for i, c in enumerate(columns)])))
        measure("arithmetic", sql(union(
            [f"SELECT {i} AS f, sum({cell(c)}) FROM {x_of(c)}" for i, c in enumerate(columns)])))
        grids = [linear_grid(edges[c])[2] for c in columns]
        measure("lookup", sql(union(
            [f"SELECT {i} AS f, sum(${i + 3}[{cell(c)} + 1]) FROM {x_of(c)}" for i, c in enumerate(columns)]),
            [*window, *grids]))
        plans = {i: binning.grid_plan(edges[c]) for i, c in enumerate(columns)}
        plans = {i: plan for i, plan in plans.items() if plan is not None}
        width = binning.grid_columns(plans)
        bare = []
        for i, c in enumerate(columns):
            x = finite_value("duckdb", c)
            source, keys = rows_source(mapping, rows, "duckdb", False, False, [c], {"x": x})
            grid = (i, plans[i], width) if i in plans else None
            binned = binning.binned_values("duckdb", source, keys, edges[c], f"edges_{i}", grid=grid)
            bare.append(sa.select(sa.literal(i).label("f"), sa.func.sum(binned.c.bin)))
        statement = sa.union_all(*bare)
        grid_edges = {i: edges[columns[i]] for i in plans}
        with binning.duckdb_grids(conn, plans, grid_edges):
            measure("binning", lambda: conn.execute(statement).fetchall())

        def square(c: str) -> str:
            return f"(x - ({shifts[c]!r})) * (x - ({shifts[c]!r}))"
        measure("equi_width", sql(union(
            [f"SELECT {i} AS f, b, count(*), sum(x), sum({square(c)}) FROM (SELECT x, {cell(c)} AS b FROM {x_of(c)}) "
             "GROUP BY b" for i, c in enumerate(columns)])))
        measure("histogram_aggregate", sql(union(
            [f"SELECT {i} AS f, histogram(x, ${i + 3}) FROM {x_of(c)}" for i, c in enumerate(columns)]),
            [*window, *[[float(v) for v in edges[c]] for c in columns]]))
        asof = union([
            f"SELECT {i} AS f, CASE WHEN w.x IS NULL THEN NULL ELSE coalesce(e.bin, 0) END AS bin, count(*) AS n, "
            f"sum(w.x) AS s, sum((w.x - ({shifts[c]!r})) * (w.x - ({shifts[c]!r}))) AS ss FROM {x_of(c)} w "
            f"ASOF LEFT JOIN (SELECT unnest(${i + 3}) AS edge, generate_subscripts(${i + 3}, 1) AS bin) e "
            "ON w.x >= e.edge GROUP BY ALL" for i, c in enumerate(columns)])
        asof_parameters = [*window, *[[float(v) for v in edges[c]] for c in columns]]
        measure("asof_join", sql(asof, asof_parameters))

    def ours() -> Any:
        return numeric_histograms(engine, mapping, rows, edges, shifts=shifts)
    measure("numeric_histograms", ours)
    empty = log_rows(mapping, datetime(2000, 1, 1), datetime(2000, 1, 8))  # no rows: the fixed cost alone
    measure("numeric_histograms_empty",
        lambda: numeric_histograms(engine, mapping, empty, edges, shifts=shifts))
    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute", capture)
    numeric_histograms(engine, mapping, empty, edges, shifts=shifts)
    event.remove(engine, "before_cursor_execute", capture)
    (text, parameters), = captured
    captured.clear()
    with engine.connect() as conn, binning.duckdb_grids(conn, plans, grid_edges):
        # the same statement sent as text: DuckDB's share of the fixed cost
        measure("numeric_histograms_empty_driver",
            lambda: conn.exec_driver_sql(text, parameters).fetchall())
    ours_result = ours()[WHOLE]
    # the ten-step binary search over the edges, without the grid
    measure("no_grid", lambda: numeric_histograms(engine, mapping, rows, edges, shifts=shifts, grid=False))

    with engine.connect() as conn:  # the ASOF alternative gives the same bins as ours
        got: dict[int, dict[Any, int]] = {}
        for f, b, n, _, _ in conn.exec_driver_sql(asof, tuple(asof_parameters)).fetchall():
            got.setdefault(f, {})[b] = n
        same = True
        for i, c in enumerate(columns):
            counts = np.zeros(edges[c].size + 1, dtype=np.int64)
            for b, n in got.get(i, {}).items():
                if b is not None:
                    counts[b] += n
            same &= bool(np.array_equal(counts, ours_result[c].counts)
                         and got.get(i, {}).get(None, 0) == ours_result[c].nulls)
        out["asof_same_bins"] = same

    # Which statements one window report sends, and their operators.
    event.listen(engine, "before_cursor_execute", capture)
    aggregates = report_module.fetch_aggregates(engine, mapping, profile, *WINDOW)[WHOLE]
    event.remove(engine, "before_cursor_execute", capture)
    with engine.connect() as conn:
        out["operators"] = [_operators(conn, s, p) for s, p in captured]

    # The pure-Python side: build_report, and what scipy's exact KS p-value would cost in it (the report
    # computes it only where KS is the verdict, i.e. below 1000 reference rows).
    def build() -> Any:
        return report_module.build_report(mapping, profile, aggregates, start=WINDOW[0], end=WINDOW[1])
    measure("build_report", build)
    ks_seconds = {}
    for column in columns:
        ref_sample, cur_sample = profile.numerical[column].histogram, aggregates.numerical[column]
        started = time.perf_counter()
        ks_pvalue(ref_sample, cur_sample)
        ks_seconds[column] = time.perf_counter() - started
    out["ks_pvalue_s"] = ks_seconds
    return out
