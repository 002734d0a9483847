"""Performance over time as labels arrive: coverage shown, windows still waiting for labels marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st
from plotly.subplots import make_subplots

from services.settings import Settings
from ui import backends
from ui.alert_notice import open_alerts_notice
from ui.page import page
from ui.tables import label
from ui.widgets import day_window, model_names, model_picker
from ui.windows import empty_window_notice

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def _figure(series: pd.DataFrame, metric: str) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_bar(x=series["day"], y=series["label_coverage"], name="label coverage", opacity=0.25,
                secondary_y=True)
    final, provisional = series[~series["provisional"].fillna(False)], series[series["provisional"].fillna(False)]
    fig.add_scatter(x=final["day"], y=final["value"], mode="lines+markers", name=metric)
    fig.add_scatter(x=provisional["day"], y=provisional["value"], mode="markers", name=f"{metric} (provisional)",
                    marker={"symbol": "circle-open", "size": 10})
    threshold = series["threshold"].dropna()
    if not threshold.empty:
        fig.add_hline(y=float(threshold.iloc[-1]), line_dash="dash", line_color="crimson",
                      annotation_text="alert threshold")
    fig.update_yaxes(title_text=metric, secondary_y=False)
    fig.update_yaxes(title_text="label coverage", tickformat=".0%", range=[0, 1.05], secondary_y=True)
    fig.update_layout(height=380, margin={"t": 30})
    return fig


def render(settings: Settings) -> None:
    st.title("Performance")
    name = model_picker(model_names(settings))
    mapping = settings.model(name) if name else None
    if name is None or mapping is None:
        st.info("No monitored model yet." if name is None else f"{name} has no prediction log mapped in tower.yaml.")
        return
    open_alerts_notice(settings, mapping.name, "performance")
    window = day_window("Window (UTC days)", 30, key="performance_window")
    if window is None:
        return
    frame = backends.performance_over_time(settings, name, *window)
    if frame.empty:
        empty_window_notice(settings, mapping, *window, source="monitoring", what="performance results")
        return
    metrics = sorted(frame["metric"].unique())
    default = frame.loc[frame["rule_metric"], "metric"].iloc[0] if frame["rule_metric"].any() else metrics[0]
    metric = st.segmented_control("Metric", metrics, default=default, required=True, format_func=label)
    series = frame[frame["metric"] == metric].sort_values("day")
    st.plotly_chart(_figure(series, label(metric)))
    st.caption("Computed only on predictions whose label has arrived. Hollow markers: provisional windows "
               "whose label coverage is still below the rule's minimum; they will move as labels arrive.")


if __name__ == "__main__":
    page(render)
