"""Sign-in page: the only page a visitor sees until signed in when an identity provider is set."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from services.demo.identities import DEMO_USERS
from services.settings import Settings
from ui.page import page


def render(settings: Settings) -> None:
    st.title("ML Control Tower")
    st.write("Sign in with your organisation's identity provider to see the fleet, review promotions "
             "and read the audit trail.")
    if st.button("Sign in", type="primary", icon=":material/login:"):
        st.login()
    if settings.demo:
        st.subheader("Demo users")
        st.caption("The demo's local identity provider offers these people: press Sign in, then pick one. "
                   "Their groups become tower roles through tower.yaml (auth.roles).")
        st.dataframe(pd.DataFrame([{"user": u.sub, "name": u.name, "groups": ", ".join(u.groups), "who": u.note}
                                   for u in DEMO_USERS]), hide_index=True)


if __name__ == "__main__":
    page(render)
