"""Alerts: the episodes open now, and the episodes opened in a window of complete days."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from services.settings import Settings
from ui import backends
from ui.page import page
from ui.tables import ALERT_COLUMNS, ALERT_DAYS, ALERT_TIMES, RULE_LABELS, format_day, readable, show
from ui.why_views import why_links
from ui.widgets import day_window, model_names
from ui.windows import MONITOR_COMMAND

ALL = "All models"
HISTORY_DAYS = 30
DAY = timedelta(days=1)


def _table(episodes: pd.DataFrame) -> pd.DataFrame:
    return readable(episodes, ALERT_COLUMNS, days=ALERT_DAYS, times=ALERT_TIMES, values={"rule": RULE_LABELS})


CONFIG = {ALERT_COLUMNS["message"]: st.column_config.TextColumn(width="large")}


def render(settings: Settings) -> None:
    st.title("Alerts")
    model = st.selectbox("Model", [ALL, *model_names(settings)], key="model", bind="query-params")
    chosen = None if model == ALL else model
    active = backends.alerts(settings, chosen, True)
    span = backends.alert_span(settings, chosen)
    st.metric("Open alerts", len(active))
    if active.empty:
        st.success("No alert is open." if span is not None else
                   f"No alert yet. Alerts are raised by `{MONITOR_COMMAND}`.")
    else:
        show(_table(active), column_config=CONFIG)
        why_links(active)  # root cause (issue 14): "Why?" per drift or performance episode
    if span is None:
        return
    st.subheader("History")
    window = day_window("Opened in (UTC days)", HISTORY_DAYS, key="alerts_window")
    if window is None:
        return
    history = backends.alert_history(settings, chosen, *window)
    if history.empty:
        # Say what there is: the history is not empty, only this window of it.
        first, last = format_day(span[0]), format_day(span[1])
        when = f"on {first}" if first == last else f"from {first} to {last}"
        st.info(f"No alert was opened between {format_day(window[0])} and {format_day(window[1] - DAY)}; "
                f"the episodes on record were opened {when}.")
        return
    show(_table(history), column_config=CONFIG)


if __name__ == "__main__":
    page(render)
