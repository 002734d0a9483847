"""The performance page's figure and words: realised performance solid, the CBPE estimate dashed with its band.

A day whose labels are complete (not provisional) shows the realised metric; a day still waiting
for labels shows the estimate (``services.monitoring.estimated_performance``) as a dashed line in a
shaded band, and the hollow provisional marker of what labels have said so far. As labels arrive
and a day stops being provisional, its estimate gives way to the realised value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from plotly.subplots import make_subplots

from ui.tables import format_day

if TYPE_CHECKING:
    import plotly.graph_objects as go

ESTIMATE_COLOUR = "#7b3fb5"


def estimate_days(series: pd.DataFrame, estimate: pd.DataFrame) -> pd.DataFrame:
    """The estimate on the days without a final realised value (provisional, or no realised row)."""
    if estimate.empty:
        return estimate
    final = series.loc[~series["provisional"].fillna(True).astype(bool) & series["value"].notna(), "day"]
    return estimate[~estimate["day"].isin(set(final))].sort_values("day")


def performance_figure(series: pd.DataFrame, estimate: pd.DataFrame, metric: str) -> go.Figure:
    """Label coverage as bars; the realised ``metric`` solid; the estimate dashed in its band where labels lack."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=series["day"], y=series["label_coverage"], name="label coverage", opacity=0.25,
                secondary_y=True)
    provisional_mask = series["provisional"].fillna(False).astype(bool)
    final, provisional = series[~provisional_mask], series[provisional_mask]
    fig.add_scatter(x=final["day"], y=final["value"], mode="lines+markers", name=metric)
    fig.add_scatter(x=provisional["day"], y=provisional["value"], mode="markers", name=f"{metric} (provisional)",
                    marker={"symbol": "circle-open", "size": 10})
    shown = estimate_days(series, estimate)
    if not shown.empty:
        fig.add_scatter(x=shown["day"], y=shown["upper"], mode="lines", line={"width": 0}, showlegend=False,
                        hoverinfo="skip", name="estimate upper")
        fig.add_scatter(x=shown["day"], y=shown["lower"], mode="lines", line={"width": 0}, fill="tonexty",
                        fillcolor="rgba(123, 63, 181, 0.15)", name="estimate band (±3 s.e.)")
        fig.add_scatter(x=shown["day"], y=shown["value"], mode="lines+markers", name=f"{metric} estimated (CBPE)",
                        line={"dash": "dash", "color": ESTIMATE_COLOUR}, marker={"color": ESTIMATE_COLOUR})
    threshold = series["threshold"].dropna()
    if not threshold.empty:
        fig.add_hline(y=float(threshold.iloc[-1]), line_dash="dot", line_color="crimson",
                      annotation_text="alert threshold")
    fig.update_yaxes(title_text=metric, secondary_y=False)
    fig.update_yaxes(title_text="label coverage", tickformat=".0%", range=[0, 1.05], secondary_y=True)
    fig.update_layout(height=380, margin={"t": 30})
    return fig


def estimate_summary(series: pd.DataFrame, estimate: pd.DataFrame, metric: str) -> str | None:
    """One line on the latest estimated day: the estimate and its band beside what labels say so far."""
    shown = estimate_days(series, estimate)
    if shown.empty:
        return None
    last = shown.iloc[-1]
    realised = series.loc[series["day"] == last["day"], "value"]
    so_far = "no label yet" if realised.empty or pd.isna(realised.iloc[0]) else \
        f"{float(realised.iloc[0]):.3f} on the labels so far"
    band = "" if pd.isna(last["lower"]) or pd.isna(last["upper"]) else \
        f" (band {float(last['lower']):.3f} – {float(last['upper']):.3f})"
    value = "—" if pd.isna(last["value"]) else f"{float(last['value']):.3f}"
    return f"{format_day(last['day'])}: {metric} estimated {value}{band}; realised: {so_far}."
