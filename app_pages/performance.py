"""Performance over time as labels arrive: realised where labels are in, the CBPE estimate where they are not."""

from __future__ import annotations

import streamlit as st

from services.settings import Settings
from ui import backends
from ui.alert_notice import open_alerts_notice
from ui.page import page
from ui.performance_views import estimate_summary, performance_figure
from ui.tables import label
from ui.widgets import day_window, model_names, model_picker, segment_of, segment_picker
from ui.windows import empty_window_notice


def render(settings: Settings) -> None:
    name = model_picker(model_names(settings))
    mapping = settings.model(name) if name else None
    if name is None or mapping is None:
        st.info("No monitored model yet." if name is None else f"{name} has no prediction log mapped in tower.yaml.")
        return
    open_alerts_notice(settings, mapping.name, "performance")
    mapping = segment_picker(mapping)
    segment = segment_of(mapping)
    window = day_window("Window (UTC days)", 30, key="performance_window")
    if window is None:
        return
    frame = backends.performance_over_time(settings, name, *window, segment)
    if frame.empty:
        empty_window_notice(settings, mapping, *window, source="monitoring", what="performance results")
        return
    metrics = sorted(frame["metric"].unique())
    default = frame.loc[frame["rule_metric"], "metric"].iloc[0] if frame["rule_metric"].any() else metrics[0]
    metric = st.segmented_control("Metric", metrics, default=default, required=True, format_func=label)
    series = frame[frame["metric"] == metric].sort_values("day")
    estimates = backends.estimated_performance_over_time(settings, name, *window, segment)
    estimate = estimates[estimates["metric"] == metric]
    st.plotly_chart(performance_figure(series, estimate, label(metric)))
    st.caption("Computed only on predictions whose label has arrived. Hollow markers: provisional windows "
               "whose label coverage is still below the rule's minimum; they will move as labels arrive.")
    summary = estimate_summary(series, estimate, label(metric))
    if summary:
        st.caption(f"Dashed: estimated before labels (CBPE: the scores calibrated on the reference), band ±3 "
                   f"standard errors; replaced by the realised value once a day's labels are in. {summary}")
    elif mapping.task != "binary_classification":
        st.caption("No estimate before labels: CBPE covers binary classifiers with a score, not regressors.")
    elif "score" not in mapping.columns:
        st.caption("No estimate before labels: the model logs no score (map columns.score to estimate).")


if __name__ == "__main__":
    page(render, "Performance")
