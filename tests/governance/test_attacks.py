"""Governance under attack: each test starts from what an attacker (or bad luck) does and pins what
the tower must still guarantee. On SQLite and on PostgreSQL; the races also across processes.

Attackers: a caller spelling a version another way, a requester with database access, a database
admin deleting or rewriting ledger rows, a registry editor deleting or forging audit tags, a
registry that fails half-way through a projection, two repairs and a decision racing.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.errors import Forbidden, RegistryUnavailable, TowerError
from services.governance import audit, ledger, ledger_rows, ledger_tx, projection, promotion, review_state
from services.governance.ledger_keys import LedgerKeys, MissingLedgerKey
from services.governance.ledger_schema import EVIDENCE, LEDGER, PROJECTIONS, REQUESTS
from services.governance.staleness import StaleRequest
from services.governance.validation import InvalidInput, canonical_version
from services.settings import PROJECT_ROOT, load_settings
from services.stores.registry import Registry
from services.stores.tower_db import create_schema
from tests.support.governance import ADA, ALICE, OTHER_ISSUER, RITA, ROB, World, open_world, person

TWO_APPROVALS = """
policies:
  default:
    approvals_required: 2
    approvers: {roles: [reviewer]}
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path, request.param) as w:
        yield w


def _rows(world: World) -> list[ledger_rows.Decision]:
    return ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions(c))


def _as_db_admin(world: World, *statements: str) -> None:
    """What someone with write access to the tower database does, bypassing the tower."""
    with world.ctx.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS governance_ledger_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS governance_ledger_no_delete")
        else:
            conn.exec_driver_sql("ALTER TABLE governance_ledger DISABLE TRIGGER USER")
        for statement in statements:
            conn.exec_driver_sql(statement)


def _promoted(world: World) -> list[ledger_rows.Decision]:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "better auc").request.id
    assert promotion.approve(world.ctx, RITA, rid, "ok").promoted
    return _rows(world)


# ----------------------------------------------------------------------------------------------
# Canonical versions
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["03", " 3", "3.0", "\u0663", "+3", "3 ", "３"])
def test_a_version_spelled_another_way_is_refused_naming_the_canonical_form(world: World, spelling: str) -> None:
    promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "the real one")
    with pytest.raises(InvalidInput, match="not in canonical form.*Write it as 3"):
        promotion.request_promotion(world.ctx, ALICE, "credit-risk", spelling, "Production", "a second one")
    assert [r.version for r in review_state.list_requests(world.ctx, status="open")] == ["3"]


@pytest.mark.parametrize("bad", ["0", "-1", "", "1" * 30, "v3", "3\x00"])
def test_what_is_no_version_at_all_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match="not in canonical form"):
        canonical_version(bad)


def test_the_registry_refuses_a_non_canonical_version_before_writing() -> None:
    registry = Registry("sqlite:///unused.db")
    with pytest.raises(TowerError, match="canonical"):
        registry.set_alias("credit-risk", "production", "03")


# ----------------------------------------------------------------------------------------------
# No stale decisions
# ----------------------------------------------------------------------------------------------
def test_an_older_request_approved_after_a_newer_promotion_is_refused_and_can_be_refreshed(world: World) -> None:
    older = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    newer = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "2", "Production", "v2").request.id
    assert promotion.approve(world.ctx, RITA, newer, "v2 first").promoted
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "2"

    with pytest.raises(StaleRequest, match=r"held by v1 when this evidence was taken and is held by v2 now") as err:
        promotion.approve(world.ctx, ROB, older, "late approval")
    assert "Refresh evidence" in err.value.hint
    with pytest.raises(StaleRequest):
        promotion.reject(world.ctx, ROB, older, "late rejection")
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "2"  # nothing silently replaced

    promotion.refresh_evidence(world.ctx, ROB, older)
    request = review_state.get_request(world.ctx, older)
    assert (request.previous_version, request.round, request.approvals) == ("2", 1, ())
    assert promotion.approve(world.ctx, ROB, older, "on the fresh evidence").promoted
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "3"
    assert audit.verify_all(world.ctx).ok


