"""A Streamlit page behind the real page frame (ui/page.py ``page``), for tests/ui/test_page_gate.py.

Its query says what the gated part does: ``group`` names the caller's test, ``hold`` how many seconds it
keeps its slot (looking at the session state every 50 ms, as a page drawing elements would, so a stop
or rerun reaches it), ``fail=1`` raises. The process-wide record (a cached resource) counts the runs
inside the gated part at once and which entered; ``report=<group>`` shows that group's record.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import streamlit as st

from services.settings import Settings
from ui.page import page


@st.cache_resource
def record() -> dict[str, Any]:
    return {"lock": threading.Lock(), "inside": {}, "most": {}, "entered": {}}


def render(settings: Settings) -> None:
    params, kept = st.query_params, record()
    report = params.get("report")
    if report:
        with kept["lock"]:
            st.info(f"most={kept['most'].get(report, 0)} entered={kept['entered'].get(report, 0)}")
        return
    group = params.get("group", "default")
    with kept["lock"]:
        kept["inside"][group] = kept["inside"].get(group, 0) + 1
        kept["most"][group] = max(kept["most"].get(group, 0), kept["inside"][group])
        kept["entered"][group] = kept["entered"].get(group, 0) + 1
    try:
        until = time.monotonic() + float(params.get("hold", "0"))
        while time.monotonic() < until:
            time.sleep(0.05)
            _ = "anything" in st.session_state  # a yield point, like any st.* call
        if params.get("fail"):
            raise ValueError("the gated part failed")
    finally:
        with kept["lock"]:
            kept["inside"][group] -= 1
    st.info(f"done {group}")


page(render, "Gated page")
