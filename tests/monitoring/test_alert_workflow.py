"""The alert workflow on real stores: the governance tests' MLflow registry (credit-risk is alice's,
fraud-detection bob's), the tower state on SQLite and on PostgreSQL, the loopback webhook receiver.

Attacks: people without the right (viewer, reviewer, bot, the owner of another model), two people
acting at once, a process dying between the steps of an action, a stale page, hostile text."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.auth.identity import ANONYMOUS, Actor
from services.errors import ConfigError, Conflict, Forbidden, InvalidInput, NotFound
from services.mapping import parse_model_mapping
from services.monitoring import alert_workflow as wf
from services.monitoring.alerts import evaluate_alerts
from services.monitoring.config import AlertRules, DriftRule, PerformanceRule, parse_monitoring_config
from services.monitoring.job import write_windows
from services.monitoring.store import alert_actions, alert_episodes
from services.notify import outbox
from services.notify.config import ALERTS, Destination
from services.settings import PROJECT_ROOT
from services.stores.registry import Registry
from services.stores.tower_db import create_schema, make_tower_engine
from tests.support.governance import ADA, ALICE, BOB, DAN, ISSUER, RITA, VIC, TowerDatabase, person, shared_stores
from tests.support.webhook import Receiver

DAY0 = datetime(2026, 5, 1)
NOW = datetime(2026, 5, 10, 8, 0)
MODEL = "credit-risk"  # owner alice in the registry
MAPPING = parse_model_mapping(MODEL, {
    "table": "log", "columns": {"timestamp": "ts", "version": "v", "prediction": "p", "latency_ms": "l",
                                "status": "s"},
    "features": {"numerical": ["x", "y"]},
})
RULES = AlertRules(drift=DriftRule(consecutive=1))
BOT = Actor(issuer="tower-service", subject="ci-bot", name="service:ci-bot", roles=frozenset({"model_owner"}),
            kind="service")
DS_BOT = replace(BOT, subject="ds-bot", roles=frozenset({"data_scientist"}))
HOSTILE = "<img src=x onerror=alert(1)> **bold** [link](javascript:alert(1)) \u202eevil\u200b | `rm -rf` $x$"


@dataclass
class Stores:
    tower: sa.Engine
    url: str
    registry: Registry
    registry_uri: str

    def owner_of(self, model: str) -> str | None:
        return self.registry.model_tags(model).get("owner")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    import shutil

    template, _ = shared_stores()
    shutil.copy2(template, tmp_path / "mlflow.db")
    database = TowerDatabase(request.param, tmp_path)
    engine = make_tower_engine(database.url)
    try:
        create_schema(engine)
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        yield Stores(engine, database.url, Registry(uri), uri)
    finally:
        engine.dispose()
        database.drop()


def drifted_days(tower: sa.Engine, days: dict[int, tuple[bool, float]], **other_features: dict) -> None:
    """Store the windows of ``days`` (day -> (drifted, score against a 0.1 threshold)) of feature x,
    and of any other feature given by name the same way (a window is written whole)."""
    features = {"x": days, **other_features}
    windows: dict = {}
    for column, verdicts in features.items():
        for day, (drifted, score) in verdicts.items():
            rows = windows.setdefault((DAY0 + timedelta(days=day)).date(), [
                {"version": "*", "slice_key": "", "slice_value": "", "column_name": "", "metric": "rows",
                 "method": "", "value": 100.0, "threshold": None, "alert": None, "reference_id": None}])
            rows.append({"version": "*", "slice_key": "", "slice_value": "", "column_name": column,
                         "metric": "drift_score", "method": "wasserstein", "value": score, "threshold": 0.1,
                         "alert": drifted, "reference_id": "r1"})
    write_windows(tower, MODEL, windows, DAY0 + timedelta(days=30))


def evaluate(tower: sa.Engine, now: datetime = NOW, receiver: Receiver | None = None, rules: AlertRules = RULES,
             mapping=MAPPING):
    destination = Destination(ALERTS, receiver.url, "generic", 5.0) if receiver else None
    return evaluate_alerts(tower, mapping, rules, now=now, destination=destination)


def episodes(tower: sa.Engine) -> list:
    with tower.connect() as conn:
        return list(conn.execute(sa.select(alert_episodes).order_by(alert_episodes.c.opened_window,
                                                                    alert_episodes.c.id)))


def actions(tower: sa.Engine) -> list:
    with tower.connect() as conn:
        return list(conn.execute(sa.select(alert_actions).order_by(alert_actions.c.id)))


def one_open_episode(tower: sa.Engine) -> int:
    drifted_days(tower, {0: (True, 0.3)})
    evaluate(tower)
    (episode,) = episodes(tower)
    return episode.id


def state(tower: sa.Engine) -> tuple:
    return tuple(tuple(r) for r in episodes(tower)), tuple(tuple(r) for r in actions(tower))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# --------------------------------------------------------------------------------------------
# Who may act
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("actor", [VIC, RITA, BOB, BOT, DS_BOT, ANONYMOUS, person("root", "superuser")],
                         ids=["viewer", "reviewer", "owner-of-another-model", "bot-owner", "bot-data-scientist",
                              "anonymous", "unknown-role"])
def test_people_without_the_right_are_refused_at_the_write_and_nothing_is_stored(stores, actor):
    episode = one_open_episode(stores.tower)
    before = state(stores.tower)
    for action, extra in ((wf.ACKNOWLEDGE, {}), (wf.SNOOZE, {"until": NOW + timedelta(hours=1)}),
                          (wf.ASSIGN, {"assignee": "sam"}), (wf.RESOLVE, {"comment": "fixed"})):
        with pytest.raises(Forbidden):
            wf.act(stores.tower, stores.owner_of, actor, episode, action, now=NOW, **extra)
    assert state(stores.tower) == before


def test_the_owner_of_that_model_a_data_scientist_and_an_admin_may_act_each_recorded_with_who_and_when(stores):
    episode = one_open_episode(stores.tower)
    wf.act(stores.tower, stores.owner_of, ALICE, episode, wf.ASSIGN, assignee="Dan", now=NOW)
    wf.act(stores.tower, stores.owner_of, DAN, episode, wf.ACKNOWLEDGE, now=NOW + timedelta(minutes=1))
    wf.act(stores.tower, stores.owner_of, ADA, episode, wf.SNOOZE, until=NOW + timedelta(hours=4),
           now=NOW + timedelta(minutes=2))
    done = wf.act(stores.tower, stores.owner_of, DAN, episode, wf.RESOLVE, comment="retrained on May data",
                  now=NOW + timedelta(minutes=3))
    assert done.state == wf.RESOLVED and done.seq == 4
    rows = actions(stores.tower)
    assert [(r.seq, r.action, r.actor_issuer, r.actor_subject, r.at) for r in rows] == [
        (1, "assign", ISSUER, "alice", NOW), (2, "acknowledge", ISSUER, "dan", NOW + timedelta(minutes=1)),
        (3, "snooze", ISSUER, "ada", NOW + timedelta(minutes=2)),
        (4, "resolve", ISSUER, "dan", NOW + timedelta(minutes=3))]
    assert rows[0].assignee == "Dan" and rows[2].until == NOW + timedelta(hours=4)
    assert rows[3].comment == "retrained on May data"
    (row,) = episodes(stores.tower)
    assert (row.workflow, row.status, row.assignee, row.workflow_seq, row.snoozed_until) == \
        ("resolved", "resolved", "Dan", 4, None)
    with pytest.raises(Conflict, match="resolved"):
        wf.act(stores.tower, stores.owner_of, ADA, episode, wf.ACKNOWLEDGE, now=NOW + timedelta(minutes=4))


def test_an_owner_tag_changed_in_the_registry_takes_the_right_away_at_the_next_write(stores):
    from mlflow import MlflowClient

    episode = one_open_episode(stores.tower)
    wf.act(stores.tower, stores.owner_of, ALICE, episode, wf.ACKNOWLEDGE, now=NOW)
    MlflowClient(stores.registry_uri, registry_uri=stores.registry_uri).set_registered_model_tag(MODEL, "owner", "bob")
    with pytest.raises(Forbidden, match="its owner is bob"):
        wf.act(stores.tower, stores.owner_of, ALICE, episode, wf.ASSIGN, assignee="x", now=NOW)
    assert len(actions(stores.tower)) == 1


# --------------------------------------------------------------------------------------------
# Races and crashes
# --------------------------------------------------------------------------------------------
def race(*calls) -> list[object]:
    """Run the calls at once (a barrier); each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # the outcome under test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_people_acknowledging_at_once_one_wins_and_the_other_is_told_who(stores):
    episode = one_open_episode(stores.tower)
    for _ in range(3):
        results = race(lambda: wf.act(stores.tower, stores.owner_of, DAN, episode, wf.ACKNOWLEDGE, now=NOW),
                       lambda: wf.act(stores.tower, stores.owner_of, ADA, episode, wf.ACKNOWLEDGE, now=NOW))
        won = [r for r in results if isinstance(r, wf.Recorded)]
        lost = [r for r in results if isinstance(r, Conflict)]
        assert len(won) == 1 and len(lost) == 1, results
        assert "acknowledged by" in lost[0].message or "same moment" in lost[0].message
        rows = actions(stores.tower)
        assert len(rows) == 1 and rows[0].seq == 1
        (row,) = episodes(stores.tower)
        assert row.workflow == "acknowledged" and row.workflow_seq == 1
        with stores.tower.begin() as conn:  # again, from an open episode
            conn.execute(alert_actions.delete())
            conn.execute(alert_episodes.update().values(workflow="open", workflow_seq=0))


