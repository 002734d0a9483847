"""Which features drift together: correlation of their daily drift scores (pure)."""

from __future__ import annotations

import pandas as pd


def co_drifting_pairs(heatmap: pd.DataFrame, *, min_correlation: float = 0.7, min_days: int = 5) -> pd.DataFrame:
    """Feature pairs whose day-by-day drift scores move together (Pearson r >= ``min_correlation``).

    ``heatmap`` has one row per (day, column) with a ``score``; a pair needs ``min_days`` common days.
    Columns of the answer: feature, with, correlation, days; strongest first.
    """
    columns = ["feature", "with", "correlation", "days"]
    if heatmap.empty:
        return pd.DataFrame(columns=columns)
    scores = heatmap.pivot_table(index="day", columns="column", values="score", aggfunc="first")
    pairs = []
    names = list(scores.columns)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = scores[[a, b]].dropna()
            if len(both) < min_days or both[a].std() == 0 or both[b].std() == 0:
                continue
            r = float(both[a].corr(both[b]))
            if r >= min_correlation:
                pairs.append({"feature": a, "with": b, "correlation": r, "days": len(both)})
    return pd.DataFrame(pairs, columns=columns).sort_values("correlation", ascending=False, ignore_index=True)
