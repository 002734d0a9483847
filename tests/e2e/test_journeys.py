"""The three journeys of issue 12 in Chromium, each counting the clicks to its answer.

A click is a mouse click on the page: a link, a button, a grid cell, a selectbox and its option.
Typing (a justification, a comment) is not a click, and neither is signing in or switching account:
each journey starts on the screen a user lands on after sign-in. The journeys run on their own copy
of the demo, so what the other browser tests decide does not change them; their last screens are
kept in test-artifacts/journey_*.png (the README's Pages section quotes the counts)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from app_pages.fleet import CHIP_COLUMNS, CHIP_WIDTH, MODEL_WIDTH
from services.settings import load_settings
from tests.support.live_app import LiveApp, chromium_available, keep, live_app_on_copy, sign_in

pytestmark = pytest.mark.skipif(not chromium_available(),
                                reason="Debian's chromium is not installed (make test installs it when run as root)")

HEADER_PX = ROW_PX = 35  # the height of the canvas grid's header and of each row
CHIP_PAGE = {"Latency": "latency", "Errors": "latency", "Drift": "drift", "Multivariate": "drift",
             "Data quality": "drift", "Fairness": "fairness", "Performance": "performance"}
RULE_CHIP = {"drift": "Drift", "latency_p95": "Latency", "error_rate": "Errors", "fairness_dpd": "Fairness",
             "fairness_eod": "Fairness", "performance": "Performance", "multivariate_drift": "Multivariate",
             "estimated_performance_drop": "Performance", "data_quality_nulls": "Data quality",
             "data_quality_unseen": "Data quality", "data_quality_range": "Data quality"}
LAST_CHIP = 1 + len(CHIP_COLUMNS)  # the grid's columns: model, health, then one per chip


@pytest.fixture(scope="module")
def journey_app(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    with live_app_on_copy(demo_template, tmp_path_factory.mktemp("journeys")) as running:
        yield running


class Clicks:
    """The user's hand: every click goes through here and is counted."""

    def __init__(self, page) -> None:
        self.page = page
        self.count = 0

    def on(self, locator) -> None:
        locator.click()
        self.count += 1

    def cell(self, row: int, x: float) -> None:
        grid = self.page.locator("[data-testid='stDataFrame']").first.bounding_box()
        self.page.mouse.click(grid["x"] + x, grid["y"] + HEADER_PX + ROW_PX * row + ROW_PX / 2)
        self.count += 1

    def sidebar(self, title: str) -> None:
        self.on(self.page.locator("[data-testid='stSidebar']").get_by_role("link", name=title))


def settle(page) -> None:
    page.wait_for_timeout(600)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=60_000)


def open_episodes(data_dir: Path) -> list[tuple[str, str, str, str]]:
    """(model, chip column, subject, message) of every open alert, straight from the tower-state file."""
    url = load_settings({"TOWER_DATA_DIR": str(data_dir)}).tower_db_url
    with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
        rows = con.execute("SELECT model, rule, subject, message FROM alert_episodes "
                           "WHERE status != 'resolved'").fetchall()
    return [(m, RULE_CHIP[rule], subject or "", message) for m, rule, subject, message in rows]


def fleet_rows(page) -> list[list[str]]:
    """The fleet grid's first columns as the grid's accessible table holds them."""
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)
    settle(page)
    page.wait_for_timeout(2000)  # the canvas grid paints, and takes clicks, after the element appears
    rows = []
    for r in range(page.locator("[id^='glide-cell-0-']").count()):
        rows.append([page.locator(f"#glide-cell-{c}-{r}").text_content() or "" for c in range(LAST_CHIP + 1)])
    return rows


def no_refusal_offered(page) -> None:
    main = page.locator("[data-testid='stMain']").inner_text()
    assert "may not" not in main and "You may reject, not approve" not in main, main
    assert page.locator("[data-testid='stMain'] button:disabled").count() == 0