@pytest.mark.parametrize("verdict", ["approve", "reject"])
def test_a_reviewer_who_loses_the_race_is_told_who_decided_not_that_the_request_is_stale(
        world: World, monkeypatch: pytest.MonkeyPatch, verdict: str) -> None:
    """Two reviewers at once: the rival's promotion lands between the loser's first look and its
    staleness check. The holder has changed because of that very decision, so the loser must hear
    who decided first (DecisionConflict), not be asked to refresh a request that is closed."""
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    real = review_state.governed_holders
    rival_done: list[bool] = []

    def rival_decides_first(ctx, model):  # the interleaving a second process produces
        if not rival_done:
            rival_done.append(True)
            assert promotion.approve(world.ctx, RITA, rid, "first").promoted
        return real(ctx, model)

    # patched where the write paths look it up (promotion imports it from review_state)
    monkeypatch.setattr(promotion, "governed_holders", rival_decides_first)
    with pytest.raises(promotion.DecisionConflict, match=r"already approved by Rita at "):
        if verdict == "approve":
            promotion.approve(world.ctx, ROB, rid, "second")
        else:
            promotion.reject(world.ctx, ROB, rid, "second")
    rows = ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions_of_request(c, rid))
    assert [d.action for d in rows] == ["request", "promote"]  # the loser recorded nothing


