"""Backends stopped or stalled mid-use, through a loopback proxy in front of the real server: each
page says within 10 s what is unavailable and since when, keeps what it can, recovers by itself,
and a decision attempted meanwhile is refused clearly, never lost or recorded twice."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import psycopg
import pytest
import streamlit as st

from services.auth.identity import actor_from_claims, auth_config
from services.demo.identities import DEMO_USERS
from services.errors import TowerError
from services.governance import promotion, review_state
from services.settings import load_settings
from services.wiring import governance_context
from tests.support.app_test import open_page, texts
from tests.support.databases import POSTGRES_URL, ensure_postgres
from tests.support.live_app import CHROMIUM, CHROMIUM_ARGS, chromium_available, live_app, sign_in
from tests.support.mlflow_server import run_mlflow_server
from tests.support.tcp_proxy import FaultyProxy

BOUND_S = 10.0
COOLDOWN_S = 10.5  # the outage board asks a down store again after 10 s


def actor(sub: str, settings):
    user = next(u for u in DEMO_USERS if u.sub == sub)
    return actor_from_claims({"iss": "http://idp", **user.claims()}, auth_config(settings))


def timed_page(page: str, **query: str):
    st.cache_data.clear()  # as if the cached answers had expired: the page must ask the backend
    started = time.monotonic()
    at = open_page(page, **query)
    return at, time.monotonic() - started


@pytest.fixture
def registry_proxy(demo_dir, monkeypatch) -> Iterator[FaultyProxy]:
    with run_mlflow_server(f"sqlite:///{demo_dir / 'mlflow.db'}", demo_dir / "served-artifacts") as url:
        proxy = FaultyProxy("127.0.0.1", urlparse(url).port)
        monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{proxy.port}")
        try:
            yield proxy
        finally:
            proxy.close()


@pytest.mark.parametrize("fault", ["stopped", "stalled"])
def test_a_registry_outage_is_named_within_ten_seconds_with_its_start(registry_proxy, fault):
    at, _ = timed_page("app_pages/model.py", model="credit-risk")
    assert not at.error and not at.exception
    registry_proxy.down() if fault == "stopped" else registry_proxy.slow(60)
    at, elapsed = timed_page("app_pages/model.py", model="credit-risk")
    assert elapsed < BOUND_S, f"the page took {elapsed:.1f} s"
    assert not at.exception
    said = texts(at, ("error",))
    assert "MLFLOW_TRACKING_URI" in said and "Unavailable since" in said


def test_pages_keep_what_they_can_and_recover_when_the_registry_returns(registry_proxy):
    registry_proxy.down()
    at, elapsed = timed_page("app_pages/fleet.py")
    assert elapsed < BOUND_S
    table = at.dataframe[0].value.set_index("Model")
    assert (table["Requests (7 d)"] > 0).all(), "the warehouse columns survive a registry outage"
    latency, _ = timed_page("app_pages/latency.py", model="fraud-detection")
    assert latency.dataframe and not latency.exception
    registry_proxy.up()
    time.sleep(COOLDOWN_S)
    at, _ = timed_page("app_pages/model.py", model="credit-risk")
    assert not at.error and not at.exception
    assert len(at.dataframe[0].value) >= 3


def test_a_decision_during_a_registry_outage_is_refused_and_not_recorded(registry_proxy):
    settings = load_settings()
    ctx = governance_context(settings)
    outcome = promotion.request_promotion(ctx, actor("carol", settings), "fraud-detection", "5", "Production",
                                          "restores latency")
    registry_proxy.down()
    with pytest.raises(TowerError, match="MLFLOW_TRACKING_URI|tracking"):
        promotion.approve(ctx, actor("adam", settings), outcome.request.id, "ok", "accepted")
    assert review_state.get_request(ctx, outcome.request.id).approvals == ()
    registry_proxy.up()
    done = promotion.approve(ctx, actor("adam", settings), outcome.request.id, "ok", "accepted")
    again = promotion.approve(ctx, actor("adam", settings), outcome.request.id, "ok", "accepted")
    assert done.promoted and done.projection_error is None
    assert not again.created, "a retry after the outage must not record the decision twice"


@pytest.fixture
def tower_proxy(demo_dir, monkeypatch) -> Iterator[FaultyProxy]:
    if ensure_postgres() is None:
        pytest.skip("no PostgreSQL server can run on this machine")
    name = f"tower_fault_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    proxy = FaultyProxy("127.0.0.1", 5432)
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
    monkeypatch.setenv("TOWER_DB_URL", f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{name}")
    try:
        yield proxy
    finally:
        proxy.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_tower_state_outage_is_named_and_a_request_meanwhile_is_refused(tower_proxy):
    settings = load_settings()
    ctx = governance_context(settings)
    at, _ = timed_page("app_pages/alerts.py")
    assert not at.exception and not at.error
    tower_proxy.down()
    at, elapsed = timed_page("app_pages/alerts.py")
    assert elapsed < BOUND_S and not at.exception
    assert "TOWER_DB_URL" in texts(at, ("error",))
    with pytest.raises(TowerError):
        promotion.request_promotion(ctx, actor("carol", settings), "fraud-detection", "5", "Production", "now")
    tower_proxy.up()
    assert review_state.list_requests(ctx) == [], "the refused request must not have been recorded"
    promotion.request_promotion(ctx, actor("carol", settings), "fraud-detection", "5", "Production", "now")
    assert len(review_state.list_requests(ctx)) == 1
    time.sleep(COOLDOWN_S)
    at, _ = timed_page("app_pages/alerts.py")
    assert not at.error, "the page recovers by itself once the tower state answers again"


@pytest.mark.skipif(not chromium_available(),
                    reason="Debian's chromium is not installed (make test installs it when run as root)")
def test_an_open_page_redraws_by_itself_when_the_registry_returns_and_a_healthy_page_keeps_no_timer(
        demo_dir, registry_proxy):
    from playwright.sync_api import sync_playwright

    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{registry_proxy.port}"}
    with live_app(demo_dir, env=env) as app, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        runs: list[str] = []
        page.on("websocket", lambda ws: ws.on("framesent", lambda frame: runs.append("sent")))
        sign_in(page, app, "vera")
        page.goto(app.url + "/model?model=credit-risk")
        page.get_by_text("Probability that a retail credit applicant").first.wait_for(timeout=30_000)
        sent = len(runs)
        page.wait_for_timeout(12_000)  # longer than the watcher's period
        assert len(runs) == sent, "a healthy page asked the server to rerun on a timer"

        registry_proxy.down()
        page.goto(app.url + "/model?model=fraud-detection")  # not cached yet: asks the registry
        page.get_by_text("Unavailable since").first.wait_for(timeout=30_000)
        registry_proxy.up()
        # No click, no reload: the page's own watcher finds the registry back and redraws.
        page.get_by_text("Scores card transactions for fraud").first.wait_for(timeout=45_000)
        assert page.get_by_text("Unavailable since").count() == 0
        browser.close()
