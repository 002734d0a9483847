"""Outside text stays inert on the governance pages (Review queue, Promotions, Audit trail).

Model names come from the registry, requester names and e-mail addresses from the identity
provider, reasons, comments and override reasons from users: none of it may become a link, an
image, HTML, a heading or bold where Streamlit interprets markdown (st.markdown, captions,
subheaders, notices, widget labels). It must still be shown, escaped with ``notices.literal``.

Selectbox *options* (format_func) are rendered as plain text by Streamlit 1.67's frontend
(Selectbox.js puts the label in as a text child; only the widget's own label goes through
StreamlitMarkdown), so they carry the raw text: escaping them would show backslashes.
"""

from __future__ import annotations

import os
import re
import time

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from services.auth.identity import Actor
from services.governance import audit, promotion, review_state
from services.settings import PROJECT_ROOT
from tests.support.app_test import GOOD_AUTH
from tests.support.governance import HOSTILE_MODEL, ISSUER, World, open_world
from ui.notices import literal

HOSTILE_NAME = "[click](http://evil.test) ![x](http://evil.test/x.png) <b>boss</b> # H1"
HOSTILE_EMAIL = "[mail](http://evil.test)@evil.test <img src=x>"
REASON = "## Reason [r](http://evil.test/r) ![r](http://evil.test/r.png) <b>why</b>"
COMMENT = "# Comment [c](http://evil.test/c) ![c](http://evil.test/c.png) <b>ok</b> **loud**"
OVERRIDE = "# Override [o](http://evil.test/o) ![o](http://evil.test/o.png) <img src=x onerror=alert(1)>"

GROUPS = {"owners": "model_owner", "reviewers": "reviewer", "admins": "admin", "viewers": "viewer"}
# v2 of HOSTILE_MODEL has no roc_auc: the gate has no data, so approving needs an override reason.
POLICIES = yaml.safe_dump({"policies": {
    "default": {"approvals_required": 1, "approvers": {"roles": ["reviewer", "admin"]},
                "override_roles": ["admin"]},
    HOSTILE_MODEL: {"metrics": [{"name": "roc_auc", "direction": "higher", "max_regression": 0.01}]},
}}, allow_unicode=True)

MARKDOWN_KINDS = ("title", "header", "subheader", "markdown", "caption", "success", "info", "warning", "error")
WIDGET_KINDS = ("selectbox", "text_area", "text_input", "button", "expander", "tabs", "date_input",
                "time_input", "download_button")
# What hostile text turns into when markdown interprets it; the escaped form contains none of it.
ACTIVE = (re.compile(r"\]\("), re.compile(r"!\["), re.compile(r"(?<!\\)<b>"), re.compile(r"(?<!\\)<img"),
          re.compile(r"(?<!\\)\*\*bold"), re.compile(r"(?<!\\)\*\*loud"),
          re.compile(r"(?<![\\#])#{1,2} (H1|Reason|Comment|Override)"))


def requester(name: str | None = HOSTILE_NAME, email: str | None = "alice@example.test") -> Actor:
    return Actor(issuer=ISSUER, subject="alice", name=name or email or "alice", email=email,
                 roles=frozenset({"model_owner"}))


@pytest.fixture
def world(tmp_path, monkeypatch):
    with open_world(tmp_path, policies=POLICIES) as w:
        w.config.write_text(w.config.read_text(encoding="utf-8").replace(
            "  roles: {}\n", "  roles:\n" + "".join(f"    {g}: {r}\n" for g, r in GROUPS.items())), encoding="utf-8")
        env = w.env()
        for key in list(os.environ):
            if key.startswith(("TOWER_", "MLFLOW_", "WAREHOUSE_")) and key not in env:
                monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith(("TOWER_", "MLFLOW_", "WAREHOUSE_")):
                monkeypatch.setenv(key, value)
        yield w


