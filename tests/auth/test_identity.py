"""Identity: issuer + subject identify a person; roles only from mapped groups (deny by default)."""

from __future__ import annotations

import pytest

from services.auth.identity import (
    ANONYMOUS,
    DEMO_SERVICE_TOKEN,
    Actor,
    actor_from_claims,
    normalize_name,
    parse_auth_config,
    service_actor,
)
from services.auth.service_tokens import hash_token, is_token_hash, new_token, verify_token
from services.errors import ConfigError, Forbidden
from services.secrets_file import load_secrets, secrets_path, service_account_hashes

CI_TOKEN = "ci-token-for-identity-tests"
CI_HASH = hash_token(CI_TOKEN)
DEMO_HASH = hash_token(DEMO_SERVICE_TOKEN)
AUTH = parse_auth_config({"roles_claim": "groups",
                          "roles": {"g-review": "reviewer", "g-admin": "admin"},
                          "service_accounts": {"ci-bot": {"roles": ["model_owner"], "token_hash": CI_HASH},
                                               "demo-bot": {"roles": ["model_owner"], "token_hash": DEMO_HASH},
                                               "ops-bot": {"roles": ["viewer"], "repair": True},
                                               "hashless-bot": {"roles": ["viewer"]}}})


def test_roles_come_only_from_mapped_groups():
    actor = actor_from_claims({"iss": "i", "sub": "s", "groups": ["g-review", "unknown", 7]}, AUTH)
    assert actor.roles == frozenset({"reviewer"})


def test_a_single_string_claim_counts_as_one_group():
    assert actor_from_claims({"iss": "i", "sub": "s", "groups": "g-admin"}, AUTH).roles == {"admin"}


def test_same_email_different_subject_is_another_person():
    a = actor_from_claims({"iss": "i", "sub": "1", "email": "x@y"}, AUTH)
    b = actor_from_claims({"iss": "i", "sub": "2", "email": "x@y"}, AUTH)
    assert a.key != b.key and not a.is_same_person(b.issuer, b.subject)
    assert a.is_same_person("i", "1")


def test_claims_without_issuer_or_subject_are_anonymous():
    assert actor_from_claims({"email": "x@y", "groups": ["g-admin"]}, AUTH) is ANONYMOUS
    assert not ANONYMOUS.authenticated and not ANONYMOUS.is_same_person("", "")


def test_service_accounts_must_be_declared():
    bot = service_actor("ci-bot", AUTH, CI_TOKEN, demo=False)
    assert bot.roles == {"model_owner"} and bot.issuer == "tower-service" and bot.kind == "service"
    with pytest.raises(ConfigError, match="not declared"):
        service_actor("intruder", AUTH, CI_TOKEN, demo=False)


def test_unknown_roles_in_the_config_are_refused():
    with pytest.raises(ConfigError, match="'superuser' is not a role"):
        parse_auth_config({"roles": {"g": "superuser"}})


# ----------------------------------------------------------------------------------------------
# Service accounts prove who they are
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, ""])
def test_naming_a_service_account_without_its_token_is_refused(token):
    with pytest.raises(ConfigError, match="TOWER_SERVICE_TOKEN is not set: naming the account is not enough"):
        service_actor("ci-bot", AUTH, token, demo=False)


@pytest.mark.parametrize("token", ["wrong", CI_TOKEN + "x", CI_TOKEN.upper(), DEMO_SERVICE_TOKEN + "!"])
def test_a_wrong_token_is_refused_without_saying_which_part_is_wrong(token):
    with pytest.raises(Forbidden) as caught:
        service_actor("ci-bot", AUTH, token, demo=True)
    message = str(caught.value)
    assert "do not match" in message and "ci-bot" not in message and token not in message


def test_the_token_of_one_account_does_not_open_another():
    with pytest.raises(Forbidden, match="do not match"):
        service_actor("demo-bot", AUTH, CI_TOKEN, demo=True)


def test_an_account_without_a_hash_is_refused_with_how_to_make_one():
    with pytest.raises(ConfigError, match="no token hash configured") as caught:
        service_actor("hashless-bot", AUTH, "anything", demo=True)
    assert "token new" in caught.value.hint


def test_the_published_demo_token_is_refused_outside_demo_mode():
    assert service_actor("demo-bot", AUTH, DEMO_SERVICE_TOKEN, demo=True).subject == "demo-bot"
    with pytest.raises(Forbidden, match="published demo token is refused outside demo mode"):
        service_actor("demo-bot", AUTH, DEMO_SERVICE_TOKEN, demo=False)


def test_the_committed_tower_yaml_gives_ci_bot_only_the_demo_token():
    from services.auth.identity import auth_config
    from services.settings import PROJECT_ROOT, load_settings

    auth = auth_config(load_settings({"TOWER_CONFIG": str(PROJECT_ROOT / "tower.yaml")}))
    assert service_actor("ci-bot", auth, DEMO_SERVICE_TOKEN, demo=True).roles == {"model_owner"}
    with pytest.raises(Forbidden):
        service_actor("ci-bot", auth, DEMO_SERVICE_TOKEN, demo=False)


def test_a_hash_from_the_secrets_file_replaces_the_one_in_tower_yaml():
    own = new_token()
    secret_hashes = {"ci-bot": hash_token(own), "hashless-bot": hash_token(own)}
    assert service_actor("ci-bot", AUTH, own, demo=False, secret_hashes=secret_hashes).subject == "ci-bot"
    assert service_actor("hashless-bot", AUTH, own, demo=False, secret_hashes=secret_hashes).roles == {"viewer"}
    with pytest.raises(Forbidden):  # the tower.yaml hash no longer opens it
        service_actor("ci-bot", AUTH, CI_TOKEN, demo=False, secret_hashes=secret_hashes)
    with pytest.raises(ConfigError, match="malformed"):
        service_actor("ci-bot", AUTH, own, demo=False, secret_hashes={"ci-bot": "plain-text-token"})