def test_evidence_older_than_the_policy_allows_is_refused_until_refreshed(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    now = world.ctx.now()
    later = dataclasses.replace(world.ctx, clock=lambda: now + timedelta(days=8))
    with pytest.raises(StaleRequest, match="collected 8.0 days ago.*up to 7 days old"):
        promotion.approve(later, RITA, rid, "a week later")
    promotion.refresh_evidence(later, RITA, rid)
    assert promotion.approve(later, RITA, rid, "fresh").promoted


def test_a_refresh_resets_the_approvals_given_on_the_old_evidence(tmp_path: Path) -> None:
    with open_world(tmp_path, policies=TWO_APPROVALS) as world:
        rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
        promotion.approve(world.ctx, ROB, rid, "first of two")
        promotion.refresh_evidence(world.ctx, RITA, rid)
        request = review_state.get_request(world.ctx, rid)
        assert request.approvals == () and [why for _, why in request.void_approvals] == [
            "It was given before the evidence was refreshed."]
        assert not promotion.approve(world.ctx, RITA, rid, "one of two again").promoted
        assert promotion.approve(world.ctx, ROB, rid, "rob again, on the new evidence").promoted


# ----------------------------------------------------------------------------------------------
# Four-eyes against a database user, quorum re-checked
# ----------------------------------------------------------------------------------------------
def test_editing_the_requester_in_the_request_table_does_not_let_the_requester_approve(world: World) -> None:
    alice = person("alice", "model_owner", "reviewer")
    rid = promotion.request_promotion(world.ctx, alice, "credit-risk", "3", "Production", "mine").request.id
    with world.ctx.engine.begin() as conn:
        conn.execute(REQUESTS.update().where(REQUESTS.c.id == rid).values(requester_subject="mallory"))
    with pytest.raises((Forbidden, ledger.TamperedRecord)):
        promotion.approve(world.ctx, alice, rid, "approving my own")
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "1"
    report = audit.verify_all(world.ctx)
    assert not report.ok and report.findings[0].kind == "request"
    assert "requester_subject differs" in report.findings[0].message


def _with_person_claim(world: World) -> World:
    """The same world with ``auth.person_claim: email``: verified e-mails join accounts."""
    text = world.config.read_text(encoding="utf-8").replace("auth:\n", "auth:\n  person_claim: email\n", 1)
    world.config.write_text(text, encoding="utf-8")
    settings = load_settings({"TOWER_CONFIG": str(world.config), "MLFLOW_TRACKING_URI": world.registry_uri,
                              "WAREHOUSE_URL": world.warehouse_url, "TOWER_DB_URL": world.tower_url,
                              "TOWER_DATA_DIR": str(world.root / "data")})
    return dataclasses.replace(world, settings=settings, ctx=dataclasses.replace(world.ctx, settings=settings))


def test_an_unverified_email_does_not_pass_for_a_person_in_the_quorum(tmp_path: Path) -> None:
    with open_world(tmp_path, policies=TWO_APPROVALS) as plain:
        world = _with_person_claim(plain)
        rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
        # Mallory, at another issuer, gives her account Rita's e-mail (not verified) and approves first.
        mallory = person("m-1", "reviewer", issuer=OTHER_ISSUER, email="rita@example.test")
        promotion.approve(world.ctx, mallory, rid, "as if I were rita")
        # Rita's own approval is a second person's: Mallory neither blocks nor stands in for her.
        assert promotion.approve(world.ctx, RITA, rid, "rita herself").promoted


def test_a_verified_email_still_joins_two_accounts_of_one_person(tmp_path: Path) -> None:
    with open_world(tmp_path, policies=TWO_APPROVALS) as plain:
        world = _with_person_claim(plain)
        rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
        promotion.approve(world.ctx, person("rita", "reviewer", person="rita@example.test"), rid, "first")
        other_account = person("r-9", "reviewer", issuer=OTHER_ISSUER, email="rita@example.test",
                               person="rita@example.test")
        with pytest.raises(TowerError, match="another account"):
            promotion.approve(world.ctx, other_account, rid, "me again")
        rows = _rows(world)
        assert rows[-1].actor_person == "person:rita@example.test"  # recorded, and covered by the hash


def test_a_db_admin_who_clears_the_recorded_person_breaks_the_row_hash(tmp_path: Path) -> None:
    with open_world(tmp_path, policies=TWO_APPROVALS) as plain:
        world = _with_person_claim(plain)
        rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
        promotion.approve(world.ctx, person("rita", "reviewer", person="rita@example.test"), rid, "first")
        # Cleared, the row would fall back to its e-mail: the admin's way to merge or split people.
        _as_db_admin(world, "UPDATE governance_ledger SET actor_person = NULL WHERE action = 'approve'")
        report = audit.verify_all(world.ctx)
        assert not report.ok and report.findings[0].kind == "chain" and "altered" in report.findings[0].message


def test_a_db_admin_who_rewrites_which_approvals_counted_breaks_the_row_hash(tmp_path: Path) -> None:
    """The promote row records the approvals the quorum completed with; adding one (or clearing the list,
    so the history is recounted on today's rights) is a rewrite the chain reports."""
    for statement in ("UPDATE governance_ledger SET counted = '[\"forged\"]' WHERE action = 'promote'",
                      "UPDATE governance_ledger SET counted = NULL WHERE action = 'promote'"):
        with open_world(tmp_path / str(len(statement)), policies=TWO_APPROVALS) as world:
            rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
            promotion.approve(world.ctx, ROB, rid, "first")
            assert promotion.approve(world.ctx, RITA, rid, "second").promoted
            promote = _rows(world)[-1]
            assert promote.action == "promote" and promote.counted is not None and len(promote.counted) == 1
            _as_db_admin(world, statement)
            report = audit.verify_all(world.ctx)
            assert not report.ok and report.findings[0].kind == "chain" and "altered" in report.findings[0].message


def test_an_approval_whose_approver_lost_the_right_no_longer_completes_the_quorum(tmp_path: Path) -> None:
    with open_world(tmp_path, policies=TWO_APPROVALS) as world:
        rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
        promotion.approve(world.ctx, ROB, rid, "rob, a reviewer then")
        # rob acts again later without the reviewer role: the ledger now knows his current rights
        demoted = person("rob", "model_owner")
        world.client.set_registered_model_tag("fraud-detection", "owner", "rob")
        promotion.request_promotion(world.ctx, demoted, "fraud-detection", "3", "Staging", "as an owner now")
        outcome = promotion.approve(world.ctx, RITA, rid, "second approval")
        assert not outcome.promoted
        request = review_state.get_request(world.ctx, rid)
        assert [d.actor_subject for d in request.approvals] == ["rita"]
        assert [why for _, why in request.void_approvals] == ["Rob no longer holds the reviewer role."]
        assert world.ctx.registry.model_aliases("credit-risk")["production"] == "1"


# ----------------------------------------------------------------------------------------------
# Tamper evidence anchored in the registry
# ----------------------------------------------------------------------------------------------
def test_deleting_the_newest_ledger_row_is_reported_by_its_sequence_number(world: World) -> None:
    rows = _promoted(world)
    newest = rows[-1]
    assert audit.verify_all(world.ctx).ok
    _as_db_admin(world, f"DELETE FROM governance_projections WHERE decision_id = '{newest.decision_id}'",
                 f"DELETE FROM governance_ledger WHERE seq = {newest.seq}")
    assert audit.verify_chain(world.ctx).ok  # the chain alone cannot see it
    report = audit.verify_all(world.ctx)
    assert not report.ok and report.findings[0].kind == "short_ledger"
    assert report.findings[0].seq == newest.seq and f"row {newest.seq}" in report.summary


def test_rewriting_a_row_and_rehashing_every_row_after_it_is_caught_by_the_registry_anchors(world: World) -> None:
    rows = _promoted(world)
    _as_db_admin(world, "UPDATE governance_ledger SET comment = 'nothing to see' WHERE seq = 1")
    with world.ctx.engine.begin() as conn:  # re-hash the whole chain, as a careful admin would
        prev = ledger_rows.GENESIS_HASH
        for row in conn.execute(sa.select(LEDGER).order_by(LEDGER.c.seq)).mappings().all():
            values = {**row, "prev_hash": prev}
            values["hash"] = ledger_rows.row_hash(values)
            conn.execute(LEDGER.update().where(LEDGER.c.seq == row["seq"])
                         .values(prev_hash=values["prev_hash"], hash=values["hash"]))
            prev = values["hash"]
    assert audit.verify_chain(world.ctx).ok  # self-consistent again
    report = audit.verify_all(world.ctx)
    assert not report.ok
    assert {f.kind for f in report.findings} >= {"forged_tag", "head"}
    assert report.findings[0].seq == rows[0].seq


def test_an_emptied_ledger_is_reported_while_audit_tags_remain(world: World) -> None:
    _promoted(world)
    _as_db_admin(world, "DELETE FROM governance_projections", "DELETE FROM governance_ledger",
                 "DELETE FROM governance_requests")
    report = audit.verify_all(world.ctx)
    assert report.rows == 0 and not report.ok
    assert {f.kind for f in report.findings} >= {"short_ledger"}


def test_editing_an_evidence_body_from_failed_to_passed_is_refused_at_load_and_reported(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "4", "Production", "v4").request.id
    request = review_state.get_request(world.ctx, rid)
    evidence = review_state.evidence_snapshot(world.ctx, request.evidence_digest or "")
    assert evidence is not None and [g.status for g in evidence.gates if g.name == "metric:roc_auc"] == ["failed"]
    with world.ctx.engine.begin() as conn:
        conn.execute(EVIDENCE.update().values(body=sa.func.replace(EVIDENCE.c.body, '"failed"',
                                                                          '"passed"')))
    with pytest.raises(ledger.TamperedRecord, match="altered"):
        review_state.evidence_snapshot(world.ctx, request.evidence_digest or "")
    report = audit.verify_all(world.ctx)
    assert [f.kind for f in report.findings] == ["evidence"] and report.findings[0].seq == 1


def test_a_deleted_or_forged_audit_tag_in_the_registry_is_reported(world: World) -> None:
    rows = _promoted(world)
    client = world.client
    client.delete_model_version_tag("credit-risk", "3", f"tower_audit_{rows[0].decision_id}")
    forged = json.dumps({"seq": 2, "hash": "0" * 64, "action": "promote"})
    client.set_model_version_tag("credit-risk", "4", "tower_audit_" + "f" * 64, forged)
    report = audit.verify_all(world.ctx)
    kinds = {(f.kind, f.seq) for f in report.findings}
    assert ("missing_tag", 1) in kinds and ("extra_tag", 2) in kinds


@pytest.mark.postgres
def test_truncate_of_the_ledger_is_refused_on_postgresql(tmp_path: Path) -> None:
    with open_world(tmp_path, "postgres") as world:
        _promoted(world)
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), world.ctx.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE governance_ledger CASCADE")
        assert len(_rows(world)) == 2


