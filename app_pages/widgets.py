"""Widgets shared by several pages."""

from __future__ import annotations

import streamlit as st

from app_pages import cached
from app_pages.notices import show_error
from services.errors import TowerError
from services.settings import Settings


def model_names(settings: Settings) -> list[str]:
    """Registered models, or the configured ones when the registry cannot be read (with a notice)."""
    try:
        return [m.name for m in cached.list_models(settings)]
    except TowerError as err:
        show_error(err)
        return sorted(settings.models)


def model_picker(names: list[str]) -> str | None:
    """A model chooser kept in the URL (?model=…), so a page can be linked to and reloaded."""
    if not names:
        return None
    return st.selectbox("Model", names, key="model", bind="query-params")
