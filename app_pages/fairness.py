"""Fairness: per-group metrics of a window, and the differences and ratio over time (four-fifths)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import plotly.express as px
import streamlit as st

from services.settings import Settings
from ui import backends
from ui.alert_notice import open_alerts_notice
from ui.page import page
from ui.tables import FAIRNESS_GROUP_COLUMNS, MISSING, label, readable, show
from ui.widgets import day_window, model_names, model_picker, segment_of, segment_picker
from ui.windows import empty_window_notice

if TYPE_CHECKING:
    from services.monitoring.results import FairnessResult

DIFFERENCES = ["demographic_parity_difference", "equalized_odds_difference", "disparate_impact_ratio"]


def _groups_table(result: FairnessResult) -> pd.DataFrame:
    raw = pd.DataFrame([{"group": g.group, "count": g.count, "selection_rate": g.selection_rate,
                         "tpr": g.tpr, "fpr": g.fpr} for g in result.groups], columns=list(FAIRNESS_GROUP_COLUMNS))
    # None (no labelled row in a group) becomes NaN, so the column stays numeric and shows the dash.
    return readable(raw.astype({c: "float64" for c in ("selection_rate", "tpr", "fpr")}), FAIRNESS_GROUP_COLUMNS)


def _window_metrics(result: FairnessResult) -> None:
    def number(value: float | None) -> str:
        return MISSING if value is None else f"{value:.3f}"

    c1, c2, c3 = st.columns(3)
    c1.metric("Demographic parity difference", number(result.demographic_parity_difference))
    c2.metric("Equalized odds difference", number(result.equalized_odds_difference))
    ratio = result.disparate_impact_ratio
    c3.metric("Disparate impact ratio", number(ratio),
              delta="passes four-fifths" if ratio is not None and ratio >= 0.8 else
              ("fails four-fifths" if ratio is not None else None),
              delta_color="normal" if ratio is not None and ratio >= 0.8 else "inverse",
              delta_arrow="off")  # a verdict, not a change: an up arrow beside "fails" misleads
    show(_groups_table(result), column_config={
        FAIRNESS_GROUP_COLUMNS[c]: st.column_config.NumberColumn(format="%.3f")
        for c in ("selection_rate", "tpr", "fpr")})
    st.caption("Selection rate over all rows; TPR and FPR over the rows whose label has arrived. "
               "Definitions as fairlearn's.")


def render(settings: Settings) -> None:
    name = model_picker(model_names(settings))
    mapping = settings.model(name) if name else None
    if mapping is None or not mapping.sensitive:
        st.info("Pick a model with sensitive attributes mapped in tower.yaml (`sensitive:`)." if name else
                "No monitored model yet.")
        return
    assert name is not None  # a mapping was found for it
    open_alerts_notice(settings, mapping.name, "fairness")
    mapping = segment_picker(mapping)
    segment = segment_of(mapping)
    window = day_window("Window (UTC days)", 14, key="fairness_window")
    if window is None:
        return
    attributes = list(mapping.sensitive)
    linked = st.query_params.get("sensitive")  # a fairness chip links to the group attribute it is about
    sensitive = st.selectbox("Sensitive attribute", attributes,
                             index=attributes.index(linked) if linked in attributes else 0)
    report = backends.window_report(settings, mapping, (None, None), *window)
    result = next((f for f in report.fairness if f.sensitive == sensitive), None)
    logged = result is not None and bool(result.groups)
    if result is None or not logged:
        empty_window_notice(settings, mapping, *window, source="log")
    else:
        _window_metrics(result)
    since = window[0] - pd.Timedelta(days=21)  # three weeks before the window: the trend into it
    history = backends.fairness_over_time(settings, name, since, window[1], segment)
    history = history[(history["sensitive"] == sensitive) & history["metric"].isin(DIFFERENCES)]
    if history.empty and logged:  # an empty log window was explained above; say it once
        empty_window_notice(settings, mapping, since, window[1], source="monitoring", what="fairness results")
    elif not history.empty:
        history = history.assign(metric=history["metric"].map(label))
        fig = px.line(history, x="day", y="value", color="metric", markers=True)
        fig.add_hrect(y0=0.8, y1=1.0, fillcolor="green", opacity=0.08, line_width=0,
                      annotation_text="four-fifths band (ratio)")
        fig.update_layout(height=360, margin={"t": 30}, yaxis_title="", legend_title_text="")
        st.subheader("Over time")
        st.plotly_chart(fig)


if __name__ == "__main__":
    page(render, "Fairness")
