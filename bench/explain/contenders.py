"""What each child process times: the base report, its segments, CBPE and PCA drift (ours), and NannyML's."""

# ruff: noqa: S608 -- every statement here is built from bench/monitoring's constant names
from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.explain.data import CBPE_METRICS, explain_mapping
from bench.monitoring.data import LOG_TABLE, NUMERICAL, REFERENCE_TABLE, WINDOW
from bench.monitoring.machine import Clock, peak_mib
from bench.monitoring.stores import backends, open_warehouse


class Timer:
    """Wall-clock and CPU seconds of named steps; ``wrap`` times every call of a module's function."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def add(self, name: str, seconds: tuple[float, float]) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + seconds[0]
        self.cpu[name] = self.cpu.get(name, 0.0) + seconds[1]

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        clock = Clock()
        try:
            return fn()
        finally:
            self.add(name, clock.stop())

    def wrap(self, module: Any, function: str, name: str) -> None:
        inner = getattr(module, function)
        self.add(name, (0.0, 0.0))

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return self.run(name, lambda: inner(*args, **kwargs))
        setattr(module, function, wrapper)

    def figures(self) -> dict[str, Any]:
        return {**self.wall, "cpu": dict(self.cpu)}


def _stores(db: Path, tower: str) -> tuple[Any, Any]:
    stores = backends(db, tower, create_schema=False)
    return open_warehouse(stores), stores.tower()


def _kept_profile(tower_engine: Any, mapping: Any) -> Any:
    """The reference profile the parent kept for this population (its load is timed, as the app's)."""
    from services.monitoring import reference

    profile = reference.stored_profile(tower_engine, reference.reference_id(reference.reference_definition(mapping)))
    if profile is None:
        raise RuntimeError("the reference profile is not kept: run the parent, which keeps it first")
    return profile


def _base(db: Path, tower: str) -> dict[str, Any]:
    """The whole population's window report as today (drift, fairness, latency, performance), profile kept."""
    from services.monitoring.report import window_report

    mapping = explain_mapping()
    engine, tower_engine = _stores(db, tower)
    t = Timer()
    profile = t.run("profile_s", lambda: _kept_profile(tower_engine, mapping))
    report = t.run("window_s", lambda: window_report(engine, mapping, profile, *WINDOW))
    t.add("report_s", (t.wall["profile_s"] + t.wall["window_s"], t.cpu["profile_s"] + t.cpu["window_s"]))
    return {**t.figures(), "rows_current": report.rows_current}


def _segments(db: Path, tower: str) -> dict[str, Any]:
    """The same report for each declared segment: its kept profile loaded, its window computed."""
    from services.monitoring.report import window_report

    mapping = explain_mapping()
    engine, tower_engine = _stores(db, tower)
    t, rows = Timer(), {}

    def one(population: Any) -> Any:
        return window_report(engine, population, _kept_profile(tower_engine, population), *WINDOW)
    for segment in mapping.segments:
        population = mapping.for_segment(segment.name)
        report = t.run(f"segment.{segment.name}", partial(one, population))
        rows[segment.name] = report.rows_current
    wall, cpu = t.figures(), t.cpu
    return {"segments_s": sum(wall[k] for k in t.wall), "cpu": {"segments_s": sum(cpu.values())},
            "per_segment_s": {k.split(".", 1)[1]: v for k, v in t.wall.items()}, "segment_rows": rows}


def _cbpe(db: Path, tower: str) -> dict[str, Any]:
    """CBPE: the calibration fitted on the reference (and kept), then the report with the window's estimate.

    The window's cost is the one statement the estimate adds (``calibrated_cells``) and the estimate
    from its cells (``estimated_result``), timed inside ``window_report``.
    """
    from services.monitoring import estimated_performance
    from services.monitoring.report import window_report
    from services.stores.warehouse import calibrated

    mapping = explain_mapping()
    engine, tower_engine = _stores(db, tower)
    t = Timer()
    profile = _kept_profile(tower_engine, mapping)
    calibration = t.run("fit_s", lambda: estimated_performance.calibration_for(tower_engine, engine, mapping,
                                                                               profile, refresh=True))
    t.wrap(calibrated, "calibrated_cells", "cells_s")
    t.wrap(estimated_performance, "estimated_result", "estimate_s")
    report = t.run("report_with_s", lambda: window_report(engine, mapping, profile, *WINDOW,
                                                           calibration=calibration))
    t.add("window_s", (t.wall["cells_s"] + t.wall["estimate_s"], t.cpu["cells_s"] + t.cpu["estimate_s"]))
    t.add("total_s", (t.wall["fit_s"] + t.wall["window_s"], t.cpu["fit_s"] + t.cpu["window_s"]))
    estimated = report.estimated
    return {**t.figures(), "rows": estimated.rows, "excluded": estimated.excluded,
            "estimate": {m: estimated.metrics[m].value for m in CBPE_METRICS},
            "breakpoints": int(calibration.x.size) if calibration is not None else None}


def _pca(db: Path, tower: str) -> dict[str, Any]:
    """PCA reconstruction drift: the PCA and its band fitted on the reference (and kept), then the report
    with the window's value (one statement, ``multivariate.window_result``, timed inside ``window_report``)."""
    from services.monitoring import multivariate
    from services.monitoring.report import window_report

    mapping = explain_mapping()
    engine, tower_engine = _stores(db, tower)
    t = Timer()
    profile = _kept_profile(tower_engine, mapping)
    model = t.run("fit_s", lambda: multivariate.reconstruction_model(tower_engine, engine, mapping, profile,
                                                                      refresh=True))
    t.wrap(multivariate, "window_result", "window_s")
    report = t.run("report_with_s", lambda: window_report(engine, mapping, profile, *WINDOW, pca=model))
    t.add("total_s", (t.wall["fit_s"] + t.wall["window_s"], t.cpu["fit_s"] + t.cpu["window_s"]))
    result = report.multivariate
    band = model.band
    return {**t.figures(), "value": result.value, "upper": result.upper, "lower": result.lower,
            "drifted": result.drifted, "rows": result.rows,
            "components": None if model.fit is None else int(model.fit.components.shape[0]),
            "chunks": None if band is None else band.chunks, "reason": result.reason}


def _frames(db: Path, columns: str, window_filter: str) -> tuple[Any, Any]:
    """The reference and the window as pandas frames, in row order (NannyML chunks by position)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        reference = con.execute(f"SELECT {columns} FROM {REFERENCE_TABLE} ORDER BY request_id").df()
        window = con.execute(f"SELECT {columns.replace(', label', '')} FROM {LOG_TABLE} WHERE ts >= $1 AND ts < $2 "
                             f"{window_filter} ORDER BY request_id", list(WINDOW)).df()
    finally:
        con.close()
    return reference, window


def _nannyml_cbpe(db: Path) -> dict[str, Any]:
    """NannyML's CBPE fitted on the reference's (score, prediction, label), estimated on the window's scored
    predictions as one chunk: the rows our estimate covers (prediction and a finite score)."""
    import warnings

    import nannyml

    t = Timer()
    reference, window = t.run("load_s", lambda: _frames(
        db, "score, prediction, label", "AND prediction IS NOT NULL AND isfinite(score)"))
    estimator = nannyml.CBPE(y_pred_proba="score", y_pred="prediction", y_true="label", metrics=list(CBPE_METRICS),
                             problem_type="classification_binary", chunk_number=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.run("fit_s", lambda: estimator.fit(reference))
        result = t.run("window_s", lambda: estimator.estimate(window))
    t.add("total_s", (t.wall["fit_s"] + t.wall["window_s"], t.cpu["fit_s"] + t.cpu["window_s"]))
    frame = result.to_df()
    frame = frame[frame[("chunk", "period")] == "analysis"]
    return {**t.figures(), "rows": len(window), "needs_calibration": bool(estimator.needs_calibration),
            "estimate": {m: float(frame[(m, "value")].iloc[0]) for m in CBPE_METRICS}}


def _nannyml_pca(db: Path) -> dict[str, Any]:
    """NannyML's DataReconstructionDriftCalculator on the 20 numerical features, chunked as our band is
    (``reference rows // 10``); the window's value is its chunks' errors weighted by their rows."""
    import warnings

    import numpy as np
    from nannyml.drift.multivariate.data_reconstruction import DataReconstructionDriftCalculator

    t = Timer()
    reference, window = t.run("load_s", lambda: _frames(db, ", ".join(NUMERICAL), ""))
    calculator = DataReconstructionDriftCalculator(column_names=list(NUMERICAL),
                                                   chunk_size=max(len(reference) // 10, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.run("fit_s", lambda: calculator.fit(reference))
        result = t.run("window_s", lambda: calculator.calculate(window))
    t.add("total_s", (t.wall["fit_s"] + t.wall["window_s"], t.cpu["fit_s"] + t.cpu["window_s"]))
    frame = result.filter(period="analysis").to_df()
    sizes = (frame[("chunk", "end_index")] - frame[("chunk", "start_index")] + 1).to_numpy(float)
    values = frame[("reconstruction_error", "value")].to_numpy(float)
    upper = frame[("reconstruction_error", "upper_threshold")].iloc[0]
    lower = frame[("reconstruction_error", "lower_threshold")].iloc[0]
    return {**t.figures(), "rows": len(window), "chunks": len(frame),
            "value": float(np.sum(values * sizes) / np.sum(sizes)),
            "upper": None if upper is None or np.isnan(upper) else float(upper),
            "lower": None if lower is None or np.isnan(lower) else float(lower)}


CONTENDERS = ("base", "segments", "cbpe", "pca", "nannyml_cbpe", "nannyml_pca")
MAIN_SECONDS = {"base": "report_s", "segments": "segments_s", "cbpe": "total_s", "pca": "total_s",
                "nannyml_cbpe": "total_s", "nannyml_pca": "total_s"}
_OURS = ("services.monitoring.report", "services.monitoring.reference", "services.monitoring.estimated_performance",
         "services.monitoring.multivariate", "services.stores.tower_db", "services.wiring")
IMPORTS = {  # imported before the work, so that the RSS they cost is known apart
    "base": _OURS, "segments": _OURS, "cbpe": (*_OURS, "sklearn.isotonic"), "pca": _OURS,
    "nannyml_cbpe": ("duckdb", "pandas", "nannyml"),
    "nannyml_pca": ("duckdb", "pandas", "nannyml", "nannyml.drift.multivariate.data_reconstruction"),
}


def child_main(name: str, db: Path, tower: str) -> dict[str, Any]:
    import importlib

    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # before nannyml is imported: no usage analytics
    for module in IMPORTS[name]:
        importlib.import_module(module)
    imports_rss = peak_mib()
    work: dict[str, Callable[[], dict[str, Any]]] = {
        "base": lambda: _base(db, tower), "segments": lambda: _segments(db, tower), "cbpe": lambda: _cbpe(db, tower),
        "pca": lambda: _pca(db, tower), "nannyml_cbpe": lambda: _nannyml_cbpe(db),
        "nannyml_pca": lambda: _nannyml_pca(db)}
    if name not in work:
        raise ValueError(f"unknown contender {name!r}")
    return {**work[name](), "imports_rss_mib": imports_rss, "peak_rss_mib": peak_mib()}
