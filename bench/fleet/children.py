"""What each child process of the fleet benchmark times (a fresh interpreter each: cold means cold).

* ``services`` -- ``services.catalog.fleet.fleet_overview`` fed by the very service calls the fleet page
  makes through ui/backends.py (registry ``list_models``, the warehouse's batched ``fleet_traffic``, the
  tower state's ``fleet_findings`` and ``week_changes``; the per-model ``window_summary`` and
  ``traffic_by_day`` only for a model the batch could not read), uncached: the first call
  in the process (cold: connections opened, DuckDB's first reads) and a second one (the same work again);
  each store's share is timed apart.
* ``page`` -- the fleet page in Streamlit's AppTest: the first run of the page (st.cache_data empty, and
  the process's first imports of the app), the next runs (every cached call warm, as a second visitor
  within the minute of the cache's ttl), then one more after ``st.cache_data.clear()`` (cold caches in a
  running server: a visitor after the ttl).
* ``job`` -- ``services.monitoring.job.run_monitoring`` for every model of the fleet (its first run:
  ``backfill_days`` back), then once more (nothing new to compute: the daily run's floor).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.monitoring.machine import Clock, peak_mib

FLEET_PAGE = "app_pages/fleet.py"


def _settings(folder: Path) -> Any:
    from bench.fleet.seed import environment
    from services.wiring import load_settings

    return load_settings(environment(folder))


def _services(folder: Path) -> dict[str, Any]:
    from services.catalog import fleet
    from services.monitoring import health_chips, week_changes
    from services.stores.warehouse import fleet_traffic, logs
    from services.wiring import Backends
    from ui.windows import complete_days

    settings = _settings(folder)
    stores = Backends.from_settings(settings)
    start, end = complete_days(7)
    spent: dict[str, list[float]] = {"registry": [0.0, 0.0], "warehouse": [0.0, 0.0], "tower": [0.0, 0.0]}

    def timed(store: str, fn: Any) -> Any:
        def call(*args: Any) -> Any:
            clock = Clock()
            try:
                return fn(*args)
            finally:
                wall, cpu = clock.stop()
                spent[store][0] += wall
                spent[store][1] += cpu
        return call

    def overview() -> Any:
        return fleet.fleet_overview(
            settings,
            load_models=timed("registry", lambda: stores.registry.list_models()),
            load_summary=timed("warehouse", lambda m: logs.window_summary(stores.warehouse(), m, start, end)),
            load_daily_requests=timed("warehouse", lambda m: fleet.requests_per_day(
                logs.traffic_by_day(stores.warehouse(), m, start, end), start, 7)),
            load_findings=timed("tower", lambda names: health_chips.fleet_findings(stores.tower(), names)),
            window_start=start,
            load_changes=timed("tower", lambda names: week_changes.week_changes(stores.tower(), names, end)),
            load_traffic=timed("warehouse", lambda mappings: fleet.model_traffic(
                fleet_traffic.fleet_traffic(stores.warehouse(), mappings, start, end), start, 7)),
        )

    out: dict[str, Any] = {}
    for run in ("cold", "again"):
        for value in spent.values():
            value[:] = [0.0, 0.0]
        clock = Clock()
        result = overview()
        wall, cpu = clock.stop()
        out[run] = {"wall_s": wall, "cpu_s": cpu, "rows": len(result.rows),
                    "stores": {k: {"wall_s": v[0], "cpu_s": v[1]} for k, v in spent.items()}}
    out["health"] = sorted({r.health for r in result.rows})
    out["statuses"] = sorted({r.status for r in result.rows})
    stores.close()
    return out


def _page(folder: Path) -> dict[str, Any]:
    from streamlit.testing.v1 import AppTest

    from bench.fleet.seed import environment
    from services.settings import PROJECT_ROOT

    os.environ.update(environment(folder))
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=600)
    at.switch_page(FLEET_PAGE)  # the first run is the fleet page's: nothing cached before it
    out: dict[str, Any] = {}
    for run in ("cold", "warm", "warm_again"):
        clock = Clock()
        at.run()
        wall, cpu = clock.stop()
        if at.exception:
            raise RuntimeError(f"the fleet page raised: {at.exception[0].value}")
        out[run] = {"wall_s": wall, "cpu_s": cpu}
    out["rows"] = len(at.dataframe[0].value)
    # Cold caches in a warm process: what a visitor after the cache's ttl (or the first of a running server
    # after the first) waits for; the process's imports and open connections are already paid.
    import streamlit as st

    st.cache_data.clear()
    clock = Clock()
    at.run()
    wall, cpu = clock.stop()
    if at.exception:
        raise RuntimeError(f"the fleet page raised: {at.exception[0].value}")
    out["cold_cache"] = {"wall_s": wall, "cpu_s": cpu}
    return out


def _job(folder: Path) -> dict[str, Any]:
    from services.monitoring.job import run_monitoring

    settings = _settings(folder)
    out: dict[str, Any] = {}
    for run in ("first", "again"):
        clock = Clock()
        runs = run_monitoring(settings)
        wall, cpu = clock.stop()
        failed = [r.model for r in runs if r.error]
        if failed:
            raise RuntimeError(f"the job failed on {failed[:3]}: {runs[0].error}")
        out[run] = {"wall_s": wall, "cpu_s": cpu, "models": len(runs), "windows": sum(r.windows for r in runs),
                    "results": sum(r.results for r in runs)}
    return out


CHILDREN = {"services": _services, "page": _page, "job": _job}


def child_main(name: str, folder: Path) -> dict[str, Any]:
    result = CHILDREN[name](folder)
    return {**result, "peak_rss_mib": peak_mib()}
