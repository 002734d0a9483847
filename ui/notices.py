"""How pages tell users what is wrong, and how they show text that came from outside."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import streamlit as st

from services.errors import TowerError
from services.outages import backend_of

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def literal(text: str | None) -> str:
    """Registry and log text made inert for st.markdown: every markdown character escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text or "")


def _down_since(err: TowerError) -> datetime | None:
    """When the store an unavailability error names went down (None for any other error)."""
    if backend_of(err) is None:
        return None
    from ui.backends import board, targets  # here: backends imports the pages' helpers
    from ui.page import settings

    return board().since(err, targets(settings()))


def show_error(err: TowerError, *, warning: bool = False) -> None:
    """The service's message and hint, and since when a backend is down; never a traceback."""
    text = literal(err.message) + (f"  \n{literal(err.hint)}" if err.hint else "")
    since = _down_since(err)
    if since is not None:
        minutes = int((datetime.now(UTC) - since).total_seconds() // 60)
        text += f"  \nUnavailable since {since:%Y-%m-%d %H:%M:%S} UTC ({minutes} min); retried every 10 s."
    if warning:
        st.warning(text, icon="⚠️")
    else:
        st.error(text, icon="🚫")
