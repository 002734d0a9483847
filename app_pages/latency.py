"""Latency: p50/p95/p99 per version and day against the SLO, error rate and throughput."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import plotly.express as px
import streamlit as st

from services.settings import Settings
from ui import backends
from ui.alert_notice import open_alerts_notice
from ui.page import page
from ui.tables import LATENCY_COLUMNS, LATENCY_TIMES, readable, show
from ui.widgets import day_window, model_names, model_picker, segment_picker
from ui.windows import empty_window_notice

if TYPE_CHECKING:
    import plotly.graph_objects as go

QUANTILES = {"p50": "p50_ms", "p95": "p95_ms", "p99": "p99_ms"}
# Versions are categories: a qualitative palette keeps neighbouring versions apart.
PALETTE = px.colors.qualitative.Bold
DEFAULT_DAYS = 21


def _quantile_chart(daily: pd.DataFrame, column: str, label: str, slo: float | None) -> go.Figure:
    fig = px.line(daily, x="day", y=column, color="version", markers=True, color_discrete_sequence=PALETTE,
                  labels={column: f"{label} latency (ms)", "day": "day (UTC)"})
    if slo is not None:
        fig.add_hline(y=slo, line_dash="dash", line_color="crimson", annotation_text=f"SLO {slo:.0f} ms")
    fig.update_layout(height=360, legend_title_text="version", margin={"t": 30})
    return fig


def render(settings: Settings) -> None:
    name = model_picker(model_names(settings))
    if name is None:
        st.info("No registered models yet. Register a model in MLflow, or run `make seed` for the demo.")
        return
    mapping = settings.model(name)
    if mapping is None:
        st.warning(f"Model {name!r} has no prediction log mapped in tower.yaml, so there is no latency to show. "
                   "Add it under `models:` with its table and columns.")
        return
    open_alerts_notice(settings, mapping.name, "latency")
    mapping = segment_picker(mapping)
    window = day_window("Window (UTC days)", DEFAULT_DAYS, key="latency_window")
    if window is None:
        return
    daily = backends.latency_by_day(settings, mapping, *window)
    by_version = backends.latency_by_version(settings, mapping, *window)
    if daily.empty:
        empty_window_notice(settings, mapping, *window, source="log")
        return

    label = st.segmented_control("Quantile", list(QUANTILES), default="p95", required=True)
    st.plotly_chart(_quantile_chart(daily, QUANTILES[label], label, mapping.slo.latency_p95_ms
                                    if label == "p95" else None))
    left, right = st.columns(2)
    errors = px.line(daily, x="day", y="error_rate", color="version", markers=True, color_discrete_sequence=PALETTE,
                     labels={"error_rate": "error rate", "day": "day (UTC)"})
    if mapping.slo.error_rate is not None:
        errors.add_hline(y=mapping.slo.error_rate, line_dash="dash", line_color="crimson", annotation_text="SLO")
    errors.update_layout(height=300, yaxis_tickformat=".1%", margin={"t": 30})
    left.plotly_chart(errors)
    throughput = px.bar(daily, x="day", y="requests", color="version", color_discrete_sequence=PALETTE,
                        labels={"requests": "requests per day"})
    throughput.update_layout(height=300, margin={"t": 30})
    right.plotly_chart(throughput)

    st.subheader("Per version over the window")
    show(readable(by_version, LATENCY_COLUMNS, times=LATENCY_TIMES), column_config={
        LATENCY_COLUMNS["error_rate"]: st.column_config.NumberColumn(format="percent"),
        **{LATENCY_COLUMNS[c]: st.column_config.NumberColumn(format="%.1f") for c in QUANTILES.values()},
    })


if __name__ == "__main__":
    page(render, "Latency")
