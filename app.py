"""ML Control Tower: the entry script. Settings, the actor, the pages, st.navigation.

Pages live in app_pages/ (not pages/, see DESIGN.md §2) and are registered from their files so
that AppTest and deep links both reach them through this gate.
"""

from __future__ import annotations

import streamlit as st

from app_pages.notices import show_error
from services.errors import ConfigError
from services.settings import load_settings

st.set_page_config(page_title="ML Control Tower", page_icon="🛰️", layout="wide")

try:
    settings = load_settings()
except ConfigError as err:
    st.title("ML Control Tower")
    show_error(err)
    st.stop()

pages = [
    st.Page("app_pages/fleet.py", title="Fleet", icon=":material/dashboard:", url_path="fleet", default=True),
    st.Page("app_pages/model.py", title="Model detail", icon=":material/account_tree:", url_path="model"),
    st.Page("app_pages/latency.py", title="Latency", icon=":material/speed:", url_path="latency"),
]
with st.sidebar:
    st.caption("Demo mode: embedded registry and warehouse." if settings.demo else "")
st.navigation(pages).run()
