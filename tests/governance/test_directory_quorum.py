"""The quorum re-checked against the directory (issue 10: "the approver's current rights").

The organisation's directory is a real SCIM 2.0 endpoint on loopback (tests/support/scim_server.py)
whose people and groups each test changes. The attacks: a reviewer removed from the reviewer group
after approving, who has not acted since; an approver deactivated; a subject written to widen the
directory's filter; an admin whose override stands although the directory demoted her; and bad
luck: the directory down at the approval that completes the quorum. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.auth.directory import DirectoryUnavailable
from services.governance import ledger, ledger_tx, promotion, review_state
from services.governance.validation import InvalidInput
from services.settings import load_settings
from tests.support.governance import ALICE, ISSUER, OTHER_ISSUER, RITA, ROB, World, open_world, person
from tests.support.scim_server import ScimServer

# Like the demo's credit-risk: two reviewers must approve; admins may override a failed gate.
POLICIES = """
policies:
  default:
    approvals_required: 2
    approvers: {roles: [reviewer]}
    override_roles: [admin]
  credit-risk:
    metrics:
      - {name: roc_auc, direction: higher, max_regression: 0.01}
"""
RAVI = person("ravi", "reviewer")
ADA = person("ada", "admin")


@pytest.fixture
def scim() -> Iterator[ScimServer]:
    server = ScimServer().start()
    for who in ("rita", "rob", "ravi"):
        server.add_user(who, "tower-reviewers")
    server.add_user("ada", "tower-admins")
    server.add_user("alice", "tower-owners")
    try:
        yield server
    finally:
        server.stop()


def with_directory(world: World, scim: ScimServer) -> World:
    """The world with ``auth.directory`` pointing at the loopback SCIM server, its token in the environment."""
    text = world.config.read_text(encoding="utf-8").replace("  roles: {}\n", f"""  roles:
    tower-reviewers: reviewer
    tower-admins: admin
    tower-owners: model_owner
  directory:
    kind: scim
    issuer: {ISSUER}
    base_url: {scim.base_url}
    match: {{attribute: externalId, claim: subject}}
    timeout_s: 1
