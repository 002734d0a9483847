"""A window report as the tables the pages display."""

from __future__ import annotations

import pandas as pd

from services.monitoring.results import WindowReport


def drift_table(report: WindowReport) -> pd.DataFrame:
    """One row per feature of a window report, for the drift explorer's table: column, kind, method,
    score, threshold, drifted, psi, psi_band, js_distance, wasserstein_normed, ks_statistic,
    chi2_pvalue, null_share, reference_null_share, unseen_categories (comma-separated), unseen_share."""
    columns = ["column", "kind", "method", "score", "threshold", "drifted", "psi", "psi_band", "js_distance",
               "wasserstein_normed", "ks_statistic", "chi2_pvalue", "null_share", "reference_null_share",
               "unseen_categories", "unseen_share"]
    rows = [{**{c: getattr(d, c) for c in columns if c != "unseen_categories"},
             "unseen_categories": ", ".join(d.unseen_categories)} for d in report.drift]
    frame = pd.DataFrame(rows, columns=columns)
    frame["drifted"] = frame["drifted"].astype("boolean")
    return frame
