"""How a page runs: its title at once, its data work behind this process's gate, with the settings
app.py read for this run, and any TowerError shown in one place.

app.py reads the settings once per run and runs the navigation inside :func:`running`; each page
script ends with ``page(render, title)``, so a page never reads tower.yaml itself and never needs its
own ``try/except TowerError``. A section that should fail on its own (one tab of two) uses
:func:`errors_shown`.

The title goes out before any data work; ``render`` then waits for one of the process's
``page_run_slots`` (services/run_gate.py): with many sessions starting at once, the runs past the gate
have the GIL to themselves and the others sleep, so every page's title reaches its browser at once
instead of with the last page (bench/RESULTS.md, protocol load).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import streamlit as st

from services.errors import TowerError
from services.run_gate import process_gate
from services.settings import Settings
from ui.notices import show_error

_SETTINGS: ContextVar[Settings] = ContextVar("tower_settings")


@contextmanager
def running(settings: Settings) -> Iterator[None]:
    """Pages run within this block see ``settings`` (the script thread's context, so sessions never mix)."""
    token = _SETTINGS.set(settings)
    try:
        yield
    finally:
        _SETTINGS.reset(token)


def settings() -> Settings:
    """This run's settings. Outside a run started by app.py (a widget callback, a fragment's own
    rerun) they are read again, so such code still works, only without the saving."""
    try:
        return _SETTINGS.get()
    except LookupError:
        from services.wiring import load_settings

        return load_settings()


@contextmanager
def errors_shown() -> Iterator[None]:
    """A TowerError inside the block becomes the service's message on the page, never a traceback."""
    try:
        yield
    except TowerError as err:
        show_error(err)


_WAIT_NOTE_AFTER_S = 2.0  # a short wait passes unseen; a longer one says why the page is still empty
_CHECK_KEY = "_tower_gate_check"


@contextmanager
def gated(slots: int) -> Iterator[None]:
    """Hold one of this process's ``slots`` page-run slots for the block.

    A run waiting here must stay stoppable: Streamlit stops or restarts a run (the browser left, or
    asked for another page) by raising StopException / RerunException inside the script thread at its
    next yield point, and in Streamlit 1.67 every touch of ``st.session_state`` is one
    (SafeSessionState's yield callback). So the wait looks at the session state between polls; the
    exception leaves the queue (services/run_gate.py), and a run holding a slot gives it back however
    it ends (tests/ui/test_page_gate.py pins both on a real server)."""
    started = time.monotonic()
    note = None

    def checkpoint() -> None:
        nonlocal note
        _ = _CHECK_KEY in st.session_state  # a yield point: raises if this run was stopped or superseded
        if note is None and time.monotonic() - started > _WAIT_NOTE_AFTER_S:
            note = st.empty()
            note.caption("Many pages are loading at once on this server; this one starts in a moment…")

    with process_gate(slots).slot(checkpoint):
        if note is not None:
            note.empty()
        yield


def page(render: Callable[[Settings], None], title: str) -> None:
    """Draw the page's ``title``, then run its ``render`` with this run's settings behind the process's
    gate; a TowerError ends the page with its message."""
    st.title(title)
    run_settings = settings()
    with gated(run_settings.page_run_slots), errors_shown():
        render(run_settings)
