"""The alert workflow in Chromium, on its own copy of the demo: a data scientist acknowledges, assigns,
snoozes and resolves an alert; a viewer sees no action; a data scientist removed from the group at the
identity provider, whose page still shows the actions (drawn from the sign-in cookie), is refused by
the server at the write. Each outcome is checked in the tower-state file."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.settings import load_settings
from tests.support.live_app import LiveApp, chromium_available, keep, live_app_on_copy, sign_in

pytestmark = pytest.mark.skipif(not chromium_available(),
                                reason="Debian's chromium is not installed (make test installs it when run as root)")


@pytest.fixture(scope="module")
def workflow_app(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    with live_app_on_copy(demo_template, tmp_path_factory.mktemp("alert-workflow")) as running:
        yield running


def tower_rows(app: LiveApp, sql: str) -> list[tuple]:
    url = load_settings({"TOWER_DATA_DIR": str(app.data_dir)}).tower_db_url
    with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
        return con.execute(sql).fetchall()


def settle(page) -> None:
    page.wait_for_timeout(600)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=60_000)


def submit(page, tab: str, button: str) -> None:
    page.get_by_role("tab", name=tab, exact=True).click()
    page.get_by_role("button", name=button, exact=True).click()
    settle(page)


def test_a_data_scientist_acknowledges_assigns_snoozes_and_resolves_an_alert(workflow_app, page):
    sign_in(page, workflow_app, "sam", path="/alerts?model=credit-risk")
    page.get_by_role("heading", name="Act on an alert").wait_for(timeout=60_000)
    settle(page)
    submit(page, "Acknowledge", "Acknowledge")
    page.get_by_text("Alert acknowledged").wait_for(timeout=30_000)
    page.get_by_role("tab", name="Assign", exact=True).click()
    page.get_by_label("Assign to").fill("Rita Alvarez")
    submit(page, "Assign", "Assign")
    page.get_by_text("Alert assigned").wait_for(timeout=30_000)
    submit(page, "Snooze", "Snooze")
    page.get_by_text("Alert snoozed").wait_for(timeout=30_000)
    page.get_by_role("tab", name="Resolve", exact=True).click()
    page.get_by_label("Comment (required to resolve)").fill("Retrained on the new bureau feed.")
    submit(page, "Resolve", "Resolve")
    page.get_by_text("Alert resolved").wait_for(timeout=30_000)
    rows = tower_rows(workflow_app, "SELECT episode_id, seq, action, actor_subject, assignee, comment "
                                    "FROM alert_actions ORDER BY id")
    episode = rows[0][0]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (episode, 1, "acknowledge", "sam"), (episode, 2, "assign", "sam"), (episode, 3, "snooze", "sam"),
        (episode, 4, "resolve", "sam")]
    assert rows[1][4] == "Rita Alvarez" and rows[3][5] == "Retrained on the new bureau feed."
    assert tower_rows(workflow_app, f"SELECT status, workflow FROM alert_episodes WHERE id = {episode}") == \
        [("resolved", "resolved")]
    page.get_by_role("tab", name="History", exact=True).click()
    page.get_by_role("heading", name="What people did").wait_for(timeout=30_000)
    keep(page, "alert_workflow_data_scientist")


def test_a_viewer_sees_the_worklist_and_no_action(workflow_app, page):
    sign_in(page, workflow_app, "vera", path="/alerts")
    page.get_by_role("tab", name="Worklist", exact=True).wait_for(timeout=60_000)
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)
    settle(page)
    assert page.get_by_role("heading", name="Act on an alert").count() == 0
    for label in ("Acknowledge", "Snooze", "Assign", "Resolve"):
        assert page.get_by_role("button", name=label, exact=True).count() == 0
    keep(page, "alert_workflow_viewer")


def test_a_data_scientist_removed_from_the_group_is_refused_by_the_server(workflow_app, page):
    before = tower_rows(workflow_app, "SELECT COUNT(*) FROM alert_actions")
    sign_in(page, workflow_app, "sam", path="/alerts?model=loan-approval")
    page.get_by_role("heading", name="Act on an alert").wait_for(timeout=60_000)
    settle(page)
    sam = {"name": "Sam Lee", "email": "sam@demo.tower.invalid", "groups": []}
    urllib.request.urlopen(urllib.request.Request(  # the directory removes him from the data scientists
        f"{workflow_app.oidc_url}/users/sam", data=json.dumps(sam).encode(), method="PUT",
        headers={"Content-Type": "application/json"}), timeout=10)
    # The page still offers the actions (drawn from his 30-day cookie); the write asks the provider again.
    submit(page, "Acknowledge", "Acknowledge")
    page.get_by_text("may not act on alerts", exact=False).first.wait_for(timeout=60_000)
    assert page.get_by_text("Alert acknowledged").count() == 0
    assert tower_rows(workflow_app, "SELECT COUNT(*) FROM alert_actions") == before
    keep(page, "alert_workflow_refused")
