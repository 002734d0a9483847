"""Alerts: a worklist people act on (acknowledge, snooze, assign, resolve), and the history: every
action taken, and the episodes opened in a window of complete days."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import streamlit as st

from services.auth.identity import ANONYMOUS
from services.monitoring import tower_reads
from services.outages import TOWER
from services.settings import Settings
from ui import alert_worklist, backends
from ui.page import errors_shown, page
from ui.session import current_actor
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


def _episodes_opened(settings: Settings, chosen: str | None, span: tuple[datetime, datetime]) -> None:
    st.subheader("Episodes opened")
    window = day_window("Opened in (UTC days)", HISTORY_DAYS, key="alerts_window")
    if window is None:
        return
    # Read fresh, like the worklist: a status people just changed shows at once.
    history = backends.guarded(settings, TOWER, lambda: tower_reads.alert_history(backends.tower(settings), chosen,
                                                                                  *window))
    if history.empty:
        # Say what there is: the history is not empty, only this window of it.
        first, last = format_day(span[0]), format_day(span[1])
        when = f"on {first}" if first == last else f"from {first} to {last}"
        st.info(f"No alert was opened between {format_day(window[0])} and {format_day(window[1] - DAY)}; "
                f"the episodes on record were opened {when}.")
        return
    show(_table(history), column_config=CONFIG)


def render(settings: Settings) -> None:
    model = st.selectbox("Model", [ALL, *model_names(settings)], key="model", bind="query-params")
    chosen = None if model == ALL else model
    active = backends.guarded(settings, TOWER, lambda: tower_reads.open_alerts(backends.tower(settings), chosen))
    span = backends.alert_span(settings, chosen)
    st.metric("Open alerts", len(active))
    actor = current_actor(settings) or ANONYMOUS
    worklist, history = st.tabs(["Worklist", "History"])
    with worklist:
        if span is None:
            st.success(f"No alert yet. Alerts are raised by `{MONITOR_COMMAND}`.")
        else:
            with errors_shown():
                alert_worklist.worklist(settings, chosen, actor)
            why_links(active)  # root cause: a "Why?" per open drift or performance episode
    with history:
        if span is None:
            st.info(f"No alert yet. Alerts are raised by `{MONITOR_COMMAND}`.")
            return
        _episodes_opened(settings, chosen, span)
        st.subheader("What people did")
        with errors_shown():
            alert_worklist.action_log(settings, chosen)


if __name__ == "__main__":
    page(render, "Alerts")
