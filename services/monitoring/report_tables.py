"""A window report as the tables the pages display."""

from __future__ import annotations

import pandas as pd

from services.monitoring.data_quality import CHECK_WORDS, QualityResult
from services.monitoring.results import WindowReport
from services.stats.drift import drift_ratio


def drift_table(report: WindowReport) -> pd.DataFrame:
    """One row per feature of a window report, most drifting first, for the drift explorer's table:
    column, kind, method, score, threshold, ratio, drifted, psi, psi_band, js_distance,
    wasserstein_normed, ks_statistic, chi2_pvalue, null_share, reference_null_share,
    unseen_categories (comma-separated), unseen_share, out_of_range_share and data_quality (the
    data-quality verdict in words: the checks over their limits, "ok", or None when not judged).

    ``ratio`` is ``stats.drift.drift_ratio``: how far past its verdict line each feature is, so
    features judged by different statistics (distances, p-values) rank on one scale. Ties and
    features without a score keep the mapping's order, the latter last."""
    columns = ["column", "kind", "method", "score", "threshold", "ratio", "drifted", "psi", "psi_band",
               "js_distance", "wasserstein_normed", "ks_statistic", "chi2_pvalue", "null_share",
               "reference_null_share", "unseen_categories", "unseen_share", "out_of_range_share", "data_quality"]
    computed = {"ratio", "unseen_categories", "out_of_range_share", "data_quality"}
    quality = {q.column: q for q in report.data_quality}
    rows = [{**{c: getattr(d, c) for c in columns if c not in computed},
             "ratio": drift_ratio(d.method, d.score, d.threshold),
             "unseen_categories": ", ".join(d.unseen_categories),
             "out_of_range_share": getattr(quality.get(d.column), "out_of_range_share", None),
             "data_quality": quality_verdict(quality.get(d.column))} for d in report.drift]
    frame = pd.DataFrame(rows, columns=columns)
    frame["ratio"] = frame["ratio"].astype("float64")
    frame["out_of_range_share"] = frame["out_of_range_share"].astype("float64")
    frame["drifted"] = frame["drifted"].astype("boolean")
    # A stable sort: equal ratios keep the mapping's order, so the ranking is the same on every run.
    return frame.sort_values("ratio", ascending=False, kind="stable", na_position="last", ignore_index=True)


def quality_verdict(quality: QualityResult | None) -> str | None:
    """A feature's data quality in words: the checks over their limits ("null share 12.0 % > 8.0 %"),
    "ok" when every judged check passes, None when none was judged."""
    if quality is None or quality.alert is None:
        return None
    over = [f"{CHECK_WORDS[metric]} {value:.1%} > {limit:.1%}" for metric, value, limit, alert in quality.checks()
            if alert and value is not None and limit is not None]
    return "; ".join(over) if over else "ok"
