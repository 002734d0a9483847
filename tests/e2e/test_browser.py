"""Real browser journeys: Debian Chromium driven by Playwright against `streamlit run`, signing in
through the demo's local OIDC provider. Each journey's last screen is kept in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.live_app import chromium_available, keep, sign_in

pytestmark = pytest.mark.skipif(not chromium_available(),
                                reason="Debian's chromium is not installed (make test installs it when run as root)")


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


def choose(page, label: str, option: str) -> None:
    """Pick a selectbox option the way a keyboard user does: type to filter, Enter to choose."""
    box = page.get_by_role("combobox", name=label)
    box.click()
    box.fill(option)
    page.keyboard.press("Enter")
    page.wait_for_timeout(800)


def settle(page) -> None:
    """Wait until Streamlit has finished the rerun the last action started."""
    page.wait_for_timeout(500)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=30_000)


def test_data_scientist_explores_drift_feature_by_feature(app, page):
    sign_in(page, app, "sam")
    page.goto(app.url + "/drift?model=credit-risk")
    page.get_by_text("Drift by feature and day").wait_for(timeout=60_000)
    page.get_by_text("Every feature over the whole window").wait_for(timeout=60_000)
    choose(page, "Feature", "debt_ratio")
    settle(page)
    assert page.locator("[data-testid='stPlotlyChart']").count() >= 2  # heat map and the overlay
    keep(page, "data_scientist_drift")


def test_owner_requests_reviewer_decides_and_the_audit_shows_both_decisions(app, page, browser):
    from mlflow.tracking import MlflowClient

    def request(owner: str, model: str, version: str, reason: str) -> None:
        sign_in(page, app, owner)
        page.goto(app.url + "/promotions")
        page.get_by_text("Request a promotion").first.wait_for(timeout=30_000)
        choose(page, "Model", model)
        choose(page, "Version", f"v{version}")
        choose(page, "To stage", next(o for o in ("Production",) if o))
        page.get_by_label("Justification").fill(reason)
        page.get_by_role("button", name="Request promotion").click()
        page.get_by_text("recorded").first.wait_for(timeout=60_000)
        page.context.clear_cookies()

    def decide(reviewer: str, verb: str, comment: str, override: str = "") -> None:
        sign_in(page, app, reviewer)
        page.goto(app.url + "/review")
        page.get_by_text("Gates of the model's policy").wait_for(timeout=60_000)
        page.get_by_label("Comment (required to reject)").fill(comment)
        if override:
            page.get_by_label("Override reason", exact=False).fill(override)
        page.get_by_role("button", name=verb).click()
        page.get_by_text("Recorded:").wait_for(timeout=60_000)
        page.context.clear_cookies()

    request("dave", "demand-forecast", "4", "retrained on October")
    decide("ravi", "Reject", "MAE worse on holiday weeks")
    request("carol", "fraud-detection", "5", "restores the latency SLO")
    decide("adam", "Approve", "latency matters most", override="recall gate accepted for the SLO")

    sign_in(page, app, "vera")
    page.goto(app.url + "/audit")
    page.get_by_text("ledger rows verify").wait_for(timeout=60_000)
    page.locator("[data-testid='stDataFrame']").first.wait_for(timeout=60_000)
    settle(page)
    keep(page, "audit_after_promotions")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    exported = Path(download.value.path()).read_text()
    assert ",reject,demand-forecast,4," in exported and ",promote,fraud-detection,5," in exported
    client = MlflowClient(tracking_uri=f"sqlite:///{app.data_dir / 'mlflow.db'}")
    assert str(client.get_registered_model("fraud-detection").aliases["production"]) == "5"
    assert str(client.get_registered_model("demand-forecast").aliases["production"]) == "3"
    rejected = client.get_model_version("demand-forecast", "4").tags
    promoted = client.get_model_version("fraud-detection", "5").tags
    assert any(k.startswith("tower_audit_") and '"reject"' in v for k, v in rejected.items())
    assert any(k.startswith("tower_audit_") and '"promote"' in v for k, v in promoted.items())


def test_a_reviewer_removed_from_the_group_is_refused_at_the_next_decision(app, page):
    import json
    import urllib.request

    sign_in(page, app, "alice")
    page.goto(app.url + "/promotions")
    page.get_by_text("Request a promotion").first.wait_for(timeout=30_000)
    choose(page, "Version", "v4")
    page.get_by_label("Justification").fill("please")
    page.get_by_role("button", name="Request promotion").click()
    page.get_by_text("recorded").first.wait_for(timeout=60_000)
    page.context.clear_cookies()

    sign_in(page, app, "rita")  # signed in as a reviewer: the cookie says so for 30 days
    rita = {"name": "Rita Alvarez", "email": "rita@demo.tower.invalid", "groups": []}
    urllib.request.urlopen(urllib.request.Request(  # the directory removes her from the reviewers group
        f"{app.oidc_url}/users/rita", data=json.dumps(rita).encode(), method="PUT",
        headers={"Content-Type": "application/json"}), timeout=10)
    page.goto(app.url + "/review")
    # v4 fails gates, so the page (drawn from her 30-day cookie) offers her only Reject; the write
    # itself must ask the directory again and refuse.
    page.get_by_label("Comment (required to reject)").fill("rejecting anyway")
    page.get_by_role("button", name="Reject").click()
    page.get_by_text("may not", exact=False).first.wait_for(timeout=60_000)
    assert page.get_by_text("Recorded:").count() == 0
    keep(page, "reviewer_removed_refused")
