"""The browser tests share one live app (streamlit run + the demo's OIDC provider) and one Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.live_app import CHROMIUM, CHROMIUM_ARGS, LiveApp, live_app_on_copy


@pytest.fixture(scope="package")
def app(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    with live_app_on_copy(demo_template, tmp_path_factory.mktemp("live")) as running:
        yield running


@pytest.fixture(scope="package")
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
