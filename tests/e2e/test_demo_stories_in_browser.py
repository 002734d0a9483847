"""The demo's monitoring stories in Chromium, as a manager meets them on the fleet: loan-approval's
business segment breaks its latency SLO while the whole model does not, fraud-detection's estimated
performance falls while its labels have stopped, and the healthy demand-forecast shows no alert."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from app_pages.fleet import CHIP_COLUMNS, CHIP_WIDTH, MODEL_WIDTH
from tests.e2e.test_journeys import Clicks, fleet_rows, settle
from tests.support.live_app import chromium_available, keep, sign_in

pytestmark = pytest.mark.skipif(not chromium_available(),
                                reason="Debian's chromium is not installed (make test installs it when run as root)")
RED = ("alert", "critical")


def chip(rows: list[list[str]], model: str, column: str) -> tuple[int, int, str]:
    r = next(i for i, row in enumerate(rows) if row[0] == model)
    c = list(CHIP_COLUMNS.values()).index(column) + 2
    return r, c, rows[r][c]


def test_the_new_stories_are_red_on_the_fleet_and_their_chips_open_the_page_that_shows_them(app, page):
    sign_in(page, app, "vera")
    page.get_by_role("heading", name="Fleet overview").wait_for(timeout=60_000)
    rows = fleet_rows(page)
    healthy = next(row for row in rows if row[0] == "demand-forecast")
    assert not any(cell.startswith(RED) for cell in healthy[2:2 + len(CHIP_COLUMNS)]), healthy
    _, _, performance = chip(rows, "fraud-detection", "Performance")
    assert performance.startswith(RED), performance
    r, c, latency = chip(rows, "loan-approval", "Latency")
    assert latency.startswith(RED), latency
    keep(page, "stories_fleet")

    Clicks(page).cell(r, MODEL_WIDTH + CHIP_WIDTH * (c - 1) + CHIP_WIDTH / 2)  # loan-approval's latency chip
    page.wait_for_url("**/latency?**", timeout=60_000)
    settle(page)
    assert parse_qs(urlparse(page.url).query).get("segment") == ["business"]
    page.get_by_text("in segment business", exact=False).first.wait_for(timeout=60_000)
    keep(page, "stories_segment_latency")

    page.goto(f"{app.url}/performance?model=fraud-detection")
    settle(page)
    page.get_by_text("estimated before labels", exact=False).first.wait_for(timeout=90_000)
    keep(page, "stories_cbpe_performance")
