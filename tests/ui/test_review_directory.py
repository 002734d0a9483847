"""The review page with a directory (issue 10): rita approves credit-risk (two reviewers needed), is
removed from the reviewer group in the directory, ravi approves: nothing is promoted and the page
says whose approval no longer counts, why, and where the rights came from. The directory is a real
SCIM 2.0 endpoint on loopback (tests/support/scim_server.py); the rest is the seeded demo."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from services.governance import review_state
from tests.support.app_test import texts
from tests.support.scim_server import ScimServer
from tests.ui.test_governance_pages import (
    ISSUER,
    JOURNEY_POLICIES,
    alias,
    decide_in_browser,
    request_in_browser,
    use_stores,
)


@pytest.fixture
def scim() -> Iterator[ScimServer]:
    server = ScimServer().start()
    server.add_user("alice", "tower-model-owners")
    for who in ("rita", "ravi"):
        server.add_user(who, "tower-reviewers")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stores(demo_dir, monkeypatch, scim: ScimServer):
    settings, ctx = use_stores(demo_dir, monkeypatch, JOURNEY_POLICIES)
    config = yaml.safe_load((demo_dir / "tower.yaml").read_text())
    config["auth"]["directory"] = {"kind": "scim", "issuer": ISSUER, "base_url": scim.base_url,
                                   "match": {"attribute": "externalId", "claim": "subject"}, "timeout_s": 2}
    (demo_dir / "tower.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TOWER_DIRECTORY_TOKEN", scim.token)
    return use_stores(demo_dir, monkeypatch)


def test_an_approval_by_someone_removed_from_the_reviewer_group_is_shown_as_no_longer_counting(
        stores, scim: ScimServer) -> None:
    settings, ctx = stores
    request_in_browser("alice", "credit-risk", "4", "Production", "v4 adds the new bureau features")
    decide_in_browser("rita", "Approve", "looks fine")
    scim.set_groups("rita")  # removed in the identity provider; rita has not signed in since

    at = decide_in_browser("ravi", "Approve", "agreed")
    assert "approved (waiting for more approvals)" in texts(at, ("success",))
    assert alias(settings, "credit-risk", "production") == "3"
    said = texts(at, ("warning",))
    assert ("The approval by Rita Alvarez no longer counts: Rita Alvarez is no longer in a reviewer group of "
            "the directory.") in said
    assert f"Approvers' current rights: the SCIM directory at {scim.base_url}" in texts(at, ("caption",))
    assert "approvals 1/2" in texts(at, ("caption",))
    [request] = review_state.list_requests(ctx, status="open")
    assert [d.actor_subject for d in request.approvals] == ["ravi"]


def test_a_directory_down_at_the_completing_approval_is_an_error_on_the_page_and_nothing_moves(
        stores, scim: ScimServer) -> None:
    settings, ctx = stores
    request_in_browser("alice", "credit-risk", "4", "Production", "v4 adds the new bureau features")
    decide_in_browser("rita", "Approve", "looks fine")
    scim.failing = True

    at = decide_in_browser("ravi", "Approve", "agreed")
    said = texts(at, ("error",))
    assert "could not be checked with the directory" in said and "Nothing was recorded" in said
    assert "did not answer" in texts(at, ("caption",))  # the page drew on the ledger's roles, and says so
    assert alias(settings, "credit-risk", "production") == "3"
    [request] = review_state.list_requests(ctx, status="open")
    assert [d.actor_subject for d in request.approvals] == ["rita"]

    scim.failing = False
    decide_in_browser("ravi", "Approve", "agreed, again")
    assert alias(settings, "credit-risk", "production") == "4"