def test_a_resolve_racing_a_snooze_leaves_exactly_the_winners_state_and_one_action(stores):
    episode = one_open_episode(stores.tower)
    results = race(
        lambda: wf.act(stores.tower, stores.owner_of, DAN, episode, wf.RESOLVE, comment="fixed", now=NOW),
        lambda: wf.act(stores.tower, stores.owner_of, ALICE, episode, wf.SNOOZE, until=NOW + timedelta(hours=2),
                       now=NOW))
    (winner,) = [r for r in results if isinstance(r, wf.Recorded)]
    assert sum(isinstance(r, Conflict) for r in results) == 1, results
    (row,), (action,) = episodes(stores.tower), actions(stores.tower)
    assert action.action == winner.action and row.workflow_seq == 1
    if winner.action == wf.RESOLVE:
        assert (row.workflow, row.status, row.snoozed_until) == ("resolved", "resolved", None)
    else:
        assert (row.workflow, row.status, row.snoozed_until) == ("snoozed", "open", NOW + timedelta(hours=2))


def test_a_page_loaded_before_someone_else_acted_is_refused_with_who_acted(stores):
    episode = one_open_episode(stores.tower)
    wf.act(stores.tower, stores.owner_of, DAN, episode, wf.ACKNOWLEDGE, now=NOW)
    with pytest.raises(Conflict, match="since you loaded it.*acknowledged by Dan"):
        wf.act(stores.tower, stores.owner_of, ALICE, episode, wf.RESOLVE, comment="done", expected_seq=0, now=NOW)
    assert len(actions(stores.tower)) == 1


