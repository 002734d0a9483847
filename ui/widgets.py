"""Widgets shared by several pages."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from services.errors import TowerError
from services.mapping import ModelMapping
from services.settings import Settings
from ui import backends
from ui.notices import show_error


def model_names(settings: Settings) -> list[str]:
    """Registered models, or the configured ones when the registry cannot be read (with a notice)."""
    try:
        return [m.name for m in backends.list_models(settings)]
    except TowerError as err:
        show_error(err)
        return sorted(settings.models)


def model_picker(names: list[str]) -> str | None:
    """A model chooser kept in the URL (?model=…), so a page can be linked to and reloaded."""
    if not names:
        return None
    return st.selectbox("Model", names, key="model", bind="query-params")


def day_window(label: str, days: int, *, key: str) -> tuple[datetime, datetime] | None:
    """A [start, end) window of whole UTC days ending yesterday by default; None until complete."""
    today = datetime.now(UTC).date()
    picked = st.date_input(label, (today - timedelta(days=days), today - timedelta(days=1)), max_value=today,
                           key=key)
    if not isinstance(picked, tuple) or len(picked) != 2:
        st.info("Pick the last day of the window.")
        return None
    return datetime.combine(picked[0], time()), datetime.combine(picked[1] + timedelta(days=1), time())


def reference_picker(mapping: ModelMapping) -> tuple[datetime | None, datetime | None] | None:
    """The configured reference, or a period of the log chosen by the user."""
    configured = (f"Reference table {mapping.reference.table}" if mapping.reference.table
                  else f"Configured period {mapping.reference.start} – {mapping.reference.end}")
    choice = st.radio("Reference", [configured, "A period of the log"], horizontal=True)
    if choice == configured:
        return None, None
    return day_window("Reference period (UTC days)", 7, key="reference_period")
