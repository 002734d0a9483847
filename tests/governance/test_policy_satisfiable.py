"""A policy that can never be met is refused when tower.yaml is loaded, naming the model and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.errors import ConfigError
from services.governance.policy import Person, check_satisfiable, parse_policies
from services.settings import PROJECT_ROOT
from services.wiring import load_settings

RITA = Person("rita", frozenset({"reviewer"}))
RAVI = Person("ravi", frozenset({"reviewer"}))
ADAM = Person("adam", frozenset({"admin"}))
ALICE = Person("alice", frozenset({"model_owner"}))


def policy_of(**section) -> tuple:
    policies = parse_policies({"default": {"approvers": {"roles": ["reviewer"]}}, "m": section})
    return policies, ["m"]


def test_more_approvals_than_people_who_may_give_them_is_refused_naming_them() -> None:
    policies, models = policy_of(approvals_required=4)
    with pytest.raises(ConfigError, match=r"policies\.m: approvals_required is 4 but only 3 people may approve "
                                          r"\(adam, ravi, rita\)") as err:
        check_satisfiable(policies, models, [RITA, RAVI, ADAM, ALICE])
    assert "approvals_required" in err.value.hint


def test_an_admin_counts_as_a_reviewer_so_three_approvals_are_possible() -> None:
    policies, models = policy_of(approvals_required=3)
    check_satisfiable(policies, models, [RITA, RAVI, ADAM, ALICE])


def test_overrides_by_a_role_nobody_who_may_approve_holds_are_refused() -> None:
    policies, models = policy_of(override_roles=["data_scientist"])
    with pytest.raises(ConfigError, match=r"policies\.m: only the roles data_scientist may override"):
        check_satisfiable(policies, models, [RITA, RAVI, ADAM, Person("sam", frozenset({"data_scientist"}))])


def test_a_policy_without_overrides_is_not_refused_for_it() -> None:
    policies, models = policy_of(override_roles=[])
    check_satisfiable(policies, models, [RITA])


def test_the_default_section_is_checked_for_every_model_without_its_own() -> None:
    policies = parse_policies({"default": {"approvals_required": 2, "approvers": {"roles": ["reviewer"]}}})
    with pytest.raises(ConfigError, match=r"policies\.other-model: approvals_required is 2 but only 1"):
        check_satisfiable(policies, ["other-model"], [RITA])


def test_the_demo_policies_can_be_met_by_the_demo_people() -> None:
    settings = load_settings({"TOWER_DEMO": "1"})  # checked against the demo's identity provider
    assert settings.demo


def test_the_demo_refuses_at_start_a_policy_its_people_cannot_meet(tmp_path: Path) -> None:
    config = yaml.safe_load((PROJECT_ROOT / "tower.yaml").read_text())
    config["policies"]["credit-risk"]["approvals_required"] = 5
    path = tmp_path / "tower.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"policies\.credit-risk: approvals_required is 5"):
        load_settings({"TOWER_CONFIG": str(path), "TOWER_DEMO": "1"})
