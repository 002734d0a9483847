"""What each child process of the scale benchmark times, on bench/monitoring's generated log and reference.

* ``profile`` -- the cold reference profile: ``compute_profile`` of the benchmark model's reference
  table (edges from a sample above ``reference.exact_edges_max_rows``), then kept in the tower state
  (keeping it is not timed) so that ``warm`` finds it;
* ``warm`` -- bench/monitoring's ``ours_warm``: the whole window report (drift, fairness, latency,
  performance) of the last 7 days with the kept profile;
* ``backfill`` -- the monitoring job's first run for the model over every day of the log
  (``run_model`` since the first day; its own tower state, so nothing is kept but the profile, which
  is copied in first: the reference fits of PCA, CBPE and data quality are computed as a first run does);
* ``keep`` -- the monitoring job over the window's 7 days only, in a tower state of its own (``-kept.db``,
  the profile copied in first), which keeps those days' aggregates (issue 16, services/monitoring/kept_days.py);
* ``warm_kept`` -- ``warm`` against that tower state: the window report summed from the 7 kept days, its
  latency, fairness and performance queried.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.monitoring.data import WINDOW
from bench.monitoring.machine import Clock, peak_mib


def _profile(db: Path, tower: str) -> dict[str, Any]:
    from bench.monitoring.data import bench_mapping
    from bench.monitoring.stores import backends, open_warehouse
    from services.monitoring import reference

    stores = backends(db, tower)
    engine = open_warehouse(stores)
    pieces: dict[str, dict[str, float]] = {}

    def timed(name: str) -> None:  # each statement family of compute_profile: its time and the peak after it
        inner = getattr(reference, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            clock = Clock()
            try:
                return inner(*args, **kwargs)
            finally:
                wall, cpu = clock.stop()
                piece = pieces.setdefault(name, {"wall_s": 0.0, "cpu_s": 0.0})
                piece["wall_s"] += wall
                piece["cpu_s"] += cpu
                piece["peak_after_mib"] = peak_mib()
        setattr(reference, name, wrapper)

    for name in ("column_profiles", "numeric_histograms", "value_counts", "classification_counts"):
        timed(name)
    clock = Clock()
    profile = reference.compute_profile(engine, bench_mapping())
    wall, cpu = clock.stop()
    peak = peak_mib()
    reference.save_profile(stores.tower(), profile)
    stores.close()
    sampled = sum(1 for ref in profile.numerical.values() if ref.histogram is not None)
    return {"profile_s": wall, "cpu": {"profile_s": cpu}, "rows": profile.rows, "histogrammed": sampled,
            "pieces": pieces, "peak_rss_mib": peak}


def _warm(db: Path, tower: str) -> dict[str, Any]:
    from bench.monitoring.contenders import ours

    return {**ours(db, tower, cold=False), "peak_rss_mib": peak_mib()}


def kept_tower(tower: str) -> str:
    """The tower state of the ``keep`` and ``warm_kept`` children (beside the profile's)."""
    return tower.replace(".db", "-kept.db")


def _warm_kept(db: Path, tower: str) -> dict[str, Any]:
    from bench.monitoring.contenders import ours

    return {**ours(db, kept_tower(tower), cold=False, kept=True), "peak_rss_mib": peak_mib()}


def _keep(db: Path, tower: str) -> dict[str, Any]:
    return _backfill(db, tower, own=kept_tower(tower), first=WINDOW[0], days=(WINDOW[1] - WINDOW[0]).days)


def _backfill(db: Path, tower: str, *, own: str | None = None, first: datetime | None = None,
              days: int | None = None) -> dict[str, Any]:
    from bench.monitoring.data import DAY0, DAYS, bench_mapping
    from bench.monitoring.stores import backends, open_warehouse, settings
    from services.monitoring import reference
    from services.monitoring.config import monitoring_config
    from services.monitoring.job import run_model

    kept = backends(db, tower, create_schema=False)
    mapping = bench_mapping()
    profile = reference.stored_profile(kept.tower(), reference.reference_id(reference.reference_definition(mapping)))
    kept.close()
    if profile is None:
        raise RuntimeError("the reference profile is not kept: run the profile child first")
    own = own or tower.replace(".db", "-backfill.db")
    first, days = first or DAY0, days or DAYS
    Path(own.removeprefix("sqlite:///")).unlink(missing_ok=True)
    stores = backends(db, own)
    engine = open_warehouse(stores)
    reference.save_profile(stores.tower(), profile)
    clock = Clock()
    run = run_model(engine, stores.tower(), mapping, monitoring_config(settings(db, own)), since=first.date(),
                    until=(first + timedelta(days=days - 1)).date())
    wall, cpu = clock.stop()
    stores.close()
    return {"backfill_s": wall, "cpu": {"backfill_s": cpu}, "windows": run.windows, "results": run.results,
            "peak_rss_mib": peak_mib()}


CHILDREN = {"profile": _profile, "warm": _warm, "backfill": _backfill, "keep": _keep, "warm_kept": _warm_kept}


def child_main(name: str, db: Path, tower: str) -> dict[str, Any]:
    return CHILDREN[name](db, tower)
