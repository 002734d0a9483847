"""How a page runs: with the settings app.py read for this run, and any TowerError shown in one place.

app.py reads the settings once per run and runs the navigation inside :func:`running`; each page
script ends with ``page(render)``, so a page never reads tower.yaml itself and never needs its own
``try/except TowerError``. A section that should fail on its own (one tab of two) uses
:func:`errors_shown`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from services.errors import TowerError
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


def page(render: Callable[[Settings], None]) -> None:
    """Run a page's ``render`` with this run's settings; a TowerError ends the page with its message."""
    with errors_shown():
        render(settings())
