"""A window report as the tables the pages display."""

from __future__ import annotations

import pandas as pd

from services.monitoring.results import WindowReport
from services.stats.drift import drift_ratio


def drift_table(report: WindowReport) -> pd.DataFrame:
    """One row per feature of a window report, most drifting first, for the drift explorer's table:
    column, kind, method, score, threshold, ratio, drifted, psi, psi_band, js_distance,
    wasserstein_normed, ks_statistic, chi2_pvalue, null_share, reference_null_share,
    unseen_categories (comma-separated), unseen_share.

    ``ratio`` is ``stats.drift.drift_ratio``: how far past its verdict line each feature is, so
    features judged by different statistics (distances, p-values) rank on one scale. Ties and
    features without a score keep the mapping's order, the latter last."""
    columns = ["column", "kind", "method", "score", "threshold", "ratio", "drifted", "psi", "psi_band",
               "js_distance", "wasserstein_normed", "ks_statistic", "chi2_pvalue", "null_share",
               "reference_null_share", "unseen_categories", "unseen_share"]
    computed = {"ratio", "unseen_categories"}
    rows = [{**{c: getattr(d, c) for c in columns if c not in computed},
             "ratio": drift_ratio(d.method, d.score, d.threshold),
             "unseen_categories": ", ".join(d.unseen_categories)} for d in report.drift]
    frame = pd.DataFrame(rows, columns=columns)
    frame["ratio"] = frame["ratio"].astype("float64")
    frame["drifted"] = frame["drifted"].astype("boolean")
    # A stable sort: equal ratios keep the mapping's order, so the ranking is the same on every run.
    return frame.sort_values("ratio", ascending=False, kind="stable", na_position="last", ignore_index=True)