CRASH_IN_RESOLVE = """
import os, sys
from datetime import datetime
from services.monitoring import alert_workflow as wf
from services.notify import outbox
from services.stores.tower_db import make_tower_engine
from tests.support.governance import DAN

outbox.withdraw = lambda *args, **kwargs: os._exit(9)   # dies after the UPDATE and the action row
wf.act(make_tower_engine(sys.argv[1]), lambda m: None, DAN, int(sys.argv[2]), "resolve", comment="x",
       now=datetime.fromisoformat(sys.argv[3]))
sys.exit(0)
"""


def test_a_process_dying_between_the_steps_of_a_resolve_leaves_the_episode_as_it_was(stores):
    episode = one_open_episode(stores.tower)
    before = state(stores.tower)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    crashed = subprocess.run([sys.executable, "-c", CRASH_IN_RESOLVE, stores.url, str(episode), NOW.isoformat()],
                             env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 9, crashed.stderr
    assert state(stores.tower) == before
    assert wf.act(stores.tower, stores.owner_of, DAN, episode, wf.RESOLVE, comment="x", now=NOW).seq == 1


# --------------------------------------------------------------------------------------------
# Snooze and notification; resolve and the next episode
# --------------------------------------------------------------------------------------------
def test_a_snoozed_alert_is_not_announced_until_its_snooze_ends_then_once(stores, receiver):
    episode = one_open_episode(stores.tower)  # open, never announced (no destination yet)
    wf.act(stores.tower, stores.owner_of, DAN, episode, wf.SNOOZE, until=NOW + timedelta(hours=3), now=NOW)
    evaluate(stores.tower, NOW + timedelta(hours=1), receiver)
    evaluate(stores.tower, NOW + timedelta(hours=2, minutes=59), receiver)
    assert receiver.attempts == 0
    evaluate(stores.tower, NOW + timedelta(hours=3, minutes=1), receiver)
    evaluate(stores.tower, NOW + timedelta(hours=5), receiver)
    assert receiver.attempts == 1 and receiver.received[0]["episode_id"] == episode
    (row,) = episodes(stores.tower)
    assert row.notified_at is not None


def test_snoozing_an_alert_whose_delivery_is_pending_withdraws_it(stores, receiver):
    drifted_days(stores.tower, {0: (True, 0.3)})
    receiver.statuses = [503]  # the receiver is down: the alert stays owed
    evaluate(stores.tower, NOW, receiver)
    (row,) = episodes(stores.tower)
    with stores.tower.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox.OUTBOX)).scalar() == 1
    wf.act(stores.tower, stores.owner_of, DAN, row.id, wf.SNOOZE, until=NOW + timedelta(days=1), now=NOW)
    evaluate(stores.tower, NOW + timedelta(hours=2), receiver)  # a retry pass while snoozed
    assert receiver.received == []


