"""Alerts: the episodes open now, and every episode of the past."""

from __future__ import annotations

import streamlit as st

from services.errors import TowerError
from services.settings import load_settings
from ui import backends
from ui.notices import show_error
from ui.widgets import model_names

ALL = "All models"
SHOWN = ["model", "rule", "subject", "status", "opened_window", "last_window", "resolved_window", "value",
         "threshold", "message", "notified_at", "notify_error"]


def render() -> None:
    st.title("Alerts")
    settings = load_settings()
    model = st.selectbox("Model", [ALL, *model_names(settings)], key="model", bind="query-params")
    chosen = None if model == ALL else model
    try:
        active = backends.alerts(settings, chosen, True)
        history = backends.alerts(settings, chosen, False)
    except TowerError as err:
        show_error(err)
        return
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
    render()
