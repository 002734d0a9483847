"""In the browser (AppTest, the demo's people): the approval that promotes is announced right after
it, in the background, and the notification's link opens that decision on the Audit trail page."""

from __future__ import annotations

import time

import pytest

from services.governance import review_state
from tests.support.app_test import texts
from tests.support.webhook import Receiver
from tests.ui.test_governance_pages import JOURNEY_POLICIES, decide_in_browser, page, request_in_browser, use_stores

PUBLIC = "https://tower.example.com"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_a_promotion_in_the_browser_is_announced_and_its_link_opens_the_decision(demo_dir, monkeypatch, receiver):
    monkeypatch.setenv("TOWER_ALERT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("TOWER_PUBLIC_URL", PUBLIC)
    _, ctx = use_stores(demo_dir, monkeypatch, JOURNEY_POLICIES)
    request_in_browser("alice", "credit-risk", "4", "Production", "v4 adds the new bureau features")
    decide_in_browser("rita", "Approve", "looks fine")
    time.sleep(0.5)
    assert not [b for b in receiver.received if b.get("kind") == "decision"], "an approval short of the quorum"
    decide_in_browser("ravi", "Approve", "agreed")
    deadline = time.monotonic() + 20
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.1)  # the page delivers in a background thread
    (body,) = [b for b in receiver.received if b.get("kind") == "decision"]
    (request,) = review_state.list_requests(ctx, status="approved")
    assert (body["model"], body["version"], body["to_stage"], body["decided_by"]) == (
        "credit-risk", "4", "Production", request.resolution.actor_name)
    assert body["decided_by"].startswith("Ravi") and body["evidence_digest"] == request.resolution.evidence_digest
    assert body["decision_id"] == request.resolution.decision_id
    assert body["link"] == f"{PUBLIC}/audit?decision={request.resolution.decision_id}"

    at = page("vera", "app_pages/audit.py", decision=request.resolution.decision_id)
    assert not at.exception
    assert any(h.value == f"Decision {request.resolution.decision_id[:16]}" for h in at.subheader)
    (linked, *_) = at.dataframe
    assert list(linked.value["action"]) == ["promote"] and list(linked.value["actor"]) == [body["decided_by"]]
    missing = page("vera", "app_pages/audit.py", decision="0" * 64)
    assert "The linked decision is not in the ledger." in texts(missing, ("warning",))
