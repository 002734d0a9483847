"""The sign-in screen: all a visitor sees until signed in, when an identity provider is set."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from services.demo.identities import DEMO_USERS
from ui.page import errors_shown, settings


def sign_in_screen(headline: str = "") -> None:
    """``headline`` names the page a deep link asked for ("Sign in to open Drift explorer.")."""
    with errors_shown():
        demo = settings().demo
        st.title("ML Control Tower")
        if headline:
            st.info(headline, icon=":material/login:")
        st.write("Sign in with your organisation's identity provider to see the fleet, review promotions "
                 "and read the audit trail.")
        if st.button("Sign in", type="primary", icon=":material/login:"):
            st.login()
        if demo:
            st.subheader("Demo users")
            st.caption("The demo's local identity provider offers these people: press Sign in, then pick one. "
                       "Their groups become tower roles through tower.yaml (auth.roles).")
            st.dataframe(pd.DataFrame([{"user": u.sub, "name": u.name, "groups": ", ".join(u.groups),
                                        "who": u.note} for u in DEMO_USERS]), hide_index=True)