def test_audit_verify_exits_non_zero_and_names_the_deleted_newest_row(world: World) -> None:
    rows = _promoted(world)
    command = [sys.executable, "-m", "services.cli", "audit", "verify"]
    ok = subprocess.run(command, env=world.env(), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr[-2000:]
    _as_db_admin(world, f"DELETE FROM governance_projections WHERE decision_id = '{rows[-1].decision_id}'",
                 f"DELETE FROM governance_ledger WHERE seq = {rows[-1].seq}")
    bad = subprocess.run(command, env=world.env(), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and f"row {rows[-1].seq}" in bad.stdout.splitlines()[0]


# ----------------------------------------------------------------------------------------------
# The projection converges
# ----------------------------------------------------------------------------------------------
def _registry_state(world: World) -> tuple[str | None, dict[str, str]]:
    tags: dict[str, str] = {}
    for version in ("1", "2", "3", "4"):
        tags.update({k: v for k, v in world.ctx.registry.version_tags("credit-risk", version).items()
                     if k.startswith("tower_audit_")})
    return world.ctx.registry.model_aliases("credit-risk").get("production"), tags


def _assert_converged(world: World) -> None:
    rows = _rows(world)
    holder, tags = _registry_state(world)
    latest = ledger_tx.read(world.ctx.engine, lambda c: ledger.latest_promotion(c, "credit-risk", "Production"))
    assert holder == (latest.version if latest else "1")
    assert set(tags) == {f"tower_audit_{d.decision_id}" for d in rows if d.model == "credit-risk"}
    assert projection.pending_projections(world.ctx) == []
    assert audit.detect_external_changes(world.ctx, "credit-risk") == []
    assert audit.verify_all(world.ctx).ok


class _Failing:
    """The registry, failing once at one step of a projection."""

    def __init__(self, registry: Registry, step: str) -> None:
        self._registry, self._step, self.failed = registry, step, False

    def __getattr__(self, name: str):
        return getattr(self._registry, name)

    def _maybe_fail(self, step: str) -> None:
        if step == self._step and not self.failed:
            self.failed = True
            raise RegistryUnavailable(f"injected failure {step}")

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        audit_tag = key.startswith("tower_audit_")
        if audit_tag:
            self._maybe_fail("before_tag")
        self._registry.set_version_tag(name, version, key, value)
        if audit_tag:
            self._maybe_fail("after_tag")

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._maybe_fail("before_alias")
        self._registry.set_alias(name, alias, version)
        self._maybe_fail("after_alias")


@pytest.mark.parametrize("step", ["before_tag", "after_tag", "before_alias", "after_alias"])
def test_a_registry_failure_at_any_step_is_reconciled_by_repair_idempotently(world: World, step: str) -> None:
    first = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    failing = _Failing(world.ctx.registry, step)
    broken = dataclasses.replace(world.ctx, registry=failing)
    outcome = promotion.approve(broken, RITA, first, "approved while the registry fails")
    assert failing.failed and outcome.projection_error and "injected failure" in outcome.projection_error
    # a newer promotion lands meanwhile: the repair must not give the stage back to the older one
    second = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "2", "Production", "v2").request.id
    assert promotion.approve(world.ctx, ROB, second, "v2 on top").promoted
    projection.repair_projections(world.ctx, ADA)
    _assert_converged(world)
    assert _registry_state(world)[0] == "2"
    before = _registry_state(world)
    again = projection.repair_projections(world.ctx, ADA)
    assert again.applied == () and again.failed == () and _registry_state(world) == before


@pytest.mark.parametrize("step", ["before_tag", "after_tag", "before_alias", "after_alias"])
def test_the_next_decision_applies_what_the_registry_missed_without_a_repair(world: World, step: str) -> None:
    first = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    failing = _Failing(world.ctx.registry, step)
    outcome = promotion.approve(dataclasses.replace(world.ctx, registry=failing), RITA, first, "registry fails")
    assert failing.failed and outcome.projection_error
    assert [d.decision_id for d in projection.pending_projections(world.ctx)] == [outcome.decision.decision_id]
    second = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "2", "Production", "v2").request.id
    assert promotion.reject(world.ctx, ROB, second, "not v2").projection_error is None
    _assert_converged(world)  # the rejection's projection retried the approval first; no admin ran a repair
    assert _registry_state(world)[0] == "3"