def test_resolving_freezes_the_episode_and_the_condition_holding_on_opens_a_new_one(stores, receiver):
    drifted_days(stores.tower, {0: (True, 0.3), 1: (True, 0.3)})
    evaluate(stores.tower, NOW, receiver)
    (first,) = episodes(stores.tower)
    wf.act(stores.tower, stores.owner_of, DAN, first.id, wf.RESOLVE, comment="known: new data source", now=NOW)
    evaluate(stores.tower, NOW + timedelta(hours=1), receiver)  # same windows: nothing reopens
    (row,) = episodes(stores.tower)
    assert (row.status, row.workflow, row.last_window) == ("resolved", "resolved", DAY0 + timedelta(days=1))
    drifted_days(stores.tower, {2: (True, 0.4), 3: (True, 0.5)})  # the condition still holds
    evaluate(stores.tower, NOW + timedelta(days=1), receiver)
    old, new = episodes(stores.tower)
    assert (old.id, old.status, old.last_window) == (first.id, "resolved", DAY0 + timedelta(days=1))
    assert (new.opened_window, new.last_window, new.status, new.workflow, new.workflow_seq) == \
        (DAY0 + timedelta(days=2), DAY0 + timedelta(days=3), "notified", "open", 0)
    assert [p["episode_id"] for p in receiver.received] == [first.id, new.id]  # each episode announced once


def test_an_episode_people_acted_on_is_kept_when_the_recomputed_windows_withdraw_it(stores):
    episode = one_open_episode(stores.tower)
    wf.act(stores.tower, stores.owner_of, DAN, episode, wf.ASSIGN, assignee="sam", now=NOW)
    drifted_days(stores.tower, {0: (False, 0.01)})  # recomputed: it never drifted
    evaluate(stores.tower, NOW + timedelta(hours=1))
    (row,) = episodes(stores.tower)
    assert row.id == episode and row.status == "resolved" and len(actions(stores.tower)) == 1


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------
def test_hostile_comments_and_assignees_are_stored_exactly_as_given(stores):
    episode = one_open_episode(stores.tower)
    wf.act(stores.tower, stores.owner_of, DAN, episode, wf.ASSIGN, assignee=HOSTILE, now=NOW)
    wf.act(stores.tower, stores.owner_of, DAN, episode, wf.RESOLVE, comment=HOSTILE * 10, now=NOW)
    assign, resolve = actions(stores.tower)
    assert assign.assignee == HOSTILE and resolve.comment == HOSTILE * 10
    assert episodes(stores.tower)[0].assignee == HOSTILE
    history = wf.history(stores.tower, MODEL)
    assert list(history["comment"])[0] == HOSTILE * 10


