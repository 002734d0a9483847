"""The alerts page as a worklist, in AppTest on a private copy of the seeded demo, as the demo's people:
a data scientist acknowledges, assigns, snoozes and resolves; an owner acts on her model only; a
viewer and a reviewer see no action; hostile text stays text. Each action is checked in the tower state."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from services.demo.identities import DEMO_USERS
from services.settings import PROJECT_ROOT, load_settings
from tests.support.app_test import GOOD_AUTH, texts

pytestmark = pytest.mark.both_backends
ISSUER = "http://127.0.0.1:9400"
HOSTILE = "<img src=x onerror=alert(1)> **bold** [x](javascript:alert(1)) \u202eevil"


def claims(sub: str) -> dict:
    user = next(u for u in DEMO_USERS if u.sub == sub)
    return {"is_logged_in": True, "iss": ISSUER, "exp": int(time.time() + 3600), **user.claims()}


def alerts_page(sub: str, **query: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.secrets["auth"] = GOOD_AUTH
    at.user = claims(sub)
    at.run()
    at.switch_page("app_pages/alerts.py")
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


@pytest.fixture
def settings(demo_dir, monkeypatch):
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
    return load_settings()


def episodes(settings, model: str | None = None) -> list:
    engine = sa.create_engine(settings.tower_db_url)
    try:
        with engine.connect() as conn:
            query = "SELECT id, model, rule, subject, status, workflow, assignee, snoozed_until, workflow_seq " \
                    "FROM alert_episodes" + (" WHERE model = :m" if model else "") + " ORDER BY id"
            return list(conn.execute(sa.text(query), {"m": model}))
    finally:
        engine.dispose()


def actions(settings) -> list:
    engine = sa.create_engine(settings.tower_db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT episode_id, seq, action, actor_subject, actor_name, until, "
                                             "assignee, comment FROM alert_actions ORDER BY id")))
    finally:
        engine.dispose()


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_a_data_scientist_acknowledges_assigns_snoozes_and_resolves_an_alert(settings):
    at = alerts_page("sam", model="credit-risk")
    assert not at.exception
    episode = at.selectbox(key="alert_episode").value
    open_before = {e.id for e in episodes(settings) if e.status != "resolved"}
    assert episode in open_before

    button(at, "Acknowledge").click().run()
    assert "Alert acknowledged" in texts(at, ("success",))
    at.text_input[0].input("Rita Alvarez")  # a form's fields travel with its submit button
    button(at, "Assign").click().run()
    assert at.selectbox(key="alert_episode").value == episode
    button(at, "Snooze").click().run()
    at.text_area[0].input("Known: the new bureau feed; retrained.")
    button(at, "Resolve").click().run()
    assert not at.exception and not at.error, texts(at, ("error",))

    recorded = [(a.episode_id, a.seq, a.action, a.actor_subject, a.actor_name) for a in actions(settings)]
    assert recorded == [(episode, 1, "acknowledge", "sam", "Sam Lee"), (episode, 2, "assign", "sam", "Sam Lee"),
                        (episode, 3, "snooze", "sam", "Sam Lee"), (episode, 4, "resolve", "sam", "Sam Lee")]
    (row,) = [e for e in episodes(settings) if e.id == episode]
    assert (row.status, row.workflow, row.assignee, row.workflow_seq) == ("resolved", "resolved", "Rita Alvarez", 4)
    snooze = actions(settings)[2]
    assert snooze.until is not None
    # The worklist no longer lists it (open, acknowledged and snoozed by default); the history view does.
    at = alerts_page("sam", model="credit-risk")
    worklist = at.dataframe[0].value
    assert len(worklist) == len(open_before & {e.id for e in episodes(settings, "credit-risk")}) - 1
    log = at.dataframe[-1].value
    assert list(log["Action"]) == ["resolved", "snoozed", "assigned", "acknowledged"]
    assert set(log["Who"]) == {"Sam Lee"} and list(log["Comment"])[0] == "Known: the new bureau feed; retrained."


def test_the_resolved_filter_and_the_assigned_to_me_filter(settings):
    at = alerts_page("sam", model="credit-risk")
    episode = at.selectbox(key="alert_episode").value
    at.text_input[0].input("sam@demo.tower.invalid")
    button(at, "Assign").click().run()
    at.checkbox(key="alert_mine").check().run()
    mine = at.dataframe[0].value
    assert len(mine) == 1 and list(mine["Assigned to"]) == ["sam@demo.tower.invalid"]
    at.text_area[0].input("done")
    button(at, "Resolve").click().run()
    at.checkbox(key="alert_mine").uncheck().run()
    at.button_group(key="alert_states").set_value(["resolved"]).run()
    resolved = at.dataframe[0].value
    assert "resolved" in set(resolved["State"]) and not at.exception
    assert episode in {e.id for e in episodes(settings) if e.workflow == "resolved"}


@pytest.mark.parametrize("sub", ["vera", "rita"])
def test_a_viewer_or_a_reviewer_sees_the_worklist_and_no_action(settings, sub):
    at = alerts_page(sub)
    assert not at.exception and len(at.dataframe[0].value) > 0
    assert [b.label for b in at.button if b.label in ("Acknowledge", "Snooze", "Assign", "Resolve")] == []
    assert "Act on an alert" not in [s.value for s in at.subheader]


def test_an_owner_may_act_on_her_models_alerts_only(settings):
    at = alerts_page("alice")  # owner of credit-risk, not of loan-approval or fraud-detection
    assert not at.exception
    offered = at.selectbox(key="alert_episode").options
    owned = {str(e.id) for e in episodes(settings, "credit-risk") if e.status != "resolved"}
    assert offered and {o.split(" · ")[0] for o in offered} == {"credit-risk"}
    assert len(offered) == len(owned)


def test_a_hostile_assignee_and_comment_are_stored_as_given_and_shown_as_text(settings):
    at = alerts_page("sam", model="credit-risk")
    at.text_input[0].input(HOSTILE)
    button(at, "Assign").click().run()
    assert not at.exception
    assert actions(settings)[0].assignee == HOSTILE
    at = alerts_page("sam", model="credit-risk")
    assert HOSTILE in set(at.dataframe[0].value["Assigned to"])  # a table cell: text, never markup
    caption = " ".join(c.value for c in at.caption)
    assert "\\<img" in caption or HOSTILE not in caption  # the literal() escapes in the caption