def test_the_automatic_retry_applies_pending_decisions_and_then_has_nothing_to_do(world: World) -> None:
    first = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    failing = _Failing(world.ctx.registry, "before_alias")
    outcome = promotion.approve(dataclasses.replace(world.ctx, registry=failing), RITA, first, "registry fails")
    assert outcome.projection_error
    still_down = projection.retry_pending(dataclasses.replace(world.ctx, registry=_Failing(world.ctx.registry,
                                                                                           "before_alias")))
    assert still_down.applied == () and len(still_down.failed) == 1  # said, not raised: the job goes on
    report = projection.retry_pending(world.ctx)
    assert report.applied == (outcome.decision.decision_id,) and report.failed == ()
    _assert_converged(world)
    assert _registry_state(world)[0] == "3"
    assert projection.retry_pending(world.ctx).applied == ()


def test_the_automatic_retry_leaves_a_stage_moved_outside_the_tower_for_a_person_to_judge(world: World) -> None:
    _promoted(world)
    world.client.set_registered_model_alias("credit-risk", "production", "4")
    assert projection.retry_pending(world.ctx).stages_fixed == ()
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "4"  # repair's call, not the job's


def test_monitor_run_retries_the_pending_projections(world: World) -> None:
    first = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    outcome = promotion.approve(dataclasses.replace(world.ctx, registry=_Failing(world.ctx.registry, "before_tag")),
                                RITA, first, "registry fails")
    assert outcome.projection_error
    done = subprocess.run([sys.executable, "-m", "services.cli", "monitor", "run", "--quiet"], env=world.env(),
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert "1 pending promotion decision(s) applied to the registry" in done.stdout, done.stdout + done.stderr
    _assert_converged(world)


def _forge_promotion(world: World, version: str) -> str:
    """A DB admin appends a promotion nobody decided, copying the newest real one (a guessed hash)."""
    with world.ctx.engine.begin() as conn:
        newest = conn.execute(sa.select(LEDGER).order_by(LEDGER.c.seq.desc()).limit(1)).mappings().one()
        forged = {**newest, "seq": newest["seq"] + 1, "decision_id": "f" * 64, "version": version,
                  "prev_hash": newest["hash"], "hash": "0" * 64, "comment": "nobody decided this"}
        conn.execute(LEDGER.insert().values(**forged))
    return forged["decision_id"]


def test_a_forged_promotion_row_is_never_projected_by_the_retry_or_a_repair(world: World) -> None:
    _promoted(world)
    _forge_promotion(world, "4")
    second = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "2", "Production", "v2").request.id
    outcome = promotion.reject(world.ctx, ROB, second, "not v2")  # its projection retries what is pending
    assert outcome.projection_error and "altered" in outcome.projection_error
    assert projection.retry_pending(world.ctx).failed
    with pytest.raises(TowerError, match="altered"):
        projection.repair_projections(world.ctx, ADA)
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "3"  # never the forged v4
    assert not any(k.endswith("f" * 12) for k in world.ctx.registry.version_tags("credit-risk", "4"))