@pytest.mark.parametrize(("action", "extra", "message"), [
    (wf.RESOLVE, {"comment": "x" * (wf.MAX_COMMENT + 1)}, "2,001 characters long; at most 2,000"),
    (wf.RESOLVE, {"comment": "   "}, "comment is required"),
    (wf.RESOLVE, {}, "comment is required"),
    (wf.RESOLVE, {"comment": "nul\x00byte"}, "NUL"),
    (wf.ASSIGN, {"assignee": ""}, "assignee is required"),
    (wf.ASSIGN, {"assignee": "a" * (wf.MAX_ASSIGNEE + 1)}, "at most 200"),
    (wf.SNOOZE, {"until": NOW - timedelta(minutes=1)}, "not in the future"),
    (wf.SNOOZE, {"until": NOW + timedelta(days=31)}, "at most 30 days"),
    (wf.SNOOZE, {"until": float("nan")}, "needs the time"),
    (wf.SNOOZE, {"until": "tomorrow"}, "must be a date and time"),
    ("delete", {}, "not an alert action"),
])
def test_bad_input_is_refused_with_what_to_fix_and_nothing_is_stored(stores, action, extra, message):
    episode = one_open_episode(stores.tower)
    before = state(stores.tower)
    with pytest.raises(InvalidInput, match=message):
        wf.act(stores.tower, stores.owner_of, DAN, episode, action, now=NOW, **extra)
    assert state(stores.tower) == before


def test_an_unknown_episode_is_not_found_and_a_snooze_end_with_a_time_zone_is_kept_in_utc(stores):
    with pytest.raises(NotFound):
        wf.act(stores.tower, stores.owner_of, DAN, 999_999, wf.ACKNOWLEDGE, now=NOW)
    with pytest.raises(InvalidInput):
        wf.act(stores.tower, stores.owner_of, DAN, True, wf.ACKNOWLEDGE, now=NOW)
    episode = one_open_episode(stores.tower)
    paris = datetime(2026, 5, 10, 12, 0, tzinfo=UTC).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    wf.act(stores.tower, stores.owner_of, DAN, episode, wf.SNOOZE, until=paris, now=NOW)
    assert episodes(stores.tower)[0].snoozed_until == datetime(2026, 5, 10, 12, 0)


# --------------------------------------------------------------------------------------------
# Worklist and history
# --------------------------------------------------------------------------------------------
def test_the_worklist_filters_by_state_and_by_who_it_is_assigned_to(stores):
    drifted_days(stores.tower, {0: (True, 0.3)}, y={0: (True, 0.3)})
    evaluate(stores.tower)
    x, y = sorted(episodes(stores.tower), key=lambda r: r.subject)
    wf.act(stores.tower, stores.owner_of, DAN, x.id, wf.ASSIGN, assignee="DAN@example.test", now=NOW)
    wf.act(stores.tower, stores.owner_of, DAN, x.id, wf.ACKNOWLEDGE, now=NOW)
    wf.act(stores.tower, stores.owner_of, DAN, y.id, wf.SNOOZE, until=NOW + timedelta(hours=1), now=NOW)

    def ids(*states, at=NOW, mine=None):
        return sorted(wf.worklist(stores.tower, MODEL, states, now=at, assigned=mine)["id"])

    assert ids("acknowledged") == [x.id] and ids("snoozed") == [y.id] and ids("open") == []
    assert ids("open", at=NOW + timedelta(hours=2)) == [y.id]  # the snooze ended
    assert ids("open", "acknowledged", "snoozed", mine=DAN) == [x.id]  # his e-mail, another case
    assert ids("open", "acknowledged", "snoozed", mine=ALICE) == []
    wf.act(stores.tower, stores.owner_of, DAN, x.id, wf.RESOLVE, comment="ok", now=NOW)
    assert ids("resolved") == [x.id] and ids("acknowledged") == []
    history = wf.history(stores.tower, MODEL)
    assert sorted(zip(history["episode_id"], history["action"], strict=True)) == sorted(
        [(x.id, "assign"), (x.id, "acknowledge"), (y.id, "snooze"), (x.id, "resolve")])
    assert set(history["actor_name"]) == {"Dan"}