def page(sub: str, group: str, path: str, *, name: str | None = HOSTILE_NAME, email: str | None = None,
         **query: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.secrets["auth"] = GOOD_AUTH
    claims = {"is_logged_in": True, "iss": ISSUER, "sub": sub, "exp": int(time.time() + 3600), "groups": [group],
              "email": email or f"{sub}@example.test"}
    if name is not None:
        claims["name"] = name
    at.user = claims
    at.run()
    at.switch_page(path)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception
    return at


def shown(at: AppTest) -> list[tuple[str, str]]:
    """(where, text) of every element that interprets markdown, and of every widget label."""
    out = [(kind, str(e.value)) for kind in MARKDOWN_KINDS for e in at.get(kind)]
    for kind in WIDGET_KINDS:
        out += [(f"{kind} label", str(e.label)) for e in at.get(kind)]
    return out


def assert_inert(at: AppTest, *expected: tuple[str, str]) -> None:
    """No hostile syntax reaches a markdown-rendering element; each (kind, text) is shown escaped."""
    assert not at.exception
    everything = shown(at)
    active = [(where, text) for where, text in everything if any(p.search(text) for p in ACTIVE)]
    assert not active, f"markdown/HTML from outside text reaches the page: {active}"
    for kind, text in expected:
        values = [t for where, t in everything if where == kind]
        assert any(literal(text) in v for v in values), f"{text!r} is not shown escaped in any {kind}: {values}"


def selectbox_options(at: AppTest, label: str) -> list[str]:
    return next(s for s in at.selectbox if s.label == label).options


def test_the_review_queue_shows_the_hostile_model_requester_and_reason_inert(world: World):
    promotion.request_promotion(world.ctx, requester(), HOSTILE_MODEL, "2", "Production", REASON)
    at = page("rita", "reviewers", "app_pages/review.py")
    assert_inert(at, ("subheader", HOSTILE_MODEL), ("caption", HOSTILE_NAME))
    # plain-text places: the options of the selectbox, the disabled text area's value, the table
    assert HOSTILE_MODEL in selectbox_options(at, "Request")[0] and HOSTILE_NAME in selectbox_options(at, "Request")[0]
    assert next(t for t in at.text_area if t.label == "Justification").value == REASON


def test_an_e_mail_standing_in_for_the_name_is_inert_on_the_review_queue(world: World):
    promotion.request_promotion(world.ctx, requester(name=None, email=HOSTILE_EMAIL), HOSTILE_MODEL, "2",
                                "Production", REASON)
    at = page("rita", "reviewers", "app_pages/review.py", name=None, email=HOSTILE_EMAIL.replace("mail", "me"))
    assert_inert(at, ("caption", HOSTILE_EMAIL))


def test_an_override_with_hostile_comment_and_reason_is_recorded_and_shown_inert(world: World):
    promotion.request_promotion(world.ctx, requester(), HOSTILE_MODEL, "2", "Production", REASON)
    at = page("ada", "admins", "app_pages/review.py")
    next(t for t in at.text_area if t.label.startswith("Comment")).input(COMMENT)
    next(t for t in at.text_area if t.label.startswith("Override reason")).input(OVERRIDE)
    next(b for b in at.button if b.label.startswith("Approve")).click().run()
    assert_inert(at, ("success", HOSTILE_MODEL))
    [promoted] = audit.history(world.ctx, action="promote")
    assert promoted.comment == COMMENT and promoted.override_reason == OVERRIDE and promoted.actor_name == HOSTILE_NAME


def test_promotions_shows_the_hostile_model_inert_when_requesting_and_in_my_requests(world: World):
    at = page("alice", "owners", "app_pages/promotions.py")
    at.selectbox(key="promote_model").select(HOSTILE_MODEL).run()
    next(s for s in at.selectbox if s.label == "Version").select("2").run()
    next(s for s in at.selectbox if s.label == "To stage").select("Production").run()
    next(t for t in at.text_area if t.label == "Justification").input(REASON)
    next(b for b in at.button if b.label == "Request promotion").click().run()
    assert_inert(at, ("success", HOSTILE_MODEL))
    [req] = review_state.list_requests(world.ctx, status="open")
    assert (req.model, req.requester_name, req.reason) == (HOSTILE_MODEL, HOSTILE_NAME, REASON)
    at = page("alice", "owners", "app_pages/promotions.py")
    assert_inert(at)
    assert HOSTILE_MODEL in selectbox_options(at, "Cancel an open request")[0]


def test_promotions_names_an_idp_subject_inert_when_it_owns_no_model(world: World):
    at = page("[x](http://evil.test)", "owners", "app_pages/promotions.py")
    assert_inert(at, ("info", "[x](http://evil.test)"))


def test_the_audit_trail_shows_hostile_decisions_inert(world: World):
    rid = promotion.request_promotion(world.ctx, requester(), HOSTILE_MODEL, "2", "Production", REASON).request.id
    admin = Actor(issuer=ISSUER, subject="ada", name=HOSTILE_NAME, email=HOSTILE_EMAIL, roles=frozenset({"admin"}))
    assert promotion.approve(world.ctx, admin, rid, COMMENT, OVERRIDE).promoted
    for model in (None, HOSTILE_MODEL):
        at = page("vic", "viewers", "app_pages/audit.py", **({"model": model} if model else {}))
        assert_inert(at)
        table = at.dataframe[0].value
        assert set(table["comment"]) >= {REASON, COMMENT} and OVERRIDE in set(table["override"])
        assert HOSTILE_MODEL in set(table["model"]) and HOSTILE_NAME in set(table["actor"])
    assert at.selectbox(key="model").value == HOSTILE_MODEL