def test_token_hashes_are_salted_scrypt_and_verify_in_constant_time():
    token = new_token()
    first, second = hash_token(token), hash_token(token)
    assert first != second and first.startswith("scrypt$16384$8$1$") and token not in first
    assert verify_token(token, first) and verify_token(token, second)
    assert not verify_token(token + "x", first) and not verify_token("", first)
    for bad in ("", "scrypt$1$8$1$AAAA$AAAA", "md5$x", first.replace("scrypt", "bcrypt"),
                "scrypt$1048576$8$1$" + first.split("$", 4)[4]):  # n beyond the bound
        assert not is_token_hash(bad) and not verify_token(token, bad)


def test_service_accounts_may_not_hold_deciding_roles():
    for role in ("reviewer", "admin"):
        with pytest.raises(ConfigError, match="service account may not hold " + role):
            parse_auth_config({"service_accounts": {"bot": {"roles": ["model_owner", role]}}})


def test_service_account_entries_are_checked():
    with pytest.raises(ConfigError, match=r"ci-bot.token_hash"):
        parse_auth_config({"service_accounts": {"ci-bot": {"roles": [], "token_hash": "s3cr3t"}}})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_auth_config({"service_accounts": {"ci-bot": {"roles": [], "token": "s3cr3t"}}})
    with pytest.raises(ConfigError, match="repair must be true or false"):
        parse_auth_config({"service_accounts": {"ci-bot": {"roles": [], "repair": "yes"}}})
    assert service_actor("ops-bot", AUTH, "t", demo=True, secret_hashes={"ops-bot": hash_token("t")}
                         ).capabilities == {"repair"}


def test_the_secrets_file_is_read_without_streamlit(tmp_path, monkeypatch):
    path = tmp_path / "secrets.toml"
    path.write_text(f'[auth]\nclient_id = "x"\n[service_accounts]\nci-bot = "{CI_HASH}"\n', encoding="utf-8")
    monkeypatch.setenv("TOWER_SECRETS_FILE", str(path))
    assert secrets_path() == path and load_secrets()["auth"] == {"client_id": "x"}
    assert service_account_hashes() == {"ci-bot": CI_HASH}
    monkeypatch.setenv("TOWER_SECRETS_FILE", str(tmp_path / "absent.toml"))
    assert service_account_hashes() == {}
    path.write_text("[service_accounts\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        service_account_hashes(path)
    path.write_text("[service_accounts]\nci-bot = 7\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must map account names to token hashes"):
        service_account_hashes(path)


# ----------------------------------------------------------------------------------------------
# Signed-in people
# ----------------------------------------------------------------------------------------------
def test_an_id_token_of_the_service_issuer_is_anonymous():
    claims = {"iss": "tower-service", "sub": "ci-bot", "groups": ["g-admin"]}
    assert actor_from_claims(claims, AUTH) is ANONYMOUS
    custom = parse_auth_config({"service_issuer": "bots", "roles": {"g-admin": "admin"}})
    assert actor_from_claims({**claims, "iss": "bots"}, custom) is ANONYMOUS
    assert actor_from_claims(claims, custom).kind == "person"  # another issuer than the bots'


def test_names_are_normalised_over_subject_username_and_email():
    assert normalize_name("  \uff21\uff4c\uff49\uff43\uff45 ") == "alice"
    assert normalize_name("STRASSE") == normalize_name("straße")
    actor = actor_from_claims({"iss": "i", "sub": "00u1", "preferred_username": "Alice",
                               "email": "Alice@Example.test"}, AUTH)
    assert actor.username == "Alice" and actor.names == {"00u1", "alice", "alice@example.test"}
    for name in ("alice", "ALICE", "alice@example.test", "\uff41\uff4c\uff49\uff43\uff45", " 00U1 "):
        assert actor.answers_to(name), name
    for name in (None, "", "  ", "alice2", "bob@example.test"):
        assert not actor.answers_to(name), name


def test_person_claim_joins_accounts_only_on_a_verified_email():
    auth = parse_auth_config({"person_claim": "email"})
    verified = {"iss": "i", "sub": "1", "email": "Alice@Example.test", "email_verified": True}
    a = actor_from_claims(verified, auth)
    b = actor_from_claims({**verified, "iss": "j", "sub": "2", "email": "alice@example.test"}, auth)
    assert a.person == "alice@example.test" and a.person_key == b.person_key == "person:alice@example.test"
    assert a.key != b.key
    for unverified in ({**verified, "email_verified": False}, {**verified, "email_verified": "true"},
                       {k: v for k, v in verified.items() if k != "email_verified"}):
        actor = actor_from_claims(unverified, auth)
        assert actor.person is None and actor.person_key == actor.key == "i|1"
    # without person_claim the key is issuer + subject
    assert actor_from_claims(verified, AUTH).person_key == "i|1"
    other = actor_from_claims({"iss": "i", "sub": "3", "employee_id": " E-42 "},
                              parse_auth_config({"person_claim": "employee_id"}))
    assert other.person_key == "person:e-42"


def test_actor_defaults_to_a_person():
    actor = Actor(issuer="i", subject="s", name="S")
    assert actor.kind == "person" and not actor.is_service and actor.capabilities == frozenset()


def test_a_misspelt_auth_key_is_refused_naming_it_so_no_check_is_silently_off():
    from services.auth.identity import parse_auth_config
    from services.errors import ConfigError

    with pytest.raises(ConfigError, match=r"auth: unknown key\(s\) directroy"):
        parse_auth_config({"roles": {}, "directroy": {"kind": "scim"}})
