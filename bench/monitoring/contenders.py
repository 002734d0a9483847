"""What each child process times: our report, Evidently, fairlearn, the plain scan (and the probe)."""

# ruff: noqa: S608 -- every statement here is built from this package's constant names and numbers
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.monitoring.data import CATEGORICAL, LOG_TABLE, NUMERICAL, REFERENCE_TABLE, SENSITIVE, WINDOW, bench_mapping
from bench.monitoring.machine import Clock, peak_mib
from bench.monitoring.probe import run_probe
from bench.monitoring.stores import backends, open_warehouse


def _report_json(report: Any) -> dict[str, Any]:
    drift = {d.column: {"method": d.method, "score": d.score, "drifted": d.drifted} for d in report.drift}
    fairness = {}
    for f in report.fairness:
        fairness[f.sensitive] = {
            "dpd": f.demographic_parity_difference, "eod": f.equalized_odds_difference,
            "groups": {g.group: {"selection_rate": g.selection_rate, "tpr": g.tpr, "fpr": g.fpr} for g in f.groups}}
    lat = report.latency
    return {"drift": drift, "fairness": fairness, "rows_current": report.rows_current,
            "latency": {"p50_ms": lat.p50_ms, "p95_ms": lat.p95_ms, "p99_ms": lat.p99_ms,
                        "error_rate": lat.error_rate}}


PIECES = {"numeric_histograms": "drift", "value_counts": "drift", "fairness_counts": "fairness",
          "latency_summaries": "latency", "classification_counts": "performance", "build_report": "statistics"}


def ours(db: Path, tower: str, *, cold: bool, kept: bool = False) -> dict[str, Any]:
    """``window_report`` for the window; the reference profile loaded from the tower state (warm) or computed;
    with ``kept``, offered the daily aggregates the job kept in that tower state (issue 16), as the pages are."""
    from services.monitoring import reference
    from services.monitoring import report as report_module
    from services.stores.warehouse import histograms, logs, outcomes

    mapping = bench_mapping()
    stores = backends(db, tower, create_schema=False)
    engine, tower_engine = open_warehouse(stores), stores.tower()
    wall: dict[str, float] = dict.fromkeys(PIECES, 0.0)
    cpu: dict[str, float] = dict.fromkeys(PIECES, 0.0)

    def timed(module: Any, name: str) -> None:
        inner = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            clock = Clock()
            try:
                return inner(*args, **kwargs)
            finally:
                w, c = clock.stop()
                wall[name] += w
                cpu[name] += c
        setattr(module, name, wrapper)

    homes = {"numeric_histograms": histograms, "value_counts": histograms, "fairness_counts": outcomes,
             "classification_counts": outcomes, "latency_summaries": logs, "build_report": report_module}
    for name in PIECES:
        timed(homes[name], name)
    clock = Clock()
    if cold:
        profile = reference.compute_profile(engine, mapping)
    else:
        rid = reference.reference_id(reference.reference_definition(mapping))
        profile = reference.stored_profile(tower_engine, rid)
        if profile is None:
            raise RuntimeError("the reference profile is not kept: run the parent, which keeps it first")
    profile_s = clock.stop()
    clock = Clock()
    kept_days = stores.kept_days() if kept else None
    report = report_module.window_report(engine, mapping, profile, *WINDOW, kept=kept_days)
    window_s = clock.stop()

    def figures(pieces: dict[str, float], profile: float, window: float) -> dict[str, Any]:
        drift_sql = pieces["numeric_histograms"] + pieces["value_counts"]
        return {"profile_s": profile, "window_report_s": window, "pieces_s": dict(pieces), "drift_sql_s": drift_sql,
                "drift_s": profile + drift_sql + pieces["build_report"], "fairness_s": pieces["fairness_counts"],
                "latency_s": pieces["latency_summaries"], "report_s": profile + window}

    first = figures(wall, profile_s[0], window_s[0])
    first_cpu = figures(cpu, profile_s[1], window_s[1])
    # Once more in the same process, as a long-lived dashboard or job would run its next window.
    wall.update(dict.fromkeys(wall, 0.0))
    cpu.update(dict.fromkeys(cpu, 0.0))
    clock = Clock()
    report_module.window_report(engine, mapping, profile, *WINDOW, kept=kept_days)
    hot = figures(wall, profile_s[0], clock.stop()[0])
    return {**first, "cpu": first_cpu, "hot": hot, **_report_json(report)}


def _feature_frames(db: Path) -> tuple[Any, Any, tuple[float, float]]:
    import duckdb

    columns = ", ".join([*NUMERICAL, *CATEGORICAL])
    clock = Clock()
    con = duckdb.connect(str(db), read_only=True)
    try:
        reference = con.execute(f"SELECT {columns} FROM {REFERENCE_TABLE}").df()
        current = con.execute(f"SELECT {columns} FROM {LOG_TABLE} WHERE ts >= $1 AND ts < $2",
                              list(WINDOW)).df()
    finally:
        con.close()
    return reference, current, clock.stop()


def _evidently(db: Path) -> dict[str, Any]:
    """Evidently 0.7's DataDriftPreset on the reference and the window as pandas frames."""
    import warnings

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current, load = _feature_frames(db)
    definition = DataDefinition(numerical_columns=list(NUMERICAL), categorical_columns=list(CATEGORICAL))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clock = Clock()
        snapshot = Report([DataDriftPreset()], include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition))
        run = clock.stop()
    result = snapshot.dict()
    scores = {m["config"]["column"]: (m["config"]["method"], float(m["value"]))
              for m in result["metrics"] if m["config"]["type"].endswith(":ValueDrift")}
    drifted = {t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
               for t in result["tests"] if t["name"].startswith("Value Drift for column")}
    return {"load_s": load[0], "run_s": run[0], "cpu": {"load_s": load[1], "run_s": run[1]},
            "rows": [len(reference), len(current)],
            "drift": {c: {"method": scores[c][0], "score": scores[c][1], "drifted": drifted.get(c)} for c in scores}}


