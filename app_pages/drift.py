"""Drift explorer: feature x day drift scores, one feature's distributions, every feature's verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from services.monitoring.co_drift import co_drifting_pairs
from services.monitoring.report_tables import drift_table
from services.settings import Settings
from ui import backends
from ui.page import page
from ui.widgets import day_window, model_names, model_picker, reference_picker

if TYPE_CHECKING:
    import pandas as pd


def _heatmap(heatmap: pd.DataFrame) -> go.Figure:
    # Score over threshold puts every statistic on one scale: 1 is the verdict line.
    ratio = heatmap.assign(ratio=heatmap["score"] / heatmap["threshold"])
    grid = ratio.pivot_table(index="column", columns="day", values="ratio", aggfunc="first")
    fig = px.imshow(grid, color_continuous_scale=[(0, "#f7fbff"), (0.5, "#fdd49e"), (1, "#b30000")],
                    zmin=0, zmax=2, aspect="auto", labels={"color": "score ÷ threshold", "x": "day", "y": ""})
    fig.update_layout(height=max(260, 28 * len(grid)), margin={"t": 20})
    return fig


def _overlay(dist: pd.DataFrame) -> go.Figure:
    fig = go.Figure([go.Bar(name="reference", x=dist["bin"], y=dist["reference_share"], opacity=0.6),
                     go.Bar(name="current window", x=dist["bin"], y=dist["current_share"], opacity=0.6)])
    fig.update_layout(barmode="overlay", height=320, yaxis_tickformat=".0%", margin={"t": 20},
                      xaxis_title="value (reference bins of equal mass)", yaxis_title="share of rows")
    return fig


def render(settings: Settings) -> None:
    st.title("Drift explorer")
    name = model_picker(model_names(settings))
    mapping = settings.model(name) if name else None
    if mapping is None:
        st.info("No monitored model: map one under `models:` in tower.yaml." if name is None else
                f"{name} has no prediction log mapped in tower.yaml.")
        return
    assert name is not None  # a mapping was found for it
    window = day_window("Window (UTC days)", 14, key="drift_window")
    reference = reference_picker(mapping)
    if window is None or reference is None:
        return
    heatmap = backends.drift_heatmap(settings, name, *window)
    st.subheader("Drift by feature and day")
    if heatmap.empty:
        st.info("No daily drift results in this window yet: run `python -m services.cli monitor run`.")
    else:
        st.plotly_chart(_heatmap(heatmap))
        pairs = co_drifting_pairs(heatmap)
        if not pairs.empty:
            st.caption("Features whose daily drift moves together")
            st.dataframe(pairs, hide_index=True)
    with st.spinner("Computing the window against the reference in the warehouse…"):
        report = backends.window_report(settings, mapping, reference, *window)
    st.subheader("Every feature over the whole window")
    st.caption(f"{report.rows_current:,} rows against {report.rows_reference:,} reference rows "
               f"({report.reference_description}). Verdict as Evidently 0.7 chooses; PSI bands 0.1 / 0.25 beside.")
    st.dataframe(drift_table(report), hide_index=True, column_config={
        "null_share": st.column_config.NumberColumn(format="percent"),
        "unseen_share": st.column_config.NumberColumn(format="percent")})
    column = st.selectbox("Feature", list(mapping.features))
    dist = backends.feature_distributions(settings, mapping, reference, column, *window)
    st.plotly_chart(_overlay(dist))


if __name__ == "__main__":
    page(render)
