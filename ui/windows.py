"""The one window rule, and what a page says when its window holds nothing.

Every page's default window is whole UTC days ending with yesterday, the last complete day: a
partial current day reads as a traffic drop, and the monitoring job only computes complete days.
An empty window names the days the prediction log does hold, so the user can pick a window inside
it; only when the log has predictions there and the page reads stored results does it say that
monitoring has not run, because only then would running the job help.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import streamlit as st

from services.errors import TowerError
from services.mapping import ModelMapping
from services.settings import Settings
from ui import backends
from ui.notices import literal, show_error
from ui.tables import DAY_FORMAT

MONITOR_COMMAND = "tower monitor run"
# What the page reads for its window: the prediction log itself, or results the job stored from it.
Source = Literal["log", "monitoring"]


@dataclass(frozen=True)
class EmptyWindow:
    """What to tell the user: plain text (escaped when shown) and a command only when it would help."""

    text: str
    command: str | None = None


def complete_days(days: int, *, today: date | None = None) -> tuple[datetime, datetime]:
    """The ``[start, end)`` naive-UTC window of the ``days`` complete days ending yesterday."""
    end = datetime.combine(today or datetime.now(UTC).date(), time())
    return end - timedelta(days=days), end


def _days(start: datetime, end: datetime) -> tuple[str, str]:
    """A half-open window as its first and last day."""
    return f"{start:{DAY_FORMAT}}", f"{end - timedelta(microseconds=1):{DAY_FORMAT}}"


def empty_window(model: str, start: datetime, end: datetime, bounds: tuple[datetime, datetime] | None, *,
                 source: Source, what: str = "predictions") -> EmptyWindow:
    """Why the window ``[start, end)`` of ``model`` shows nothing, given the log's first and last
    prediction (``bounds``; None for an empty log). ``what`` names what the page looked for."""
    first_day, last_day = _days(start, end)
    between = f"between {first_day} and {last_day}"
    if bounds is None:
        return EmptyWindow(f"The prediction log of {model} is empty: no prediction has been logged yet, "
                           "so there is nothing to show for any window.")
    held = f"{bounds[0]:{DAY_FORMAT}} to {bounds[1]:{DAY_FORMAT}}"
    if start > bounds[1] or end <= bounds[0]:
        return EmptyWindow(f"No {what} of {model} {between}: the log holds {held}; pick a window inside it.")
    if source == "monitoring":
        return EmptyWindow(f"Monitoring has not run for {model} {between}: the log holds predictions from "
                           f"{held}, but no {what} are stored for this window.", MONITOR_COMMAND)
    return EmptyWindow(f"No {what} of {model} {between}, although the log holds {held}: "
                       "the log has a gap there.")


def empty_window_notice(settings: Settings, mapping: ModelMapping, start: datetime, end: datetime, *,
                        source: Source, what: str = "predictions") -> None:
    """Say why the window is empty (see :func:`empty_window`); an unreachable warehouse is shown as
    the outage it is, since then nothing can be said about the log."""
    try:
        bounds = backends.log_bounds(settings, mapping)
    except TowerError as err:
        show_error(err)
        return
    said = empty_window(mapping.name, start, end, bounds, source=source, what=what)
    hint = f"  \nRun `{said.command}` to compute it." if said.command else ""
    st.info(literal(said.text) + hint, icon=":material/date_range:")
