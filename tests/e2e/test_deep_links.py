"""Every page's URL works: signed out it asks to sign in and returns there after; a role without the
page is told which role it needs; never Streamlit's "Page not found"."""

from __future__ import annotations

import pytest

from tests.support.live_app import chromium_available, keep, sign_in

pytestmark = pytest.mark.skipif(not chromium_available(),
                                reason="Debian's chromium is not installed (make test installs it when run as root)")


def main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


@pytest.mark.parametrize(("path", "title"), [("/drift?model=credit-risk", "Drift explorer"),
                                             ("/review", "Review queue"), ("/audit", "Audit trail")])
def test_a_signed_out_deep_link_asks_to_sign_in_to_that_page(app, page, path, title):
    page.goto(app.url + path)
    page.get_by_text(f"Sign in to open {title}").wait_for(timeout=30_000)
    assert "Page not found" not in page.content()
    page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)


def test_sign_in_returns_to_the_deep_link_with_its_query(app, page):
    sign_in(page, app, "sam", path="/drift?model=loan-approval")
    page.wait_for_url("**/drift?model=loan-approval", timeout=30_000)
    page.get_by_text("Drift by feature and day").wait_for(timeout=90_000)
    # The page shows the linked model, not the first one: its own reference (the production version's
    # training dataset) is named. The page streams, so wait for that line rather than read the text while
    # it is still being drawn.
    page.get_by_text("loan_approval_training", exact=False).first.wait_for(timeout=90_000)
    assert "reference_credit_risk" not in main_text(page)
    keep(page, "deep_link_after_sign_in")


def test_a_plain_sign_in_lands_on_the_fleet(app, page):
    sign_in(page, app, "vera")
    page.get_by_role("heading", name="Fleet overview").wait_for(timeout=30_000)
    assert "/fleet" in page.url or page.url.rstrip("/") == app.url


def test_a_role_without_the_page_is_told_which_role_it_needs(app, page):
    sign_in(page, app, "vera")
    page.goto(app.url + "/review")
    page.get_by_text("The review queue needs the reviewer role").wait_for(timeout=30_000)
    assert "Page not found" not in page.content()
    page.goto(app.url + "/promotions")
    page.get_by_text("Promotions needs the model_owner role").wait_for(timeout=30_000)
    sidebar = page.locator("[data-testid='stSidebar']").inner_text()
    assert "Review queue" not in sidebar and "Promotions" not in sidebar
