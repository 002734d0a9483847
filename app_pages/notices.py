"""How pages tell users what is wrong, and how they show text that came from outside."""

from __future__ import annotations

import re

import streamlit as st

from services.errors import TowerError

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def literal(text: str | None) -> str:
    """Registry and log text made inert for st.markdown: every markdown character escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text or "")


def show_error(err: TowerError, *, warning: bool = False) -> None:
    """The service's message and hint; never a traceback."""
    text = literal(err.message) + (f"  \n{literal(err.hint)}" if err.hint else "")
    if warning:
        st.warning(text, icon="⚠️")
    else:
        st.error(text, icon="🚫")
