"""Fairness: per-group metrics of a window, and the differences and ratio over time (four-fifths)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import plotly.express as px
import streamlit as st

from services.settings import Settings
from ui import backends
from ui.page import page
from ui.widgets import day_window, model_names, model_picker

if TYPE_CHECKING:
    from services.monitoring.results import FairnessResult

DIFFERENCES = ["demographic_parity_difference", "equalized_odds_difference", "disparate_impact_ratio"]


def _groups_table(result: FairnessResult) -> pd.DataFrame:
    return pd.DataFrame([{"group": g.group, "count": g.count, "selection rate": g.selection_rate,
                          "TPR": g.tpr, "FPR": g.fpr} for g in result.groups])


def render(settings: Settings) -> None:
    st.title("Fairness")
    name = model_picker(model_names(settings))
    mapping = settings.model(name) if name else None
    if mapping is None or not mapping.sensitive:
        st.info("Pick a model with sensitive attributes mapped in tower.yaml (`sensitive:`)." if name else
                "No monitored model yet.")
        return
    assert name is not None  # a mapping was found for it
    window = day_window("Window (UTC days)", 14, key="fairness_window")
    if window is None:
        return
    attributes = list(mapping.sensitive)
    linked = st.query_params.get("sensitive")  # a fairness chip links to the group attribute it is about
    sensitive = st.selectbox("Sensitive attribute", attributes,
                             index=attributes.index(linked) if linked in attributes else 0)
    report = backends.window_report(settings, mapping, (None, None), *window)
    result = next((f for f in report.fairness if f.sensitive == sensitive), None)
    if result is None or not result.groups:
        st.info("No predictions in this window.")
    else:
        c1, c2, c3 = st.columns(3)
        c1.metric("Demographic parity difference", f"{result.demographic_parity_difference:.3f}"
                  if result.demographic_parity_difference is not None else "—")
        c2.metric("Equalized odds difference", f"{result.equalized_odds_difference:.3f}"
                  if result.equalized_odds_difference is not None else "—")
        ratio = result.disparate_impact_ratio
        c3.metric("Disparate impact ratio", f"{ratio:.3f}" if ratio is not None else "—",
                  delta="passes four-fifths" if ratio is not None and ratio >= 0.8 else
                  ("fails four-fifths" if ratio is not None else None),
                  delta_color="normal" if ratio is not None and ratio >= 0.8 else "inverse",
                  delta_arrow="off")  # a verdict, not a change: an up arrow beside "fails" misleads
        st.dataframe(_groups_table(result), hide_index=True, column_config={
            c: st.column_config.NumberColumn(format="%.3f") for c in ("selection rate", "TPR", "FPR")})
        st.caption("Selection rate over all rows; TPR and FPR over the rows whose label has arrived. "
                   "Definitions as fairlearn's.")
    history = backends.fairness_over_time(settings, name, window[0] - pd.Timedelta(days=21), window[1])
    history = history[(history["sensitive"] == sensitive) & history["metric"].isin(DIFFERENCES)]
    if not history.empty:
        fig = px.line(history, x="day", y="value", color="metric", markers=True)
        fig.add_hrect(y0=0.8, y1=1.0, fillcolor="green", opacity=0.08, line_width=0,
                      annotation_text="four-fifths band (ratio)")
        fig.update_layout(height=360, margin={"t": 30}, yaxis_title="", legend_title_text="")
        st.subheader("Over time")
        st.plotly_chart(fig)


if __name__ == "__main__":
    page(render)
