"""Alerts: the episodes open now, and every episode of the past."""

from __future__ import annotations

import streamlit as st

from services.settings import Settings
from ui import backends
from ui.page import page
from ui.widgets import model_names

ALL = "All models"
SHOWN = ["model", "rule", "subject", "status", "opened_window", "last_window", "resolved_window", "value",
         "threshold", "message", "notified_at", "notify_error"]


def render(settings: Settings) -> None:
    st.title("Alerts")
    model = st.selectbox("Model", [ALL, *model_names(settings)], key="model", bind="query-params")
    chosen = None if model == ALL else model
    active = backends.alerts(settings, chosen, True)
    history = backends.alerts(settings, chosen, False)
    st.metric("Open alerts", len(active))
    if active.empty:
        st.success("No alert is open." if not history.empty else
                   "No alert yet. Alerts are raised by `python -m services.cli monitor run`.")
    else:
        st.dataframe(active[SHOWN], hide_index=True)
    if not history.empty:
        st.subheader("History")
        st.dataframe(history[SHOWN], hide_index=True)


if __name__ == "__main__":
    page(render)