def test_manager_reaches_the_reason_of_each_unhealthy_model_in_two_clicks(journey_app, page):
    episodes = open_episodes(journey_app.data_dir)
    sign_in(page, journey_app, "vera")
    page.get_by_role("heading", name="Fleet overview").wait_for(timeout=60_000)
    unhealthy = [(r, row) for r, row in enumerate(fleet_rows(page)) if row[1] not in ("ok", "no results")]
    assert {row[0] for _, row in unhealthy} == {m for m, *_ in episodes}, "Health names every model with an alert"
    for r, row in unhealthy:
        model, health = row[0], row[1]
        hand = Clicks(page)
        column = next(i for i in range(2, LAST_CHIP + 1) if row[i].split(" ×")[0] == health)
        label = list(CHIP_COLUMNS.values())[column - 2]
        hand.cell(r, MODEL_WIDTH + CHIP_WIDTH * (column - 1) + CHIP_WIDTH / 2)
        page.wait_for_url(f"**/{CHIP_PAGE[label]}?**", timeout=60_000)
        settle(page)
        # The first model is the picker's default, so the URL may leave it out; the page names it.
        assert parse_qs(urlparse(page.url).query).get("model", [model]) == [model]
        # The reason: the page it lands on states the open alert that made the chip red.
        for message in [msg for m, chip, _, msg in episodes if m == model and chip == label]:
            page.get_by_text(message[:60], exact=False).first.wait_for(timeout=60_000)
        assert hand.count <= 2, (model, hand.count)
        keep(page, f"journey_manager_{model}")
        # The next model's journey starts on the fleet again, reached from the sidebar (going to
        # "/fleet" by URL serves the fleet at "/", and Streamlit then drops the grid's first click).
        page.locator("[data-testid='stSidebar']").get_by_role("link", name="Fleet").click()
        page.get_by_role("heading", name="Fleet overview").wait_for(timeout=60_000)
        fleet_rows(page)


def test_data_scientist_goes_from_the_drift_alert_to_the_feature_distribution_in_two_clicks(journey_app, page):
    model, _, feature, message = next(e for e in sorted(open_episodes(journey_app.data_dir))
                                      if e[1] == "Drift" and e[2])  # a feature's drift alert
    sign_in(page, journey_app, "sam", path=f"/model?model={model}")  # the alert's link lands on the model
    hand = Clicks(page)
    hand.on(page.get_by_role("link", name="Drift: alert", exact=False).first)
    page.wait_for_url("**/drift?**", timeout=60_000)
    settle(page)
    page.get_by_text("Every feature over the whole window").wait_for(timeout=90_000)
    # The answer: the alert's own feature, its distributions drawn, and the alert stated above them.
    page.get_by_role("heading", name=f"Distribution of {feature}").wait_for(timeout=60_000)
    page.get_by_text(message[:60], exact=False).first.wait_for(timeout=60_000)
    assert page.get_by_role("heading", name="Drift explorer").count() == 1
    assert hand.count <= 2, hand.count
    keep(page, "journey_data_scientist")


def test_owner_request_to_reviewer_decision_to_audit_row_in_eight_clicks(journey_app, page):
    hand = Clicks(page)
    sign_in(page, journey_app, "alice")
    hand.sidebar("Promotions")
    page.get_by_text("Gates for v4 → Production").wait_for(timeout=60_000)  # her model's candidate, by default
    no_refusal_offered(page)
    page.get_by_label("Justification").fill("v4 retrained on November; drift accepted by the risk team")
    hand.on(page.get_by_role("button", name="Request promotion"))
    page.get_by_text("recorded").first.wait_for(timeout=60_000)
    page.context.clear_cookies()

    sign_in(page, journey_app, "adam")  # the admin overrides the failed gates once, with a reason
    hand.sidebar("Review queue")
    page.get_by_text("Gates of the model's policy").wait_for(timeout=60_000)
    no_refusal_offered(page)
    page.get_by_label("Comment (required to reject)").fill("risk team signed off the drift")
    page.get_by_label("Override reason", exact=False).fill("drift is the new applicant mix, not a fault")
    hand.on(page.get_by_role("button", name="Approve with override"))
    page.get_by_text("Recorded:").wait_for(timeout=60_000)
    page.context.clear_cookies()

    sign_in(page, journey_app, "rita")  # the second approval is an ordinary one
    hand.sidebar("Review queue")
    page.get_by_text("Approvals after it are ordinary ones").wait_for(timeout=60_000)
    no_refusal_offered(page)
    page.get_by_label("Comment (required to reject)").fill("agree")
    hand.on(page.get_by_role("button", name="Approve", exact=True))
    page.get_by_text("promoted").first.wait_for(timeout=60_000)

    hand.sidebar("Audit trail")
    page.get_by_text("ledger rows verify").wait_for(timeout=60_000)
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)
    settle(page)
    table = page.locator("[data-testid='stDataFrame'] table").first.text_content() or ""
    assert "promote" in table and "credit-risk" in table, table[:500]
    assert hand.count <= 8, hand.count
    keep(page, "journey_promotion")
    from mlflow.tracking import MlflowClient

    registry = MlflowClient(tracking_uri=f"sqlite:///{journey_app.data_dir / 'mlflow.db'}")
    assert str(registry.get_registered_model("credit-risk").aliases["production"]) == "4"
