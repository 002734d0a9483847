"""Our figures against NannyML's: do the numbers agree, and the ratios of the medians."""

from __future__ import annotations

from typing import Any

from bench.explain.data import CBPE_METRICS, CBPE_TOLERANCE, PCA_TOLERANCE
from bench.monitoring.comparison import ratio_of
from bench.monitoring.runner import SizeResult


def cbpe_agreement(size: SizeResult) -> dict[str, Any] | None:
    """Per metric our estimate beside NannyML's, the largest difference and whether it is within tolerance."""
    ours, theirs = size.last("cbpe"), size.last("nannyml_cbpe")
    if ours is None or theirs is None:
        return None
    differences = {m: abs(ours["estimate"][m] - theirs["estimate"][m]) for m in CBPE_METRICS}
    largest = max(differences.values())
    return {"ours": ours["estimate"], "nannyml": theirs["estimate"], "differences": differences, "largest": largest,
            "same_rows": ours["rows"] == theirs["rows"], "rows": ours["rows"],
            "nannyml_calibrates": theirs["needs_calibration"],
            "agree": bool(largest <= CBPE_TOLERANCE and ours["rows"] == theirs["rows"])}


def pca_agreement(size: SizeResult) -> dict[str, Any] | None:
    """The window's reconstruction error (and the band's upper end) beside NannyML's, relative differences."""
    ours, theirs = size.last("pca"), size.last("nannyml_pca")
    if ours is None or theirs is None or ours["value"] is None:
        return None
    relative = abs(ours["value"] - theirs["value"]) / abs(theirs["value"])
    upper = None if ours["upper"] is None or theirs["upper"] is None else \
        abs(ours["upper"] - theirs["upper"]) / abs(theirs["upper"])
    return {"ours": ours["value"], "nannyml": theirs["value"], "relative": relative, "ours_upper": ours["upper"],
            "nannyml_upper": theirs["upper"], "upper_relative": upper, "rows": ours["rows"],
            "same_rows": ours["rows"] == theirs["rows"], "drifted": ours["drifted"],
            "agree": bool(relative <= PCA_TOLERANCE and ours["rows"] == theirs["rows"])}


def ratios(size: SizeResult, *, cpu: bool = False) -> dict[str, float | None]:
    """What each addition costs against the base report, and NannyML's time against ours (medians)."""
    def m(contender: str, key: str) -> float | None:
        return size.median(contender, ("cpu." + key) if cpu else key)

    base = m("base", "report_s")
    out = {
        "segments_vs_base": ratio_of(m("segments", "segments_s"), base),
        "cbpe_window_vs_base": ratio_of(m("cbpe", "window_s"), base),
        "pca_window_vs_base": ratio_of(m("pca", "window_s"), base),
    }
    for kind in ("cbpe", "pca"):
        for step in ("fit_s", "window_s", "total_s"):
            out[f"nannyml_{kind}_{step[:-2]}"] = ratio_of(m(f"nannyml_{kind}", step), m(kind, step))
        total, load = m(f"nannyml_{kind}", "total_s"), m(f"nannyml_{kind}", "load_s")
        out[f"nannyml_{kind}_loaded"] = ratio_of(None if total is None or load is None else total + load,
                                                 m(kind, "total_s"))
    return out
