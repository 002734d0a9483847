"""A health chip's link opens its page already set: the model, the group attribute behind a fairness
alert, and a window that starts the day before the alert's onset (complete days, ending yesterday)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from services.monitoring.health_chips import health_chips
from services.settings import load_settings
from tests.support.app_test import DEMO_MODELS, open_page, texts
from ui.navigation import BY_PATH
from ui.widgets import linked_start

pytestmark = pytest.mark.both_backends
PAGES = ("fairness", "latency", "performance")


def linked_chips(demo_env):
    engine = sa.create_engine(load_settings().tower_db_url)
    try:
        return [c for m in sorted(DEMO_MODELS) for c in health_chips(engine, m)
                if c.status in ("alert", "warning") and c.page in PAGES]
    finally:
        engine.dispose()


def sensitive_picked(at) -> str:
    return next(s for s in at.selectbox if s.label == "Sensitive attribute").value


def test_each_chip_opens_its_page_at_the_model_the_group_and_the_onset(demo_env):
    chips = linked_chips(demo_env)
    assert {c.page for c in chips} >= {"fairness", "latency"}, "the demo's stories raise these alerts"
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    for chip in chips:
        at = open_page(BY_PATH[chip.page].file, **chip.params)
        assert not at.exception, chip
        assert at.selectbox(key="model").value == chip.params["model"]
        window = at.date_input[0].value
        assert window == (date.fromisoformat(chip.params["start"]), yesterday), chip
        if chip.page == "fairness":
            assert sensitive_picked(at) == chip.params["sensitive"], chip
        if chip.status == "alert":  # the reason is stated where the chip lands
            assert chip.text in texts(at, ("warning",)), chip


def test_a_page_opened_without_a_start_keeps_its_own_default_window(demo_env):
    at = open_page("app_pages/fairness.py", model="credit-risk")
    today = datetime.now(UTC).date()
    assert at.date_input[0].value == (today - timedelta(days=14), today - timedelta(days=1))


@pytest.mark.parametrize("raw", ["", "yesterday", "2026-13-45", "9999-01-01", "2026-01-01'; DROP TABLE x;--",
                                 "x" * 100_000])
def test_a_hostile_or_future_start_is_ignored(raw):
    assert linked_start(raw, date(2026, 12, 3)) is None


def test_a_start_before_today_is_taken_and_today_itself_is_not():
    assert linked_start("2026-11-20", date(2026, 12, 3)) == date(2026, 11, 20)
    assert linked_start("2026-12-03", date(2026, 12, 3)) is None


def test_the_fairness_page_opens_at_the_linked_attribute_not_the_first(demo_env):
    model, attributes = next((name, list(m.sensitive)) for name, m in sorted(load_settings().models.items())
                             if len(m.sensitive) >= 2)
    at = open_page("app_pages/fairness.py", model=model, sensitive=attributes[-1])
    assert sensitive_picked(at) == attributes[-1]
    at = open_page("app_pages/fairness.py", model=model, sensitive="no-such-attribute")
    assert not at.exception and sensitive_picked(at) == attributes[0]