""", 1)
    world.config.write_text(text, encoding="utf-8")
    settings = load_settings({"TOWER_CONFIG": str(world.config), "MLFLOW_TRACKING_URI": world.registry_uri,
                              "WAREHOUSE_URL": world.warehouse_url, "TOWER_DB_URL": world.tower_url,
                              "TOWER_DATA_DIR": str(world.root / "data"), "TOWER_DIRECTORY_TOKEN": scim.token,
                              "TOWER_SECRETS_FILE": str(world.root / "no-secrets.toml")})
    return dataclasses.replace(world, settings=settings, ctx=dataclasses.replace(world.ctx, settings=settings))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path, scim: ScimServer) -> Iterator[World]:
    with open_world(tmp_path, request.param, policies=POLICIES) as plain:
        yield with_directory(plain, scim)


def actions(world: World, rid: str) -> list[tuple[str, str]]:
    rows = ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions_of_request(c, rid))
    return [(d.action, d.actor_subject) for d in rows]


def production(world: World) -> str:
    return world.ctx.registry.model_aliases("credit-risk")["production"]


def requested(world: World, version: str = "3") -> str:
    return promotion.request_promotion(world.ctx, ALICE, "credit-risk", version, "Production", "better").request.id


# ------------------------------------------------------------------------------------------------
# Rights lost in the directory
# ------------------------------------------------------------------------------------------------
def test_a_reviewer_removed_from_the_reviewer_group_no_longer_completes_the_quorum(
        world: World, scim: ScimServer) -> None:
    rid = requested(world)
    promotion.approve(world.ctx, RITA, rid, "rita, a reviewer then")
    scim.set_groups("rita")  # removed in the IdP yesterday; she has not signed in since
    outcome = promotion.approve(world.ctx, ROB, rid, "second approval")

    assert not outcome.promoted and production(world) == "1"
    request = review_state.get_request(world.ctx, rid)
    assert request.is_open and [d.actor_subject for d in request.approvals] == ["rob"]
    assert [(d.actor_subject, why) for d, why in request.void_approvals] == [
        ("rita", "Rita is no longer in a reviewer group of the directory.")]
    assert "SCIM directory at " + scim.base_url in request.rights_source
    # The quorum is still reachable with someone who holds the right now.
    assert promotion.approve(world.ctx, RAVI, rid, "third reviewer").promoted
    assert production(world) == "3"


def test_a_deactivated_approver_no_longer_counts(world: World, scim: ScimServer) -> None:
    rid = requested(world)
    promotion.approve(world.ctx, RITA, rid, "before she left")
    scim.set_active("rita", False)  # still in the reviewer group: deactivation alone takes every right
    assert not promotion.approve(world.ctx, ROB, rid, "second").promoted
    request = review_state.get_request(world.ctx, rid)
    assert [why for _, why in request.void_approvals] == ["Rita is deactivated in the directory."]
    assert production(world) == "1"


def test_an_approver_the_directory_does_not_know_does_not_count(world: World, scim: ScimServer) -> None:
    rid = requested(world)
    promotion.approve(world.ctx, RITA, rid, "first")
    del scim.users["rita"]  # deleted from the directory (deny by default: unknown is no rights)
    assert not promotion.approve(world.ctx, ROB, rid, "second").promoted
    assert [why for _, why in review_state.get_request(world.ctx, rid).void_approvals] == [
        "Rita is not in the directory."]


def test_the_completing_approval_asks_the_directory_once_per_earlier_approver(
        world: World, scim: ScimServer) -> None:
    rid = requested(world)
    promotion.approve(world.ctx, RITA, rid, "first")
    scim.seen.clear()
    assert promotion.approve(world.ctx, ROB, rid, "second").promoted
    assert scim.seen == ['externalId eq "rita"']  # not rob (his roles come from the IdP), not twice
    scim.seen.clear()
    [closed] = review_state.list_requests(world.ctx)  # history: settled, so nobody is asked
    assert closed.status == "approved" and scim.seen == [] and "request is closed" in closed.rights_source


# ------------------------------------------------------------------------------------------------
# A subject written to widen the filter
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("subject", ['mallory" or externalId eq "rita', 'x" or externalId pr or externalId eq "'])
def test_a_subject_written_to_widen_the_filter_borrows_nobodys_rights(
        world: World, scim: ScimServer, subject: str) -> None:
    rid = requested(world)
    # An account at the directory's issuer whose token says reviewer, unknown to the directory.
    mallory = person(subject, "reviewer", email="mallory@example.test")
    promotion.approve(world.ctx, mallory, rid, "count me")
    assert not promotion.approve(world.ctx, ROB, rid, "second").promoted
    request = review_state.get_request(world.ctx, rid)
    assert [(d.actor_subject, why.endswith("is not in the directory.")) for d, why in request.void_approvals] == [
        (subject, True)]
    assert production(world) == "1"


# ------------------------------------------------------------------------------------------------
# Overrides
# ------------------------------------------------------------------------------------------------
def test_an_override_by_an_admin_the_directory_demoted_no_longer_stands(world: World, scim: ScimServer) -> None:
    rid = requested(world, "4")  # v4 fails the roc_auc gate
    promotion.approve(world.ctx, ADA, rid, "ship it", override_reason="the holdout set is stale")
    assert [d.actor_subject for d in review_state.get_request(world.ctx, rid).overrides] == ["ada"]
    scim.set_groups("ada", "tower-reviewers")  # demoted: a reviewer now, no longer an admin

    with pytest.raises(InvalidInput, match="These gates did not pass: metric:roc_auc"):
        promotion.approve(world.ctx, ROB, rid, "relying on ada's override")
    request = review_state.get_request(world.ctx, rid)
    assert request.overrides == ()
    assert [(d.actor_subject, why) for d, why in request.lapsed_overrides] == [
        ("ada", "Ada no longer holds an override role (admin) in the directory.")]
    assert [d.actor_subject for d in request.approvals] == ["ada"]  # an ordinary approval still
    assert actions(world, rid) == [("request", "alice"), ("approve", "ada")] and production(world) == "1"


# ------------------------------------------------------------------------------------------------
# The directory down at the completing approval
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("outage", ["failing", "stopped"])
def test_the_directory_down_at_the_completing_approval_refuses_it_and_a_retry_succeeds(
        world: World, scim: ScimServer, outage: str) -> None:
    rid = requested(world)
    if outage == "failing":
        scim.failing = True
    else:
        scim.stop()
    # The first approval needs nobody's rights but the actor's: it is recorded during the outage.
    assert not promotion.approve(world.ctx, RITA, rid, "first").promoted

    with pytest.raises(DirectoryUnavailable, match="could not be checked with the directory") as err:
        promotion.approve(world.ctx, ROB, rid, "second")
    assert "Nothing was recorded" in err.value.hint
    assert actions(world, rid) == [("request", "alice"), ("approve", "rita")] and production(world) == "1"
    # The page still draws, on the ledger's roles, and says so.
    assert "did not answer" in review_state.get_request(world.ctx, rid).rights_source

    if outage == "failing":
        scim.failing = False
    else:
        scim.start()
    assert promotion.approve(world.ctx, ROB, rid, "second, once it is back").promoted
    assert production(world) == "3"


def test_approvers_of_another_issuer_keep_the_ledgers_roles_even_with_the_directory_down(
        world: World, scim: ScimServer) -> None:
    rid = requested(world)
    outsider = person("otto", "reviewer", issuer=OTHER_ISSUER)  # a person the directory does not cover
    promotion.approve(world.ctx, outsider, rid, "from the partner IdP")
    scim.failing = True
    assert promotion.approve(world.ctx, ROB, rid, "second").promoted
    assert scim.seen == []


def test_two_reviewers_racing_after_a_revocation_complete_the_quorum_exactly_once(
        world: World, scim: ScimServer) -> None:
    """Rita approved, then lost the right; Rob and Ravi approve at the same moment. Neither alone completes
    the quorum (Rita no longer counts), both together do: the request is promoted once, never left open
    with two valid approvals, and never promoted on Rita's approval plus one."""
    import threading

    rid = requested(world)
    promotion.approve(world.ctx, RITA, rid, "rita, a reviewer then")
    scim.set_groups("rita")
    barrier, outcomes, errors = threading.Barrier(2), [], []

    def approve(who) -> None:
        barrier.wait()
        try:
            outcomes.append(promotion.approve(world.ctx, who, rid, f"{who.subject} approves"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=approve, args=(who,)) for who in (ROB, RAVI)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(outcomes) == 2
    assert sum(o.promoted for o in outcomes) == 1 and production(world) == "3"
    promotes = [a for a in actions(world, rid) if a[0] == "promote"]
    assert len(promotes) == 1
    # The completing approval is itself the promote row: Rob's and Ravi's are the two that counted.
    assert sorted(subject for action, subject in actions(world, rid) if action in ("approve", "promote")) == \
        ["ravi", "rita", "rob"] and promotes[0][1] in ("rob", "ravi")
    closed = review_state.get_request(world.ctx, rid)
    assert not closed.is_open
    # The closed request's history lists the approvals the promotion was decided on, as its promote row
    # recorded them, not Rita's, whom the ledger still knows as a reviewer.
    assert sorted(a.actor_subject for a in closed.approvals) == ["ravi", "rob"]


def test_a_closed_requests_counted_approvals_are_the_ones_its_promote_row_recorded(
        world: World, scim: ScimServer) -> None:
    """Rita approves, loses the right; Rob and Ravi complete the quorum. Afterwards the directory no longer
    matters: the history shows the two approvals that counted at the decision, recorded (and hashed) in
    the promote row, while the directory is down or has since given Rita her right back."""
    rid = requested(world)
    promotion.approve(world.ctx, RITA, rid, "rita, a reviewer then")
    scim.set_groups("rita")
    promotion.approve(world.ctx, ROB, rid, "rob")
    assert promotion.approve(world.ctx, RAVI, rid, "ravi").promoted
    scim.set_groups("rita", "tower-reviewers")
    scim.failing = True
    closed = review_state.get_request(world.ctx, rid)
    assert sorted(a.actor_subject for a in closed.approvals) == ["ravi", "rob"]
    promote = closed.resolution
    assert promote is not None and promote.counted is not None and len(promote.counted) == 1  # Rob's row
