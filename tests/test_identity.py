"""Identity: issuer + subject identify a person; roles only from mapped groups (deny by default)."""

from __future__ import annotations

import pytest

from services.errors import ConfigError
from services.identity import ANONYMOUS, actor_from_claims, parse_auth_config, service_actor

AUTH = parse_auth_config({"roles_claim": "groups",
                          "roles": {"g-review": "reviewer", "g-admin": "admin"},
                          "service_accounts": {"ci-bot": {"roles": ["model_owner"]}}})


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
    bot = service_actor("ci-bot", AUTH)
    assert bot.roles == {"model_owner"} and bot.issuer == "tower-service"
    with pytest.raises(ConfigError, match="not declared"):
        service_actor("intruder", AUTH)


def test_unknown_roles_in_the_config_are_refused():
    with pytest.raises(ConfigError, match="'superuser' is not a role"):
        parse_auth_config({"roles": {"g": "superuser"}})