def _fairlearn(db: Path) -> dict[str, Any]:
    """fairlearn's MetricFrame and differences on the window's predicted rows, as the tower defines them.

    Selection rate over every row with a prediction; TPR, FPR and the equalized odds difference over
    the rows whose label has arrived (fairlearn needs y_true).
    """
    import duckdb
    import numpy as np
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    clock = Clock()
    con = duckdb.connect(str(db), read_only=True)
    try:
        frame = con.execute(f"SELECT {SENSITIVE}, prediction, label FROM {LOG_TABLE} "
                            "WHERE ts >= $1 AND ts < $2 AND prediction IS NOT NULL", list(WINDOW)).df()
    finally:
        con.close()
    labelled = frame[frame["label"].notna()]
    y_pred, groups = frame["prediction"].astype(int).to_numpy(), frame[SENSITIVE].to_numpy()
    placeholder = np.zeros(len(frame), dtype=int)  # selection rate ignores y_true
    ly, lp = labelled["label"].astype(int).to_numpy(), labelled["prediction"].astype(int).to_numpy()
    lg = labelled[SENSITIVE].to_numpy()
    load = clock.stop()
    clock = Clock()
    selection = MetricFrame(metrics=selection_rate, y_true=placeholder, y_pred=y_pred, sensitive_features=groups)
    rates = MetricFrame(metrics={"tpr": true_positive_rate, "fpr": false_positive_rate}, y_true=ly, y_pred=lp,
                        sensitive_features=lg)
    dpd = demographic_parity_difference(placeholder, y_pred, sensitive_features=groups)
    eod = equalized_odds_difference(ly, lp, sensitive_features=lg)
    run = clock.stop()
    by_group = rates.by_group
    return {"load_s": load[0], "run_s": run[0], "cpu": {"load_s": load[1], "run_s": run[1]}, "fairness": {SENSITIVE: {
        "dpd": float(dpd), "eod": float(eod),
        "groups": {str(g): {"selection_rate": float(selection.by_group[g]), "tpr": float(by_group.loc[g, "tpr"]),
                            "fpr": float(by_group.loc[g, "fpr"])} for g in selection.by_group.index}}}}


def _scan_sql(columns: Sequence[str], numeric: Sequence[str]) -> str:
    """One pass over the window: SUM of every numerical column, MAX of every other (both read each value)."""
    parts = ["count(*)"] + [f"{'sum' if c in numeric else 'max'}({c})" for c in columns]
    return f"SELECT {', '.join(parts)} FROM {LOG_TABLE} WHERE ts >= $1 AND ts < $2"


NUMERIC_LOG_COLUMNS = (*NUMERICAL, "prediction", "score", "label", "latency_ms")
REPORT_COLUMNS = (*NUMERICAL, *CATEGORICAL, SENSITIVE, "prediction", "score", "label", "latency_ms", "status",
                  "model_version")


def _scan(db: Path, tower: str) -> dict[str, Any]:
    """The floor: a plain scan of the window's 25 feature columns, then of every column the report reads."""
    engine = open_warehouse(backends(db, tower, create_schema=False))
    out: dict[str, Any] = {"cpu": {}}
    with engine.connect() as conn:
        for key, columns in (("features_s", [*NUMERICAL, *CATEGORICAL]), ("all_s", REPORT_COLUMNS)):
            clock = Clock()
            conn.exec_driver_sql(_scan_sql(columns, NUMERIC_LOG_COLUMNS), tuple(WINDOW)).fetchall()
            out[key], out["cpu"][key] = clock.stop()
    return out


CONTENDERS = ("scan", "ours_warm", "ours_cold", "fairlearn", "evidently")
IMPORTS = {  # imported before the work, so that the RSS they cost is known apart
    "scan": ("services.stores.warehouse.logs", "services.wiring"),
    "ours_warm": ("services.monitoring.report", "services.monitoring.reference", "services.stores.tower_db",
                  "services.wiring"),
    "ours_cold": ("services.monitoring.report", "services.monitoring.reference", "services.stores.tower_db",
                  "services.wiring"),
    "fairlearn": ("duckdb", "pandas", "fairlearn.metrics"),
    "evidently": ("duckdb", "pandas", "evidently", "evidently.presets"),
    "probe": ("services.monitoring.report", "services.monitoring.reference", "services.stores.tower_db",
              "services.wiring"),
}


def child_main(name: str, db: Path, tower: str, probe_repeat: int) -> dict[str, Any]:
    import importlib

    for module in IMPORTS[name]:
        importlib.import_module(module)
    imports_rss = peak_mib()
    if name in ("ours_warm", "ours_cold"):
        result = ours(db, tower, cold=name == "ours_cold")
    elif name == "evidently":
        result = _evidently(db)
    elif name == "fairlearn":
        result = _fairlearn(db)
    elif name == "scan":
        result = _scan(db, tower)
    elif name == "probe":
        result = run_probe(db, tower, probe_repeat)
    else:
        raise ValueError(f"unknown contender {name!r}")
    return {**result, "imports_rss_mib": imports_rss, "peak_rss_mib": peak_mib()}