def test_with_a_ledger_key_an_appended_plain_sha256_promotion_is_not_projected(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin cannot sign without the key, so he appends the row unkeyed with a correct SHA-256."""
    monkeypatch.setenv("TOWER_LEDGER_KEY", KEY_ONE)
    monkeypatch.setenv("TOWER_SECRETS_FILE", str(world.root / "no-secrets.toml"))
    _promoted(world)
    with world.ctx.engine.begin() as conn:
        newest = conn.execute(sa.select(LEDGER).order_by(LEDGER.c.seq.desc()).limit(1)).mappings().one()
        forged = {**newest, "seq": newest["seq"] + 1, "decision_id": "e" * 64, "version": "4", "key_id": None,
                  "prev_hash": newest["hash"], "comment": "nobody decided this"}
        forged["hash"] = ledger_rows.row_hash(forged, LedgerKeys(None, {}))
        conn.execute(LEDGER.insert().values(**forged))
    assert projection.retry_pending(world.ctx).failed
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "3"


def test_a_stage_moved_outside_the_tower_is_given_back_by_repair(world: World) -> None:
    _promoted(world)
    world.client.set_registered_model_alias("credit-risk", "production", "4")
    (change,) = audit.detect_external_changes(world.ctx, "credit-risk")
    assert not change.projection_pending and change.actual_version == "4"
    report = projection.repair_projections(world.ctx, ADA)
    assert report.stages_fixed == ("credit-risk: Production -> v3",)
    _assert_converged(world)


def test_two_repairs_and_a_decision_racing_in_threads_converge(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    with world.ctx.engine.begin() as conn:  # leave something for the repairs to do
        conn.execute(PROJECTIONS.delete())
    with ThreadPoolExecutor(3) as pool:
        jobs = [pool.submit(projection.repair_projections, world.ctx, ADA),
                pool.submit(promotion.approve, world.ctx, RITA, rid, "racing"),
                pool.submit(projection.repair_projections, world.ctx, ADA)]
        results = [j.result(timeout=120) for j in jobs]
    assert results[1].promoted
    _assert_converged(world)
    assert _registry_state(world)[0] == "3"


def test_the_automatic_retry_racing_a_decision_and_a_repair_projects_each_decision_once(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    with world.ctx.engine.begin() as conn:  # the request's projection was lost: something to retry
        conn.execute(PROJECTIONS.delete())
    with ThreadPoolExecutor(3) as pool:
        jobs = [pool.submit(projection.retry_pending, world.ctx),
                pool.submit(promotion.approve, world.ctx, RITA, rid, "racing the job"),
                pool.submit(projection.repair_projections, world.ctx, ADA)]
        results = [j.result(timeout=120) for j in jobs]
    assert results[1].promoted and results[0].failed == ()
    _assert_converged(world)
    with world.ctx.engine.connect() as conn:  # one projection row per decision: nothing applied twice
        projected = conn.execute(sa.select(PROJECTIONS.c.decision_id)).scalars().all()
    assert sorted(projected) == sorted(d.decision_id for d in _rows(world))


def repair_in_process(env: dict[str, str], barrier: object, results: object) -> None:
    import os

    from tests.support.governance import context_from_env

    os.environ.update(env)
    ctx = context_from_env()
    try:
        barrier.wait(timeout=120)  # type: ignore[attr-defined]
        report = projection.repair_projections(ctx, ADA)
        results.put(("ok", len(report.failed)))  # type: ignore[attr-defined]
    except BaseException as exc:  # reported, so the test shows it
        results.put(("crash", repr(exc)))  # type: ignore[attr-defined]
    finally:
        ctx.engine.dispose()


def approve_in_process(env: dict[str, str], request_id: str, barrier: object, results: object) -> None:
    import os

    from tests.support.governance import context_from_env

    os.environ.update(env)
    ctx = context_from_env()
    try:
        barrier.wait(timeout=120)  # type: ignore[attr-defined]
        outcome = promotion.approve(ctx, RITA, request_id, "from another process")
        results.put(("ok", outcome.promoted))  # type: ignore[attr-defined]
    except BaseException as exc:
        results.put(("crash", repr(exc)))  # type: ignore[attr-defined]
    finally:
        ctx.engine.dispose()


def test_two_repairs_and_a_decision_racing_in_separate_processes_converge(world: World) -> None:
    first = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "2", "Production", "v2").request.id
    promotion.approve(dataclasses.replace(world.ctx, registry=_Failing(world.ctx.registry, "before_alias")),
                      RITA, first, "left pending")
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    promotion.refresh_evidence(world.ctx, ROB, rid)  # the holder changed when v2's promotion was recorded
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(3), context.Queue()
    processes = [context.Process(target=repair_in_process, args=(world.env(), barrier, results)),
                 context.Process(target=approve_in_process, args=(world.env(), rid, barrier, results)),
                 context.Process(target=repair_in_process, args=(world.env(), barrier, results))]
    for process in processes:
        process.start()
    answers = [results.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert all(a[0] == "ok" for a in answers), answers
    projection.repair_projections(world.ctx, ADA)  # a projection that timed out on the lock is picked up here
    _assert_converged(world)
    assert _registry_state(world)[0] == "3"


def test_a_row_written_before_versions_were_canonical_is_reported_at_verification(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    with world.ctx.engine.begin() as conn:  # what an older tower wrote: "03" beside "3"
        row = dict(conn.execute(sa.select(LEDGER)).mappings().one())
        conn.execute(REQUESTS.update().where(REQUESTS.c.id == rid).values(version="03"))
    _as_db_admin(world, "DELETE FROM governance_projections", "DELETE FROM governance_ledger")
    values = {**row, "version": "03"}
    values["hash"] = ledger_rows.row_hash(values)
    with world.ctx.engine.begin() as conn:
        conn.execute(LEDGER.insert().values(**values))
    report = audit.verify_all(world.ctx)
    assert report.findings[0].kind == "version" and "'03'" in report.findings[0].message
    with pytest.raises(TowerError, match="canonical"):
        promotion.approve(world.ctx, RITA, rid, "cannot approve a non-canonical version")


def test_an_open_request_an_older_tower_wrote_as_03_blocks_a_second_one_for_3_after_start_up(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    with world.ctx.engine.begin() as conn:  # what an older tower wrote: "03", its open key from "03"
        row = dict(conn.execute(sa.select(LEDGER)).mappings().one())
        conn.execute(REQUESTS.update().where(REQUESTS.c.id == rid).values(
            version="03", open_key=ledger_rows.open_key("credit-risk", "03", "Production")))
    _as_db_admin(world, "DELETE FROM governance_projections", "DELETE FROM governance_ledger")
    values = {**row, "version": "03"}
    values["hash"] = ledger_rows.row_hash(values)
    with world.ctx.engine.begin() as conn:
        conn.execute(LEDGER.insert().values(**values))
    create_schema(world.ctx.engine)  # start-up: the open keys of such rows are made canonical
    with pytest.raises(TowerError, match="already open"):
        promotion.request_promotion(world.ctx, ADA, "credit-risk", "3", "Production", "a second one")
    assert promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "retry").request.id == rid
    # Never decided on, but its requester can withdraw it, and then ask again in canonical form.
    promotion.cancel_request(world.ctx, ALICE, rid, "filed by an older tower")
    again = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3 again")
    assert again.request.version == "3"
    # The cancel of "03" can never reach the registry (it refuses the spelling); retrying it first
    # must not hold up the projection of this request.
    assert again.projection_error is None
    create_schema(world.ctx.engine)  # idempotent
    assert len(review_state.list_requests(world.ctx, status="open")) == 1


def test_two_old_spellings_of_one_version_leave_one_canonical_open_key_and_start_up_still_succeeds(
        world: World) -> None:
    first = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    second = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "2", "Production", "v2").request.id
    with world.ctx.engine.begin() as conn:  # an older tower's "03" and "003", each with its own open key
        for rid, spelling in ((first, "03"), (second, "003")):
            conn.execute(REQUESTS.update().where(REQUESTS.c.id == rid).values(
                version=spelling, open_key=ledger_rows.open_key("credit-risk", spelling, "Production")))
    create_schema(world.ctx.engine)  # the second key would collide: skipped, not a failed start
    with world.ctx.engine.connect() as conn:
        keys = conn.execute(sa.select(REQUESTS.c.open_key).where(REQUESTS.c.id.in_([first, second]))).scalars().all()
    assert keys.count(ledger_rows.open_key("credit-risk", "3", "Production")) == 1


# ----------------------------------------------------------------------------------------------
# Keyed hashing: a database admin without the key cannot re-hash the chain
# ----------------------------------------------------------------------------------------------
KEY_ONE, KEY_TWO = "k1-" + "a" * 40, "k2-" + "b" * 40


def test_with_a_ledger_key_a_rehashed_chain_does_not_verify_and_rotation_keeps_old_rows(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOWER_LEDGER_KEY", KEY_ONE)
    monkeypatch.setenv("TOWER_SECRETS_FILE", str(world.root / "no-secrets.toml"))
    rows = _promoted(world)
    assert all(r for r in ledger_tx.read(world.ctx.engine, lambda c: c.execute(sa.select(LEDGER.c.key_id))
                                                                    .scalars().all()))
    assert audit.verify_chain(world.ctx).ok
    # rotation: a new current key, the old one kept as previous; old rows verify, new rows use the new key
    monkeypatch.setenv("TOWER_LEDGER_KEY", KEY_TWO)
    monkeypatch.setenv("TOWER_LEDGER_PREVIOUS_KEYS", KEY_ONE)
    promotion.request_promotion(world.ctx, ALICE, "credit-risk", "2", "Production", "after rotation")
    assert audit.verify_all(world.ctx).ok
    monkeypatch.setenv("TOWER_LEDGER_PREVIOUS_KEYS", "")  # the old key lost: its rows are reported, not trusted
    assert "not configured" in (audit.verify_chain(world.ctx).problem or "")
    monkeypatch.setenv("TOWER_LEDGER_PREVIOUS_KEYS", KEY_ONE)
    # an admin without the key rewrites row 1 and re-hashes the chain with plain SHA-256
    _as_db_admin(world, "UPDATE governance_ledger SET comment = 'rewritten', key_id = NULL WHERE seq = 1")
    with world.ctx.engine.begin() as conn:
        prev = ledger_rows.GENESIS_HASH
        for row in conn.execute(sa.select(LEDGER).order_by(LEDGER.c.seq)).mappings().all():
            values = {**row, "prev_hash": prev, "key_id": row["key_id"] if row["seq"] > 1 else None}
            try:
                values["hash"] = ledger_rows.row_hash(values, LedgerKeys(None, {}))
            except MissingLedgerKey:
                break
            conn.execute(LEDGER.update().where(LEDGER.c.seq == row["seq"])
                         .values(prev_hash=prev, hash=values["hash"]))
            prev = values["hash"]
    report = audit.verify_chain(world.ctx)
    assert not report.ok and report.first_bad_seq == 2  # row 2 is keyed and names the old hash
    assert rows
