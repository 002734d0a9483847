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
    unseen_categories (comma-separated), unseen_share, out_of_range_share, data_quality (the
    data-quality verdict in words: the checks over their limits, "ok", or None when not judged), and
    the distance the verdict mode judges: effect_statistic, effect, its interval lower/upper, its
    noise level and too_small (services.stats.drift_intervals).

    ``ratio`` is ``stats.drift.drift_ratio``: how far past its verdict line each feature is, so
    features judged by different statistics (distances, p-values) rank on one scale. Ties and
    features without a score keep the mapping's order, the latter last."""
    columns = ["column", "kind", "method", "score", "threshold", "ratio", "drifted", "psi", "psi_band",
               "js_distance", "wasserstein_normed", "ks_statistic", "chi2_pvalue", "null_share",
               "reference_null_share", "unseen_categories", "unseen_share", "out_of_range_share", "data_quality",
               # issue 15: the distance the verdict mode judges, its interval and its noise level
               "effect_statistic", "effect", "lower", "upper", "noise", "too_small"]
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
    frame["too_small"] = frame["too_small"].astype("boolean")
    for column in ("effect", "lower", "upper", "noise"):
        frame[column] = frame[column].astype("float64")
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


VERDICT_WORDS = {
    "fixed": "the statistic against its threshold; the {level} interval and the noise level are shown beside",
    "beyond_noise": "drifted when the {level} interval's lower end is above the noise level",
    "material": "drifted when the {level} interval's lower end is above {material}",
}


def verdict_text(report: WindowReport) -> str:
    """How the report's drift verdicts were decided, in words (issue 15)."""
    judged = next((d for d in report.drift if d.confidence is not None), None)
    if judged is None:
        return ""
    material = judged.deciding_threshold if judged.verdict == "material" else None
    words = VERDICT_WORDS[judged.verdict].format(level=f"{judged.confidence:.0%}",
                                                 material=f"{material:.3g}" if material is not None else "")
    return f"Verdict: {words}."


def too_small_text(report: WindowReport) -> str:
    """The features this window is too small to judge, in words: "300 rows: drift under 0.14 cannot be told
    from noise at this size (income)", one clause per noise level, or "" when every feature can be told."""
    small = [d for d in report.drift if d.too_small and d.noise is not None]
    if not small:
        return ""
    clauses = [f"drift under {d.noise:.2g} in {d.column} ({d.effect_statistic}, the verdict needs "
               f"{d.deciding_threshold:.3g})" for d in small]
    return (f"{report.rows_current:,} rows: " + "; ".join(clauses)
            + " cannot be told from noise at this size. A longer window or more traffic narrows it.")
