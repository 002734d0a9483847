"""Side-by-side metrics of two versions (e.g. the staging holder against production)."""

from __future__ import annotations

import math

import pandas as pd

# Metrics where a smaller value is the better one; everything else is taken as higher-is-better.
LOWER_IS_BETTER = frozenset({"mae", "rmse", "mse", "log_loss", "brier_score"})


def compare_metrics(candidate: dict[str, float], incumbent: dict[str, float]) -> pd.DataFrame:
    """One row per metric either version has: both values, the difference and which is better."""
    rows = []
    for metric in sorted(set(candidate) | set(incumbent)):
        new, old = candidate.get(metric), incumbent.get(metric)
        delta = new - old if new is not None and old is not None else None
        if delta is None or math.isnan(delta) or delta == 0:
            verdict = "—" if delta is None or math.isnan(delta) else "same"
        else:
            better = delta < 0 if metric.lower() in LOWER_IS_BETTER else delta > 0
            verdict = "better" if better else "worse"
        rows.append({"metric": metric, "candidate": new, "incumbent": old, "difference": delta,
                     "candidate is": verdict})
    return pd.DataFrame(rows, columns=["metric", "candidate", "incumbent", "difference", "candidate is"])
