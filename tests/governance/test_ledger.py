"""The ledger under stress, on SQLite and PostgreSQL: 20 concurrent decisions (threads and
processes) give exactly one, a process killed between the ledger commit and the registry write is
repaired with nothing lost or doubled, and one flipped bit is found by chain verification."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.errors import TowerError
from services.governance import audit, ledger, ledger_rows, ledger_tx, projection, promotion, review_state
from services.governance.ledger_schema import LEDGER, PROJECTIONS
from services.settings import PROJECT_ROOT
from tests.support.governance import ADA, ALICE, CRASH_SCRIPT, RITA, ROB, World, decide_in_process, open_world, person

ATTEMPTS = 20


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path, request.param) as w:
        yield w


def contenders() -> list[tuple[str, str]]:
    """20 distinct reviewers, half approving, half rejecting."""
    return [(f"rev{i:02d}", "approve" if i % 2 == 0 else "reject") for i in range(ATTEMPTS)]


def registry_snapshot(world: World, model: str = "credit-risk") -> tuple:
    client = world.client
    rm = client.get_registered_model(model)
    versions = client.search_model_versions(f"name = '{model}'")
    return (tuple(sorted(rm.aliases.items())), tuple(sorted(rm.tags.items())),
            tuple(sorted((v.version, tuple(sorted(v.tags.items()))) for v in versions)))


def assert_exactly_one_effective_decision(world: World, rid: str, results: list[tuple]) -> None:
    assert len(results) == ATTEMPTS
    created = [r for r in results if r[2] == "created"]
    assert len(created) == 1, results
    winner_subject, verdict, _, decision_id, projection_error = created[0]
    assert decision_id == ledger_rows.resolution_decision_id(rid) and projection_error is None
    winner_name = winner_subject.title()
    for subject, _, kind, message, _ in results:
        if subject != winner_subject:
            assert kind == "DecisionConflict", (subject, kind, message)
            assert f"by {winner_name} at " in message  # who decided first, and when
    rows = [d for d in ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions(c)) if d.request_id == rid]
    assert [d.action for d in rows] == ["request", "promote" if verdict == "approve" else "reject"]
    request = review_state.get_request(world.ctx, rid)
    assert request.status == ("approved" if verdict == "approve" else "rejected")
    assert request.resolution is not None and request.resolution.actor_subject == winner_subject
    tags = {k: json.loads(v) for k, v in world.ctx.registry.version_tags("credit-risk", "3").items()
            if k.startswith("tower_audit_")}
    assert set(tags) == {f"tower_audit_{d.decision_id}" for d in rows}
    assert {t["hash"] for t in tags.values()} == {d.hash for d in rows}
    expected_holder = "3" if verdict == "approve" else "1"
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == expected_holder
    assert projection.pending_projections(world.ctx) == []
    assert audit.verify_chain(world.ctx).ok


def test_twenty_concurrent_threads_record_exactly_one_decision(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "race").request.id
    barrier = threading.Barrier(ATTEMPTS)

    def attempt(subject: str, verdict: str) -> tuple:
        actor = person(subject, "reviewer")
        barrier.wait(timeout=60)
        try:
            if verdict == "approve":
                outcome = promotion.approve(world.ctx, actor, rid, f"{subject} approves")
            else:
                outcome = promotion.reject(world.ctx, actor, rid, f"{subject} rejects")
            return (subject, verdict, "created" if outcome.created else "same", outcome.decision.decision_id,
                    outcome.projection_error)
        except TowerError as exc:
            return (subject, verdict, type(exc).__name__, str(exc), None)

    with ThreadPoolExecutor(ATTEMPTS) as pool:
        results = list(pool.map(lambda c: attempt(*c), contenders()))
    assert_exactly_one_effective_decision(world, rid, results)


@pytest.mark.slow
def test_twenty_concurrent_processes_record_exactly_one_decision(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "race").request.id
    mp = multiprocessing.get_context("forkserver")  # clean processes, the imports paid once
    mp.set_forkserver_preload(["tests.support.governance", "services.governance.promotion",
                               "mlflow.store.tracking.sqlalchemy_store",
                               "mlflow.store.model_registry.sqlalchemy_store"])
    barrier, results = mp.Barrier(ATTEMPTS), mp.Queue()
    processes = [mp.Process(target=decide_in_process, args=(world.env(), subject, verdict, rid, barrier, results))
                 for subject, verdict in contenders()]
    for p in processes:
        p.start()
    collected = [results.get(timeout=180) for _ in processes]
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert_exactly_one_effective_decision(world, rid, collected)


def test_a_double_click_by_the_same_reviewer_records_one_decision_and_returns_it_twice(world: World) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "click").request.id
    barrier = threading.Barrier(2)

    def click() -> promotion.Outcome:
        barrier.wait(timeout=30)
        return promotion.approve(world.ctx, RITA, rid, "approve")

    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: click(), range(2))
    assert sorted([first.created, second.created]) == [False, True]
    assert first.decision == second.decision
    assert len(ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions(c))) == 2


@pytest.mark.parametrize("where", ["before_tags", "after_tags"])
def test_a_process_killed_after_the_ledger_commit_is_repaired_with_nothing_lost_or_doubled(
        world: World, where: str) -> None:
    rid = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "crash").request.id
    done = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, where, rid], env=world.env(), cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 9, done.stderr[-2000:]

    rows = ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions(c))
    assert [d.action for d in rows] == ["request", "promote"]  # the decision survived the crash
    promote = rows[1]
    assert [d.decision_id for d in projection.pending_projections(world.ctx)] == [promote.decision_id]
    moved = where == "after_tags"
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == ("3" if moved else "1")
    if not moved:
        (pending,) = audit.detect_external_changes(world.ctx, "credit-risk")
        assert pending.projection_pending and pending.expected_version == "3"

    report = projection.repair_projections(world.ctx, ADA)
    assert report.applied == (promote.decision_id,) and report.failed == ()
    assert world.ctx.registry.model_aliases("credit-risk")["production"] == "3"
    tags = {k: json.loads(v) for k, v in world.ctx.registry.version_tags("credit-risk", "3").items()
            if k.startswith("tower_audit_")}
    assert set(tags) == {f"tower_audit_{d.decision_id}" for d in rows}
    assert [tags[f"tower_audit_{d.decision_id}"]["hash"] for d in rows] == [d.hash for d in rows]
    assert projection.pending_projections(world.ctx) == []
    assert audit.detect_external_changes(world.ctx, "credit-risk") == []

    before = registry_snapshot(world)
    again = projection.repair_projections(world.ctx, ADA)
    assert again.applied == () and again.already == 2
    assert registry_snapshot(world) == before
    assert ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions(c)) == rows
    assert audit.verify_chain(world.ctx).ok


def _decisions(world: World) -> list[ledger_rows.Decision]:
    first = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Production", "one").request.id
    promotion.reject(world.ctx, RITA, first, "approved? no: rejected")
    second = promotion.request_promotion(world.ctx, ALICE, "credit-risk", "3", "Staging", "two").request.id
    promotion.approve(world.ctx, ROB, second, "approved")
    return ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions(c))


def _drop_append_only_triggers(conn: sa.Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER governance_ledger_no_update")
        conn.exec_driver_sql("DROP TRIGGER governance_ledger_no_delete")
    else:
        conn.exec_driver_sql("DROP TRIGGER governance_ledger_append_only ON governance_ledger")


def test_the_database_refuses_to_update_or_delete_ledger_rows(world: World) -> None:
    rows = _decisions(world)
    for statement in (LEDGER.update().where(LEDGER.c.seq == 2).values(comment="nicer"),
                      LEDGER.delete().where(LEDGER.c.seq == 2)):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), world.ctx.engine.begin() as conn:
            conn.execute(statement)
    assert ledger_tx.read(world.ctx.engine, lambda c: ledger.decisions(c)) == rows


def test_one_flipped_bit_in_a_ledger_row_is_found_and_the_row_named(world: World) -> None:
    rows = _decisions(world)
    assert audit.verify_chain(world.ctx).ok and audit.verify_chain(world.ctx).rows == 4
    target = rows[1]  # the rejection
    flipped = chr(ord(target.comment[0]) ^ 0x20) + target.comment[1:]  # "approved?..." -> "Approved?..."
    with world.ctx.engine.begin() as conn:  # someone with write access to the database, bypassing the tower
        _drop_append_only_triggers(conn)
        conn.execute(LEDGER.update().where(LEDGER.c.seq == target.seq).values(comment=flipped))
    report = audit.verify_chain(world.ctx)
    assert (report.ok, report.first_bad_seq, report.first_bad_decision_id) == (False, 2, target.decision_id)
    assert "altered" in report.problem and f"Row 2 (decision {target.decision_id})" in report.summary

    # re-hashing the altered row moves the break to the next row, which still names the old hash
    with world.ctx.engine.begin() as conn:
        row = conn.execute(sa.select(LEDGER).where(LEDGER.c.seq == 2)).mappings().one()
        conn.execute(LEDGER.update().where(LEDGER.c.seq == 2).values(hash=ledger_rows.row_hash(row)))
    report = audit.verify_chain(world.ctx)
    assert (report.first_bad_seq, report.first_bad_decision_id) == (3, rows[2].decision_id)
    assert "prev_hash" in report.problem

    with world.ctx.engine.begin() as conn:
        conn.execute(PROJECTIONS.delete().where(PROJECTIONS.c.decision_id == rows[2].decision_id))
        conn.execute(LEDGER.delete().where(LEDGER.c.seq == 3))
    report = audit.verify_chain(world.ctx)
    assert report.first_bad_seq == 4 and "a row is missing" in report.problem
