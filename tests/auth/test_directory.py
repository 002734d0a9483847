"""The directory client against a real SCIM 2.0 endpoint on loopback (tests/support/scim_server.py):
who the directory says holds which rights now, what it says of people it does not know or knows as
inactive, a hostile subject that tries to widen the filter, and a directory that does not answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.auth.directory import (
    TOKEN_ENV,
    DecisionDirectory,
    DirectoryRights,
    DirectoryUnavailable,
    ScimDirectory,
    directory_of,
    scim_filter,
)
from services.auth.directory_config import DirectoryConfig, parse_directory_config
from services.errors import ConfigError
from services.wiring import load_settings
from tests.support.scim_server import ScimServer, matches, parse_filter

ISSUER = "https://idp.test"
MAPPING = {"tower-reviewers": "reviewer", "tower-admins": "admin", "g-tower-owners": "model_owner"}


@pytest.fixture
def scim() -> Iterator[ScimServer]:
    server = ScimServer().start()
    server.add_user("rita", "tower-reviewers", email="Rita@Example.test")
    server.add_user("ravi", "tower-reviewers", "unmapped-group")
    server.add_user("sam", "data-people")
    try:
        yield server
    finally:
        server.stop()


def client(scim: ScimServer, attribute: str = "externalId", claim: str = "subject", timeout_s: float = 2.0,
           token: str | None = None) -> ScimDirectory:
    config = DirectoryConfig("scim", ISSUER, scim.base_url, attribute, claim, timeout_s)
    return ScimDirectory(config, token or scim.token, MAPPING)


# ------------------------------------------------------------------------------------------------
# What the directory says
# ------------------------------------------------------------------------------------------------
def test_groups_map_to_tower_roles_by_display_and_by_value(scim: ScimServer) -> None:
    scim.add_user("olga", "tower-owners")  # its group's value is "g-tower-owners", mapped by value
    directory = client(scim)
    assert directory.current_rights(ISSUER, "rita", None) == DirectoryRights(frozenset({"reviewer"}))
    assert directory.current_rights(ISSUER, "ravi", None).roles == {"reviewer"}  # unmapped groups give nothing
    assert directory.current_rights(ISSUER, "olga", None).roles == {"model_owner"}


def test_a_person_in_no_mapped_group_differs_from_a_person_the_directory_does_not_know(scim: ScimServer) -> None:
    directory = client(scim)
    sam = directory.current_rights(ISSUER, "sam", None)
    nobody = directory.current_rights(ISSUER, "mallory", None)
    assert (sam.found, sam.roles) == (True, frozenset())
    assert (nobody.found, nobody.roles, nobody.absent) == (False, frozenset(), "is not in the directory")


def test_removing_someone_from_the_reviewer_group_is_seen_at_the_next_question(scim: ScimServer) -> None:
    directory = client(scim)
    assert directory.current_rights(ISSUER, "rita", None).roles == {"reviewer"}
    scim.set_groups("rita")
    assert directory.current_rights(ISSUER, "rita", None).roles == frozenset()


@pytest.mark.parametrize("active", [False, "false", None])
def test_an_inactive_person_has_no_rights_whatever_their_groups(scim: ScimServer, active: object) -> None:
    scim.set_active("rita", active)  # a string or null is not `true`: deny by default
    rights = client(scim).current_rights(ISSUER, "rita", None)
    assert (rights.roles, rights.absent) == (frozenset(), "is deactivated in the directory")


def test_a_user_without_the_optional_active_attribute_is_active(scim: ScimServer) -> None:
    scim.add_user("omar", "tower-reviewers", active=None)
    assert client(scim).current_rights(ISSUER, "omar", None).roles == {"reviewer"}


def test_matching_by_email_is_case_insensitive_and_needs_an_email(scim: ScimServer) -> None:
    directory = client(scim, attribute="emails.value", claim="email")
    assert directory.current_rights(ISSUER, "whatever", "rita@example.TEST").roles == {"reviewer"}
    assert directory.current_rights(ISSUER, "rita", None).absent == \
        "has no e-mail address the directory could be asked about"
    assert scim.seen == ['emails.value eq "rita@example.TEST"']


def test_two_people_behind_one_value_give_no_rights(scim: ScimServer) -> None:
    scim.add_user("rita-2", "tower-admins", user_name="RITA")
    rights = client(scim, attribute="userName").current_rights(ISSUER, "rita", None)
    assert (rights.roles, rights.absent) == (frozenset(), "matches 2 people in the directory")


# ------------------------------------------------------------------------------------------------
# A hostile subject cannot widen the filter
# ------------------------------------------------------------------------------------------------
# Pasted into the filter unescaped, each would name rita, or everyone.
HOSTILE = ['x" or externalId eq "rita', 'x" or externalId pr or externalId eq "',
           'rita" and externalId pr and externalId eq "rita']


@pytest.mark.parametrize("subject", [*HOSTILE, 'x\\" or externalId eq \\"rita', "rita\u0000", "x\n or 1"])
def test_a_hostile_subject_stays_one_string_in_the_filter(scim: ScimServer, subject: str) -> None:
    if subject in HOSTILE:  # the server is honest: the same text, unescaped, WOULD widen the filter
        assert any(matches(parse_filter(f'externalId eq "{subject}"'), u) for u in scim.users.values())
    rights = client(scim).current_rights(ISSUER, subject, None)
    assert (rights.roles, rights.absent) == (frozenset(), "is not in the directory")
    tree = parse_filter(scim.seen[-1])
    assert tree == ("cmp", "externalId", "eq", subject)  # one comparison, with the whole subject as value


def test_the_filter_value_is_a_json_string() -> None:
    assert scim_filter("userName", 'a"b\\c\n') == 'userName eq "a\\"b\\\\c\\n"'


def test_a_server_that_ignores_the_filter_cannot_lend_someone_elses_rights(scim: ScimServer) -> None:
    scim.ignore_filter = True  # answers every user, rita (a reviewer) included
    assert client(scim).current_rights(ISSUER, "mallory", None).absent == "is not in the directory"
    assert client(scim).current_rights(ISSUER, "ravi", None).roles == {"reviewer"}


# ------------------------------------------------------------------------------------------------
# No answer is no answer
# ------------------------------------------------------------------------------------------------
def test_a_failing_directory_is_unavailable_not_an_empty_answer(scim: ScimServer) -> None:
    scim.failing = True
    with pytest.raises(DirectoryUnavailable, match="answered HTTP 503"):
        client(scim).current_rights(ISSUER, "rita", None)


def test_a_wrong_token_is_unavailable_and_names_the_variable(scim: ScimServer) -> None:
    with pytest.raises(DirectoryUnavailable, match="refused the tower's token") as err:
        client(scim, token="not-the-token").current_rights(ISSUER, "rita", None)
    assert TOKEN_ENV in err.value.hint


def test_a_stopped_directory_is_unavailable(scim: ScimServer) -> None:
    directory = client(scim)
    scim.stop()
    with pytest.raises(DirectoryUnavailable, match="did not answer"):
        directory.current_rights(ISSUER, "rita", None)


def test_a_directory_that_hangs_is_given_up_on_within_its_timeout(scim: ScimServer) -> None:
    scim.hang_s = 3.0
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable, match="did not answer"):
        client(scim, timeout_s=0.3).current_rights(ISSUER, "rita", None)
    assert time.monotonic() - started < 2.0


def test_one_decision_asks_once_per_person_and_keeps_a_failure(scim: ScimServer) -> None:
    memo = DecisionDirectory(client(scim))
    for _ in range(3):
        memo.current_rights(ISSUER, "rita", None)
    memo.current_rights(ISSUER, "ravi", None)
    assert len(scim.seen) == 2
    scim.failing = True
    for _ in range(2):
        with pytest.raises(DirectoryUnavailable):
            memo.current_rights(ISSUER, "sam", None)
    scim.failing = False
    with pytest.raises(DirectoryUnavailable):  # the same answer for the whole decision
        memo.current_rights(ISSUER, "sam", None)


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------
GOOD = {"kind": "scim", "issuer": ISSUER, "base_url": "https://idp.test/scim/v2/",
        "match": {"attribute": "externalId", "claim": "subject"}}


def test_a_directory_section_parses_with_a_default_timeout() -> None:
    assert parse_directory_config(GOOD) == DirectoryConfig("scim", ISSUER, "https://idp.test/scim/v2",
                                                           "externalId", "subject", 5.0)
    assert parse_directory_config(None) is None


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "ldap"}, "kind must be one of scim"),
    ({"issuer": ""}, "issuer must name"),
    ({"base_url": "http://idp.test/scim"}, "must use https"),
    ({"base_url": "ftp://idp.test/scim"}, "http\\(s\\) URL"),
    ({"base_url": "https://user:pw@idp.test/scim"}, "must not carry credentials"),
    ({"match": {"attribute": "displayName", "claim": "subject"}}, "attribute must be one of"),
    ({"match": {"attribute": "userName", "claim": "name"}}, "claim must be one of"),
    ({"match": {"attribute": "userName", "claim": "subject", "caseExact": True}}, "unknown key"),
    ({"timeout_s": 0}, "timeout_s must be"),
    ({"timeout_s": 600}, "timeout_s must be"),
    ({"timeout_s": True}, "timeout_s must be"),
    ({"timeout_s": "nan"}, "timeout_s must be"),
    ({"token": "in-the-yaml"}, "unknown key\\(s\\) token"),
])
def test_a_bad_directory_section_is_refused_naming_the_field(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_directory_config({**GOOD, **change})


def test_http_is_allowed_on_loopback_only() -> None:
    assert parse_directory_config({**GOOD, "base_url": "http://127.0.0.1:8080/scim"}) is not None
    assert parse_directory_config({**GOOD, "base_url": "http://localhost/scim"}) is not None


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tower.yaml"
    path.write_text(f"""
