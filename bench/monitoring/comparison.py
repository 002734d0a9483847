"""Our figures against the reference libraries': drift verdicts, fairness differences, ratios of medians."""

from __future__ import annotations

import math
from typing import Any

from bench.monitoring.data import CATEGORICAL, NUMERICAL, SENSITIVE
from bench.monitoring.runner import SizeResult


def drift_agreement(size: SizeResult) -> list[dict[str, Any]] | None:
    """Per feature: our method, score and verdict beside Evidently's (None unless both ran)."""
    from services.stats.drift import EVIDENTLY_DISPLAY_NAMES

    ours, theirs = size.last("ours_warm"), size.last("evidently")
    if ours is None or theirs is None:
        return None
    rows = []
    for column in [*NUMERICAL, *CATEGORICAL]:
        mine, other = ours["drift"][column], theirs["drift"].get(column)
        if other is None:
            rows.append({"column": column, "agree": False, "missing": True})
            continue
        same_method = EVIDENTLY_DISPLAY_NAMES[mine["method"]] == other["method"]
        rows.append({"column": column, "method": mine["method"], "evidently_method": other["method"],
                     "score": mine["score"], "evidently_score": other["score"], "drifted": mine["drifted"],
                     "evidently_drifted": other["drifted"],
                     "agree": bool(same_method and mine["drifted"] is other["drifted"])})
    return rows


def fairness_difference(size: SizeResult) -> float | None:
    """The largest absolute difference between our fairness figures and fairlearn's (None unless both ran)."""
    ours, theirs = size.last("ours_warm"), size.last("fairlearn")
    if ours is None or theirs is None:
        return None
    mine, other = ours["fairness"][SENSITIVE], theirs["fairness"][SENSITIVE]
    differences = [abs(mine["dpd"] - other["dpd"]), abs(mine["eod"] - other["eod"])]
    if set(mine["groups"]) != set(other["groups"]):
        return math.inf
    for group, rates in mine["groups"].items():
        differences += [abs(rates[k] - other["groups"][group][k]) for k in ("selection_rate", "tpr", "fpr")]
    return max(differences)


def ratio_of(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def ratios(size: SizeResult, *, cpu: bool = False) -> dict[str, float | None]:
    """The ratios of the medians; of CPU seconds instead of wall-clock seconds with ``cpu``."""
    def m(contender: str, key: str) -> float | None:
        return size.median(contender, ("cpu." + key) if cpu else key)
    return {
        "evidently_vs_drift_warm": ratio_of(m("evidently", "run_s"), m("ours_warm", "drift_s")),
        "evidently_vs_drift_cold": ratio_of(m("evidently", "run_s"), m("ours_cold", "drift_s")),
        "evidently_vs_report_warm": ratio_of(m("evidently", "run_s"), m("ours_warm", "report_s")),
        "evidently_loaded_vs_report_warm": ratio_of(_sum(m("evidently", "run_s"), m("evidently", "load_s")),
                                                  m("ours_warm", "report_s")),
        "fairlearn_vs_fairness": ratio_of(m("fairlearn", "run_s"), m("ours_warm", "fairness_s")),
        "drift_sql_vs_scan": ratio_of(m("ours_warm", "drift_sql_s"), m("scan", "features_s")),
        "report_sql_vs_scan": ratio_of(_sum(m("ours_warm", "window_report_s"), -(m("ours_warm", "pieces_s.build_report")
                                                                                or 0.0)), m("scan", "all_s")),
    }


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b
