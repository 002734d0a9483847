"""ML Control Tower: the entry script. Settings, the login gate, the actor, the pages, st.navigation.

Pages live in app_pages/ (not pages/, see docs/ARCHITECTURE.md) and are registered from their files so
that AppTest and deep links both reach them only through this gate.
"""

from __future__ import annotations

import streamlit as st

from services.errors import ConfigError
from services.wiring import load_settings
from ui import backends
from ui.navigation import resume_pending_link, signed_in_pages, signed_out_pages
from ui.notices import literal, show_error
from ui.page import running
from ui.recovery import recovered
from ui.session import current_actor, sign_in
from ui.sign_in import sign_in_screen

st.set_page_config(page_title="ML Control Tower", page_icon=":material/flight_takeoff:", layout="wide")

try:
    settings = load_settings()
except ConfigError as err:
    st.title("ML Control Tower")
    show_error(err)
    st.stop()

actor = current_actor(settings)
if actor is None:  # sign-in is configured and nobody is signed in: every URL asks to sign in first
    with running(settings):
        st.navigation(signed_out_pages(sign_in_screen), position="hidden").run()
    st.stop()

# Navigation shows each role its pages (the others' URLs explain the missing role); the pages check
# the role again, the services at every write.
sections, by_path = signed_in_pages(actor)
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
navigation = st.navigation(sections)
resume_pending_link(by_path)  # the link asked for before sign-in, once
with running(settings):  # the pages get these settings: tower.yaml is read once per run
    navigation.run()


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
