"""The login gate: who sees what before and after signing in, and when sign-in is refused."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from services.auth.identity import sign_in_status
from services.settings import PROJECT_ROOT
from tests.support.app_test import GOOD_AUTH, texts

# Run again on the production backends by the second pass of `make test`.
pytestmark = pytest.mark.both_backends



def app(auth: dict | None, user: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    if auth is not None:
        at.secrets["auth"] = auth
    if user is not None:
        at.user = user
    return at


def rita(**extra) -> dict:
    return {"is_logged_in": True, "iss": "http://idp", "sub": "rita", "name": "Rita Alvarez",
            "email": "rita@example.com", "groups": ["tower-reviewers"], **extra}


def test_a_visitor_sees_only_the_sign_in_page_when_sign_in_is_configured(demo_env):
    at = app(GOOD_AUTH, {"is_logged_in": False}).run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.dataframe or "user" in at.dataframe[0].value.columns  # demo users table, not the fleet
    with pytest.raises(ValueError):
        at.switch_page("app_pages/fleet.py")  # not registered for a visitor: no deep link around the gate


def test_a_signed_in_reviewer_gets_the_pages_and_her_roles_from_the_groups_claim(demo_env):
    at = app(GOOD_AUTH, rita()).run()
    assert not at.exception
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Rita Alvarez" in sidebar and "reviewer" in sidebar
    assert at.title[0].value == "Fleet overview"


def test_a_group_not_in_the_mapping_gives_no_role(demo_env):
    at = app(GOOD_AUTH, rita(groups=["everyone"])).run()
    assert "none (read-only)" in " ".join(m.value for m in at.sidebar.markdown)


def test_without_an_identity_provider_the_app_is_read_only_and_says_so(demo_env):
    at = app(None).run()
    assert not at.exception
    assert "Read-only" in texts(at, ("info",))
    assert at.title[0].value == "Fleet overview"


def test_placeholder_secrets_are_refused_outside_demo_mode(demo_env):
    at = app({**GOOD_AUTH, "cookie_secret": "change-me"}, rita()).run()
    assert not at.exception
    notice = texts(at, ("info",))
    assert "Read-only" in notice and "Placeholder secrets are refused" in notice
    assert "Rita" not in " ".join(m.value for m in at.sidebar.markdown)


def test_placeholder_secrets_are_accepted_in_demo_mode(demo_env, monkeypatch):
    monkeypatch.setenv("TOWER_DEMO", "1")
    at = app({**GOOD_AUTH, "client_secret": "demo-client-secret"}, rita()).run()
    assert "Rita Alvarez" in " ".join(m.value for m in at.sidebar.markdown)


@pytest.mark.parametrize("missing", ["cookie_secret", "server_metadata_url"])
def test_an_incomplete_auth_section_names_what_is_missing(missing):
    status = sign_in_status({k: v for k, v in GOOD_AUTH.items() if k != missing}, demo=False)
    assert not status.enabled and missing in status.problem


def test_a_short_cookie_secret_is_refused_outside_demo_mode():
    status = sign_in_status({**GOOD_AUTH, "cookie_secret": "short"}, demo=False)
    assert not status.enabled and "shorter than 16" in status.problem
    assert sign_in_status({**GOOD_AUTH, "cookie_secret": "short"}, demo=True).enabled
