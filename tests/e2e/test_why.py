"""The "Why" panel in Chromium: two clicks from the fleet's red drift chip, and a ranked row's link
opens the drift explorer on that feature."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from app_pages.fleet import CHIP_COLUMNS, CHIP_WIDTH, MODEL_WIDTH
from tests.e2e.test_journeys import Clicks, fleet_rows, settle
from tests.support.live_app import chromium_available, keep, sign_in

pytestmark = pytest.mark.skipif(not chromium_available(),
                                reason="Debian's chromium is not installed (make test installs it when run as root)")


def test_from_the_fleet_two_clicks_reach_the_why_panel_and_a_row_opens_the_drift_explorer(app, page):
    sign_in(page, app, "vera")
    page.get_by_role("heading", name="Fleet overview").wait_for(timeout=60_000)
    rows = fleet_rows(page)
    r = next(i for i, row in enumerate(rows) if row[0] == "credit-risk")
    column = list(CHIP_COLUMNS.values()).index("Drift") + 2
    assert rows[r][column].startswith("alert"), rows[r]
    hand = Clicks(page)
    hand.cell(r, MODEL_WIDTH + CHIP_WIDTH * (column - 1) + CHIP_WIDTH / 2)  # the red drift chip
    page.wait_for_url("**/drift?**", timeout=60_000)
    settle(page)
    hand.on(page.get_by_role("link", name="Why? credit-risk: drift", exact=False).first)
    page.wait_for_url("**/why?**", timeout=60_000)
    settle(page)
    page.get_by_role("heading", name="Features ranked by drift").wait_for(timeout=90_000)
    page.get_by_role("heading", name="Segments behind the Accuracy change").wait_for(timeout=90_000)
    assert hand.count == 2
    query = parse_qs(urlparse(page.url).query)
    # The first model is the picker's default, so the URL may leave it out (as in test_journeys).
    assert query.get("model", ["credit-risk"]) == ["credit-risk"] and "start" in query and "end" in query
    keep(page, "why_panel")

    link = page.get_by_role("link", name="in the drift explorer", exact=False).first
    text = link.text_content() or ""  # the icon's ligature name, then "<feature> (<segment>) in the drift …"
    link.click()
    page.wait_for_url("**/drift?**", timeout=60_000)
    settle(page)
    (feature,) = parse_qs(urlparse(page.url).query)["feature"]
    assert f"{feature} (" in text, text
    page.get_by_role("heading", name=f"Distribution of {feature}").wait_for(timeout=90_000)
    keep(page, "why_to_drift")