auth:
  roles: {{tower-reviewers: reviewer}}
  directory:
    kind: scim
    issuer: {ISSUER}
    base_url: https://idp.test/scim/v2
    match: {{attribute: externalId, claim: subject}}
{extra}""", encoding="utf-8")
    return path


def test_a_configured_directory_without_a_token_is_refused_at_start(tmp_path: Path) -> None:
    env = {"TOWER_CONFIG": str(_config(tmp_path)), "TOWER_SECRETS_FILE": str(tmp_path / "none.toml")}
    with pytest.raises(ConfigError, match="token is not set"):
        load_settings(env)
    settings = load_settings({**env, TOKEN_ENV: "a-real-token-0123"})
    directory = directory_of(settings)
    assert isinstance(directory, ScimDirectory) and directory.covers(ISSUER) and not directory.covers("other")


def test_the_token_may_come_from_the_secrets_file_but_never_a_placeholder(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[directory]\ntoken = "from-the-secrets-file-42"\n', encoding="utf-8")
    env = {"TOWER_CONFIG": str(_config(tmp_path)), "TOWER_SECRETS_FILE": str(secrets)}
    assert directory_of(load_settings(env)) is not None
    with pytest.raises(ConfigError, match="placeholder"):
        load_settings({**env, TOKEN_ENV: "change-me"})


def test_without_a_directory_section_there_is_no_directory(tmp_path: Path) -> None:
    path = tmp_path / "tower.yaml"
    path.write_text("auth:\n  roles: {tower-reviewers: reviewer}\n", encoding="utf-8")
    assert directory_of(load_settings({"TOWER_CONFIG": str(path)})) is None

