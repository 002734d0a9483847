"""Widgets shared by several pages."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from services.errors import TowerError
from services.mapping import ModelMapping
from services.monitoring.reference_period import (
    Period,
    ReferenceChoice,
    configured_log_period,
    configured_reference_text,
    default_reference_period,
    overlaps,
    period_text,
    reference_overlap,
)
from services.segments import OVERALL
from services.settings import Settings
from ui import backends
from ui.notices import literal, show_error


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


WHOLE_POPULATION = "all"  # the segment picker's value for every row


def segment_picker(mapping: ModelMapping) -> ModelMapping:
    """The mapping of the segment chosen, kept in the URL (?segment=…); the whole population when the
    model declares no segment, or the link names one it does not have."""
    if not mapping.segments:
        return mapping
    options = [WHOLE_POPULATION, *(s.name for s in mapping.segments)]
    wanted = st.session_state.get("segment", st.query_params.get("segment", WHOLE_POPULATION))
    if wanted not in options:  # another model's segment, or a link naming none of this model's
        st.session_state["segment"] = WHOLE_POPULATION
    # No format_func: a widget bound to the URL matches ?segment= against the label it shows.
    chosen = st.selectbox("Segment", options, key="segment", bind="query-params",
                          help="A sub-population declared in tower.yaml (models.<name>.segments); 'all' is every row.")
    picked = mapping.for_segment(None if chosen == WHOLE_POPULATION else chosen)
    if picked.segment is not None:
        st.caption(f"Segment {literal(picked.segment.describe())}: every number below is computed on its rows only, "
                   "against its own reference rows.")
    return picked


def segment_of(mapping: ModelMapping) -> str:
    """The stored results' segment name of a mapping (``OVERALL`` for the whole population)."""
    return mapping.segment.name if mapping.segment is not None else OVERALL


def linked_start(raw: str | None, today: date) -> date | None:
    """The ``?start=YYYY-MM-DD`` a health chip links with, when it is a complete day before today."""
    try:
        start = date.fromisoformat(raw or "")
    except ValueError:  # absent, hostile or oddly spelled: the page's own default stands
        return None
    return start if start < today else None


def day_window(label: str, days: int, *, key: str, linkable: bool = True) -> tuple[datetime, datetime] | None:
    """A [start, end) window of whole UTC days ending yesterday by default; None until complete.
    A linkable window opened from a link with ``?start=`` starts that day instead (a chip links to the
    day before an alert's onset), still ending yesterday."""
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days)
    if linkable:
        first = linked_start(st.query_params.get("start"), today) or first
    return _days_picked(label, (first, today - timedelta(days=1)), key=key, what="window")


def _days_picked(label: str, default: tuple[date, date], *, key: str, what: str) -> tuple[datetime, datetime] | None:
    """A date-range input of whole UTC days as a [start, end) window; None until both ends are picked."""
    picked = st.date_input(label, default, max_value=datetime.now(UTC).date(), key=key)
    if not isinstance(picked, tuple) or len(picked) != 2:
        st.info(f"Pick the last day of the {what}.")
        return None
    return datetime.combine(picked[0], time()), datetime.combine(picked[1] + timedelta(days=1), time())


LOG_PERIOD = "A period of the log"


def reference_picker(mapping: ModelMapping, window: Period) -> ReferenceChoice | None:
    """The configured reference (None, None), or a period of the log chosen by the user.

    None while the period is incomplete or when it overlaps ``window`` (refused with both periods
    named, since the window would be compared partly with itself). The period defaults to the one
    just before the window; the widget is keyed on the window so that default follows a new window."""
    configured = "Configured: " + configured_reference_text(mapping).removeprefix("the ")
    choice = st.radio("Reference", [configured, LOG_PERIOD], horizontal=True, key="drift_reference")
    if choice == configured:
        period = configured_log_period(mapping)
        if period and overlaps(period, window):  # tower.yaml's choice: compare, but say why drift may read low
            st.warning(f"The configured reference period {period_text(period)} overlaps the window "
                       f"{period_text(window)}: on the days they share, drift reads smaller than it is.", icon="⚠️")
        return None, None
    start, end = default_reference_period(window)
    period = _days_picked("Reference period (UTC days)", (start.date(), (end - timedelta(days=1)).date()),
                          key=f"reference_period:{window[0]:%Y%m%d}-{window[1]:%Y%m%d}", what="reference period")
    if period is None:
        return None
    problem = reference_overlap(period, window)
    if problem:
        st.error(problem, icon="🚫")
        return None
    return period