# --------------------------------------------------------------------------------------------
# Severity
# --------------------------------------------------------------------------------------------
def test_an_episode_reaching_the_critical_multiple_is_critical_and_announced_so(stores, receiver):
    rules = AlertRules(drift=DriftRule(consecutive=1, critical=2.0))
    drifted_days(stores.tower, {0: (True, 0.15), 1: (True, 0.19)},  # x: 1.5x, 1.9x: warning
                 y={0: (True, 0.15), 1: (True, 0.2)})  # y reaches 2x on day 1
    evaluate(stores.tower, NOW, receiver, rules)
    by_subject = {r.subject: r.severity for r in episodes(stores.tower)}
    assert by_subject == {"x": "warning", "y": "critical"}
    assert {p["subject"]: p["severity"] for p in receiver.received} == {"x": "warning", "y": "critical"}
    assert list(wf.worklist(stores.tower, MODEL, now=NOW)["subject"])[0] == "y"  # critical first


def test_a_performance_drop_past_the_critical_drop_is_critical():
    from services.monitoring.severity import critical_test

    rules = AlertRules(performance=PerformanceRule(max_drop=0.05, critical=0.2))
    test = critical_test("performance", "roc_auc", rules)
    limit = 0.8 * (1 - 0.05)  # what the job stores as the threshold, for a reference of 0.8
    assert test is not None
    assert test(0.8 * 0.8, limit, "") and not test(0.8 * 0.81, limit, "")
    mae = critical_test("performance", "mae", rules)
    assert mae is not None and mae(12.0, 10 * 1.05, "") and not mae(11.9, 10 * 1.05, "")
    assert not test(float("nan"), limit, "") and not test(None, limit, "")


def test_severity_levels_are_checked_in_tower_yaml():
    with pytest.raises(ConfigError, match="must exceed max_drop"):
        parse_monitoring_config({"alerts": {"performance": {"max_drop": 0.1, "critical": 0.05}}}, {})
    with pytest.raises(ConfigError, match="at least 1"):
        parse_monitoring_config({"alerts": {"drift": {"critical": 0.5}}}, {})
    config = parse_monitoring_config({"alerts": {"drift": {"critical": 3}}}, {})
    assert config.alerts.drift.critical == 3.0 and config.alerts.latency_p95.critical == 1.0


# --------------------------------------------------------------------------------------------
# Upgrade
# --------------------------------------------------------------------------------------------
OLD_EPISODES = """CREATE TABLE alert_episodes (
    id INTEGER PRIMARY KEY, model VARCHAR(255) NOT NULL, rule VARCHAR(64) NOT NULL,
    subject VARCHAR(1000) NOT NULL DEFAULT '', metric VARCHAR(64) NOT NULL, opened_window TIMESTAMP NOT NULL,
    last_window TIMESTAMP NOT NULL, resolved_window TIMESTAMP, status VARCHAR(16) NOT NULL, value FLOAT,
    threshold FLOAT, message TEXT NOT NULL, opened_at TIMESTAMP NOT NULL, notified_at TIMESTAMP,
    resolved_at TIMESTAMP, notify_attempts INTEGER NOT NULL DEFAULT 0, notify_error TEXT, claimed_at TIMESTAMP,
    CONSTRAINT uq_alert_episodes_episode UNIQUE (model, rule, subject, opened_window))"""


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_tower_state_from_before_the_workflow_is_upgraded_and_keeps_its_episodes(tmp_path, kind):
    database = TowerDatabase(kind, tmp_path)
    engine = make_tower_engine(database.url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(OLD_EPISODES))
            conn.execute(sa.text("INSERT INTO alert_episodes (id, model, rule, subject, metric, opened_window, "
                                 "last_window, status, message, opened_at) VALUES (1, 'credit-risk', 'drift', 'x', "
                                 "'drift_score', '2026-05-01', '2026-05-01', 'notified', 'm', '2026-05-02')"))
        create_schema(engine)
        create_schema(engine)  # idempotent
        (row,) = episodes(engine)
        assert (row.id, row.status, row.severity, row.workflow, row.workflow_seq, row.assignee) == \
            (1, "notified", "warning", "open", 0, None)
        wf.act(engine, lambda m: None, DAN, 1, wf.ACKNOWLEDGE, now=NOW)
        assert episodes(engine)[0].workflow == "acknowledged"
    finally:
        engine.dispose()
        database.drop()
