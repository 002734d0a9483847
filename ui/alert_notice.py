"""The open alerts a monitoring page explains, stated at its top: a chip's click lands on the reason."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from services.errors import TowerError
from services.monitoring.health_chips import explaining_page
from services.settings import Settings
from ui import backends
from ui.notices import literal
from ui.why_views import why_links


def open_alerts_notice(settings: Settings, model: str, page: str) -> None:
    """One warning per open alert of ``model`` that the page at url path ``page`` explains."""
    try:
        active = backends.alerts(settings, model, True)
    except TowerError:
        return  # the page's own reads show the outage; a missing banner is not worth a second error
    if active.empty:
        return
    for _, alert in active[active["rule"].map(explaining_page) == page].iterrows():
        since = pd.Timestamp(alert["opened_window"])
        onset = f" since {since:%Y-%m-%d}" if not pd.isna(since) else ""
        st.warning(f"**Open alert{onset}:** {literal(str(alert['message']))}", icon=":material/notifications:")
        why_links(alert.to_frame().T)  # root cause (issue 14): the "Why" panel of this episode
