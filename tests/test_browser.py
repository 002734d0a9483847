"""Real browser journeys: Debian Chromium driven by Playwright against `streamlit run`, signing in
through the demo's local OIDC provider. Each journey's last screen is kept in test-artifacts/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.live_app import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, LiveApp, chromium_available, live_app

pytestmark = pytest.mark.skipif(not chromium_available(),
                                reason="Debian's chromium is not installed (make test installs it when run as root)")


@pytest.fixture(scope="module")
def app(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    data_dir = tmp_path_factory.mktemp("live") / "demo"
    shutil.copytree(demo_template, data_dir)
    with live_app(data_dir) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    yield context.new_page()
    context.close()


def sign_in(page, app: LiveApp, user: str) -> None:
    page.goto(app.url + "/")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(app.oidc_url + "/oauth2/authorize**", timeout=20_000)
    page.get_by_role("button", name=user, exact=True).click()
    page.wait_for_url(app.url + "/**", timeout=20_000)
    page.get_by_text("Signed in as").wait_for(timeout=30_000)


def keep(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_visitor_must_sign_in_and_gets_roles_from_the_identity_provider(app, page):
    page.goto(app.url + "/")
    page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
    assert page.get_by_text("Fleet overview").count() == 0
    sign_in(page, app, "rita")
    sidebar = page.locator("[data-testid='stSidebar']")
    assert "Rita Alvarez" in sidebar.inner_text() and "reviewer" in sidebar.inner_text()
    keep(page, "login_reviewer")


def test_manager_reviews_the_fleet_and_opens_the_model_over_its_slo(app, page):
    sign_in(page, app, "vera")
    page.get_by_text("Fleet overview").wait_for()
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.wait_for()
    page.wait_for_timeout(1500)  # the canvas grid paints after the element appears
    box = grid.bounding_box()
    # Rows are sorted by name; fraud-detection is the third. Click its selection cell.
    page.mouse.click(box["x"] + 16, box["y"] + 35 + 35 * 2 + 17)
    page.get_by_text("Model detail").first.wait_for()
    page.get_by_text("Scores card transactions for fraud").wait_for(timeout=30_000)
    keep(page, "manager_fleet_to_model")


def test_a_tampered_session_cookie_leaves_the_user_signed_out(app, page):
    sign_in(page, app, "adam")
    context = page.context
    cookies = context.cookies()
    auth = [c for c in cookies if c["name"].startswith("_streamlit_user")]
    assert auth, f"no Streamlit auth cookie among {[c['name'] for c in cookies]}"
    forged = [{**c, "value": c["value"][:-4] + ("AAAA" if not c["value"].endswith("AAAA") else "BBBB")} for c in auth]
    context.clear_cookies()
    context.add_cookies(forged)
    page.goto(app.url + "/")
    page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
    assert page.get_by_text("Signed in as").count() == 0
