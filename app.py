"""ML Control Tower: the entry script. Settings, the login gate, the actor, the pages, st.navigation.

Pages live in app_pages/ (not pages/, see docs/ARCHITECTURE.md) and are registered from their files so
that AppTest and deep links both reach them only through this gate.
"""

from __future__ import annotations

import streamlit as st

from services.errors import ConfigError
from services.wiring import load_settings
from ui import backends
from ui.notices import literal, show_error
from ui.page import running
from ui.recovery import recovered
from ui.session import current_actor, sign_in

st.set_page_config(page_title="ML Control Tower", page_icon=":material/flight_takeoff:", layout="wide")

try:
    settings = load_settings()
except ConfigError as err:
    st.title("ML Control Tower")
    show_error(err)
    st.stop()

actor = current_actor(settings)
if actor is None:  # sign-in is configured and nobody is signed in: the login page is all there is
    with running(settings):
        st.navigation([st.Page("app_pages/login.py", title="Sign in", icon=":material/login:")]).run()
    st.stop()

monitor = [
    st.Page("app_pages/fleet.py", title="Fleet", icon=":material/dashboard:", url_path="fleet", default=True),
    st.Page("app_pages/model.py", title="Model detail", icon=":material/account_tree:", url_path="model"),
    st.Page("app_pages/latency.py", title="Latency", icon=":material/speed:", url_path="latency"),
    st.Page("app_pages/drift.py", title="Drift explorer", icon=":material/ssid_chart:", url_path="drift"),
    st.Page("app_pages/fairness.py", title="Fairness", icon=":material/balance:", url_path="fairness"),
    st.Page("app_pages/performance.py", title="Performance", icon=":material/trending_up:", url_path="performance"),
    st.Page("app_pages/alerts.py", title="Alerts", icon=":material/notifications:", url_path="alerts"),
]
# Navigation shows each role its pages; the pages check the role again, the services at every write.
govern = []
if actor.has_role("model_owner", "admin"):
    govern.append(st.Page("app_pages/promotions.py", title="Promotions", icon=":material/upgrade:",
                          url_path="promotions"))
if actor.has_role("reviewer", "admin"):
    govern.append(st.Page("app_pages/review.py", title="Review queue", icon=":material/fact_check:",
                          url_path="review"))
govern.append(st.Page("app_pages/audit.py", title="Audit trail", icon=":material/history:", url_path="audit"))
with st.sidebar:
    if actor.authenticated:
        st.markdown(f"Signed in as **{literal(actor.name)}**  \n"
                    f"Roles: {literal(', '.join(sorted(actor.roles))) or 'none (read-only)'}")
        if st.button("Sign out", icon=":material/logout:"):
            st.logout()
    else:
        problem = sign_in(settings).problem
        st.info("Read-only: no identity provider is configured, so nobody can request or approve "
                "promotions. Add an [auth] section to .streamlit/secrets.toml to enable sign-in."
                + (f"  \n{literal(problem)}" if problem else ""), icon=":material/lock:")
    if settings.demo:
        st.caption("Demo mode: embedded registry and warehouse.")
with running(settings):  # the pages get these settings: tower.yaml is read once per run
    st.navigation({"Monitor": monitor, "Govern": govern}).run()


@st.fragment(run_every=10)
def _recover_when_backends_return() -> None:
    """While a backend is down, look again every 10 s and redraw the page once it answers."""
    outages = backends.board().current(backends.targets(settings))
    if not outages:
        return
    if recovered(settings, outages):
        st.rerun(scope="app")
    st.caption("Waiting for " + ", ".join(o.backend for o in outages) + " to come back…")


# Only a page that has just met an outage keeps the timer: a fragment not called in a full run is
# dropped, so the healthy pages of every open session do not rerun (server and browser) every 10 s.
if backends.board().current(backends.targets(settings)):
    _recover_when_backends_return()
