"""Authorization: the roles x actions matrix cell by cell, four-eyes, and proof that every write
of the services passes through ``authorize`` (statically, by scanning the code, and dynamically,
by calling every registered write action as someone without the right)."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.auth.identity import ANONYMOUS, Actor
from services.errors import ConfigError, Forbidden
from services.governance import ledger, ledger_rows, ledger_schema, projection, promotion
from services.governance.authz import (
    WRITE_ACTIONS,
    WRITE_STEPS,
    Action,
    Resource,
    UnauthorizedWrite,
    allowed,
    authorize,
    write_action,
)
from services.governance.ledger_schema import TABLES
from services.governance.policy import Approvers, Policy, parse_policies
from services.settings import PROJECT_ROOT
from tests.support.governance import ADA, ALICE, BOB, CARL, ISSUER, OTHER_ISSUER, RITA, VIC, World, open_world, person

POLICY = Policy(model="credit-risk")  # approvers: reviewer role; overrides: admin

# ----------------------------------------------------------------------------------------------
# The matrix
# ----------------------------------------------------------------------------------------------
ACTORS = {
    "viewer": person("u-viewer", "viewer"),
    "data_scientist": person("u-ds", "data_scientist"),
    "model_owner": person("u-owner", "model_owner"),
    "reviewer": person("u-reviewer", "reviewer"),
    "admin": person("u-admin", "admin"),
    "no_role": person("u-none"),
    "unknown_role": person("u-root", "superuser"),
    "anonymous": ANONYMOUS,
}
SOMEONE = (ISSUER, "someone-else")


def _resource(actor: Actor, cell: str) -> tuple[Action, Resource]:
    """The action and resource of one matrix column, seen from ``actor``."""
    me = (actor.issuer, actor.subject)
    base = Resource(model="credit-risk", version="3", stage="Production", creator="carl-creator", policy=POLICY)
    return {
        "request_own_model": (Action.REQUEST_PROMOTION, dataclasses.replace(base, owner=actor.subject)),
        "request_others_model": (Action.REQUEST_PROMOTION, dataclasses.replace(base, owner="someone-else")),
        "rollback_own_model": (Action.ROLLBACK_REQUEST, dataclasses.replace(base, owner=actor.subject)),
        "cancel_own_request": (Action.CANCEL_REQUEST, dataclasses.replace(base, requester=me)),
        "cancel_others_request": (Action.CANCEL_REQUEST, dataclasses.replace(base, requester=SOMEONE)),
        "cancel_bots_request_on_own_model": (Action.CANCEL_REQUEST, dataclasses.replace(
            base, requester=("tower-service", "ci-bot"), requester_is_service=True, owner=actor.subject)),
        "approve": (Action.APPROVE, dataclasses.replace(base, requester=SOMEONE)),
        "reject": (Action.REJECT, dataclasses.replace(base, requester=SOMEONE)),
        "override_gate": (Action.OVERRIDE_GATE, dataclasses.replace(base, requester=SOMEONE)),
        "repair_projection": (Action.REPAIR_PROJECTION, Resource()),
    }[cell]


COLUMNS = ("request_own_model", "request_others_model", "rollback_own_model", "cancel_own_request",
           "cancel_others_request", "cancel_bots_request_on_own_model", "approve", "reject", "override_gate",
           "repair_projection")
# 1 = allowed, 0 = Forbidden; one line per role, columns in COLUMNS order.
MATRIX = {
    "viewer":         (0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "data_scientist": (0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "model_owner":    (1, 0, 1, 1, 0, 1, 0, 0, 0, 0),
    "reviewer":       (0, 0, 0, 0, 0, 0, 1, 1, 0, 0),
    "admin":          (1, 1, 1, 1, 0, 1, 1, 1, 1, 1),
    "no_role":        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "unknown_role":   (0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "anonymous":      (0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
}
CELLS = [pytest.param(role, column, bool(MATRIX[role][i]), id=f"{role}-{column}")
         for role in MATRIX for i, column in enumerate(COLUMNS)]


@pytest.mark.parametrize(("role", "column", "expected"), CELLS)
def test_roles_by_actions_matrix_cell(role: str, column: str, expected: bool) -> None:
    actor = ACTORS[role]
    action, resource = _resource(actor, column)
    if expected:
        authorize(actor, action, resource)
    else:
        with pytest.raises(Forbidden):
            authorize(actor, action, resource)
    assert allowed(actor, action, resource) is expected


def test_unknown_action_is_denied_even_for_admin() -> None:
    with pytest.raises(Forbidden, match=r"Unknown action 'delete_everything'"):
        authorize(ACTORS["admin"], "delete_everything", Resource(model="credit-risk"))


def test_a_policy_listed_identity_may_request_for_a_model_it_does_not_own() -> None:
    ci = Actor(issuer="tower-service", subject="ci-bot", name="service:ci-bot", roles=frozenset({"model_owner"}))
    policy = Policy(model="credit-risk", requesters=frozenset({("tower-service", "ci-bot")}))
    authorize(ci, Action.REQUEST_PROMOTION, Resource(model="credit-risk", owner="alice", policy=policy))
    # the same subject under another issuer is somebody else
    impostor = dataclasses.replace(ci, issuer=ISSUER)
    with pytest.raises(Forbidden, match="its owner is alice"):
        authorize(impostor, Action.REQUEST_PROMOTION, Resource(model="credit-risk", owner="alice", policy=policy))


def test_policy_approvers_by_subject_admit_only_the_listed_reviewers() -> None:
    policy = Policy(model="m", approvers=Approvers(roles=frozenset(), subjects=frozenset({(ISSUER, "rob")})))
    resource = Resource(model="m", version="1", requester=SOMEONE, policy=policy)
    authorize(person("rob", "reviewer"), Action.APPROVE, resource)
    with pytest.raises(Forbidden, match="not among the approvers"):
        authorize(RITA, Action.APPROVE, resource)
    # listed, but no longer holding the reviewer role: refused
    with pytest.raises(Forbidden, match="needs the reviewer role"):
        authorize(person("rob", "viewer"), Action.APPROVE, resource)


def test_override_needs_one_of_the_policys_override_roles() -> None:
    policy = Policy(model="m", override_roles=frozenset({"reviewer"}))
    authorize(RITA, Action.OVERRIDE_GATE, Resource(model="m", requester=SOMEONE, policy=policy))
    with pytest.raises(Forbidden, match="may not override a failed gate"):
        authorize(RITA, Action.OVERRIDE_GATE, Resource(model="m", requester=SOMEONE, policy=POLICY))


# ----------------------------------------------------------------------------------------------
# Four-eyes (pure)
# ----------------------------------------------------------------------------------------------
def _approve(actor: Actor, requester: tuple[str, str] = SOMEONE, creator: str | None = "carl") -> None:
    authorize(actor, Action.APPROVE, Resource(model="credit-risk", version="3", requester=requester,
                                              creator=creator, policy=POLICY))


def test_four_eyes_the_requester_may_never_approve_even_as_admin() -> None:
    with pytest.raises(Forbidden, match="requested this promotion"):
        _approve(ADA, requester=(ADA.issuer, ADA.subject))


def test_four_eyes_the_versions_creator_may_never_approve_even_as_admin() -> None:
    with pytest.raises(Forbidden, match="created version 3"):
        _approve(CARL, creator="carl")
    with pytest.raises(Forbidden, match="created version 3"):
        _approve(person("carl", "admin"), creator="carl")


def test_four_eyes_same_subject_with_another_email_is_still_the_requester() -> None:
    renamed = person("alice", "admin", email="alice.new@elsewhere.test")
    with pytest.raises(Forbidden, match="requested this promotion"):
        _approve(renamed, requester=(ALICE.issuer, ALICE.subject))


def test_four_eyes_same_email_with_another_subject_is_another_person() -> None:
    lookalike = person("alice-2", "reviewer", email=ALICE.email)
    _approve(lookalike, requester=(ALICE.issuer, ALICE.subject))
    other_issuer = person("alice", "reviewer", issuer=OTHER_ISSUER)
    _approve(other_issuer, requester=(ALICE.issuer, ALICE.subject))


def _bot(*roles: str, capabilities: frozenset[str] = frozenset()) -> Actor:
    return Actor(issuer="tower-service", subject="ci-bot", name="service:ci-bot", roles=frozenset(roles),
                 kind="service", capabilities=capabilities)


# ----------------------------------------------------------------------------------------------
# Service accounts request; people decide
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", [Action.APPROVE, Action.REJECT, Action.OVERRIDE_GATE])
def test_a_service_account_never_decides_whatever_roles_it_claims(action: Action) -> None:
    # the attack: a bot built (or configured before the load-time check) with reviewer/admin
    policy = Policy(model="credit-risk", override_roles=frozenset({"admin", "reviewer"}),
                    approvers=Approvers(roles=frozenset({"reviewer", "admin"}),
                                        subjects=frozenset({("tower-service", "ci-bot")})))
    resource = Resource(model="credit-risk", version="3", requester=SOMEONE, creator="carl", policy=policy)
    bot = _bot("reviewer", "admin", "model_owner")
    with pytest.raises(Forbidden, match="Service accounts request; people decide"):
        authorize(bot, action, resource)
    assert not allowed(bot, action, resource)
    # the same roles on a person decide
    authorize(dataclasses.replace(bot, issuer=ISSUER, kind="person"), action, resource)


def test_a_service_account_holds_no_admin_rights_even_if_given_the_role() -> None:
    bot = _bot("admin")
    with pytest.raises(Forbidden, match="only its owner or an admin"):
        authorize(bot, Action.REQUEST_PROMOTION, Resource(model="credit-risk", owner="alice", policy=POLICY))
    with pytest.raises(Forbidden, match="repair"):
        authorize(bot, Action.REPAIR_PROJECTION, Resource())


def test_a_service_account_may_still_request_and_cancel() -> None:
    bot = _bot("model_owner")
    policy = Policy(model="credit-risk", requesters=frozenset({("tower-service", "ci-bot")}))
    authorize(bot, Action.REQUEST_PROMOTION, Resource(model="credit-risk", owner="alice", policy=policy))
    authorize(bot, Action.CANCEL_REQUEST, Resource(model="credit-risk", requester=("tower-service", "ci-bot")))


def test_repair_is_for_admins_and_service_accounts_declared_repair() -> None:
    authorize(_bot("viewer", capabilities=frozenset({"repair"})), Action.REPAIR_PROJECTION, Resource())
    authorize(ADA, Action.REPAIR_PROJECTION, Resource())
    with pytest.raises(Forbidden, match="repair: true"):
        authorize(_bot("model_owner"), Action.REPAIR_PROJECTION, Resource())
    # the capability means nothing on a person, and gives a bot no other right
    with pytest.raises(Forbidden, match="admins only"):
        authorize(dataclasses.replace(RITA, capabilities=frozenset({"repair"})), Action.REPAIR_PROJECTION, Resource())
    with pytest.raises(Forbidden):
        authorize(_bot("viewer", capabilities=frozenset({"repair"})), Action.REQUEST_PROMOTION,
                  Resource(model="credit-risk", owner="ci-bot", policy=POLICY))


def test_a_policy_may_not_name_a_service_account_as_approver() -> None:
    with pytest.raises(ConfigError, match=r"policies.default.approvers.subjects names service account.*"
                                          r"tower-service\|ci-bot.*people decide"):
        parse_policies({"default": {"approvers": {"roles": ["reviewer"], "subjects": ["tower-service|ci-bot"]}}})
    with pytest.raises(ConfigError, match="bots\\|ci-bot"):
        parse_policies({"m": {"approvers": {"subjects": [{"issuer": "bots", "subject": "ci-bot"}]}}},
                       service_issuer="bots")
    # another issuer's "ci-bot" is a person; a bot may still be a requester
    parse_policies({"default": {"approvers": {"subjects": ["tower-service|rob"]},
                                "requesters": ["tower-service|ci-bot"]}}, service_issuer="bots")


def test_settings_refuse_a_service_approver_under_a_custom_service_issuer(tmp_path: Path) -> None:
    from services.wiring import load_settings

    config = tmp_path / "tower.yaml"
    config.write_text("auth: {service_issuer: ci-robots}\n"
                      "policies: {default: {approvers: {subjects: ['ci-robots|deployer']}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="ci-robots\\|deployer"):
        load_settings({"TOWER_CONFIG": str(config)})


def test_service_accounts_with_deciding_roles_are_refused_at_load(tmp_path: Path) -> None:
    from services.wiring import load_settings

    config = tmp_path / "tower.yaml"
    config.write_text("auth: {service_accounts: {ops-bot: {roles: [admin]}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="may not hold admin"):
        load_settings({"TOWER_CONFIG": str(config)})


# ----------------------------------------------------------------------------------------------
# Four-eyes on people, not strings
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("creator", ["alice", "Alice", "ALICE", " alice ", "alice@example.test",
                                     "Alice@Example.TEST", "\uff41\uff4c\uff49\uff43\uff45", "ali"])
def test_four_eyes_the_creator_is_recognised_by_any_of_their_names(creator: str) -> None:
    reviewer = person("alice", "reviewer", username="ali", email="alice@example.test")
    with pytest.raises(Forbidden, match="created version 3"):
        _approve(reviewer, creator=creator)


def test_four_eyes_the_creator_check_does_not_refuse_someone_else() -> None:
    _approve(person("alice", "reviewer"), creator="alice2")
    _approve(person("alice", "reviewer"), creator="bob@example.test")


@pytest.mark.parametrize("name", ["rita", "Rita", "RITA", "rita@example.test", "\uff52\uff49\uff54\uff41"])
def test_four_eyes_the_person_a_bot_requested_for_may_not_approve(name: str) -> None:
    resource = Resource(model="credit-risk", version="3", requester=("tower-service", "ci-bot"), creator="carl",
                        policy=POLICY, on_behalf_of=name)
    with pytest.raises(Forbidden, match="triggered this request"):
        authorize(RITA, Action.APPROVE, resource)
    with pytest.raises(Forbidden, match="triggered this request"):
        authorize(person("rita", "admin"), Action.OVERRIDE_GATE, resource)
    authorize(RITA, Action.REJECT, resource)  # rejecting is not four-eyes
    authorize(person("rob", "reviewer"), Action.APPROVE, resource)


def test_four_eyes_the_same_person_under_another_account_is_still_the_requester() -> None:
    # alice requested under one issuer; the person claim (a verified e-mail) joins her accounts
    other_account = person("a-123", "reviewer", issuer=OTHER_ISSUER, person="alice@example.test")
    resource = Resource(model="credit-risk", version="3", requester=(ALICE.issuer, ALICE.subject), creator="carl",
                        policy=POLICY, requester_person="person:alice@example.test")
    with pytest.raises(Forbidden, match="requested this promotion"):
        authorize(other_account, Action.APPROVE, resource)
    authorize(person("rob", "reviewer", person="rob@example.test"), Action.APPROVE, resource)
    # without a person claim the key is issuer + subject
    keyed = dataclasses.replace(resource, requester=SOMEONE, requester_person=ALICE.key)
    with pytest.raises(Forbidden, match="requested this promotion"):
        authorize(person("alice", "admin"), Action.APPROVE, keyed)


def test_a_policy_may_require_a_known_creator() -> None:
    strict = Policy(model="credit-risk", require_known_creator=True)
    unknown = Resource(model="credit-risk", version="5", requester=SOMEONE, creator=None, policy=strict)
    for action in (Action.APPROVE, Action.OVERRIDE_GATE):
        with pytest.raises(Forbidden, match=r"creator of version 5 of 'credit-risk' is unknown \(no run, no user "
                                            r"tag\) and the policy requires a known creator"):
            authorize(ADA, action, unknown)
    authorize(RITA, Action.REJECT, unknown)
    authorize(RITA, Action.APPROVE, dataclasses.replace(unknown, creator="carl"))
    authorize(RITA, Action.APPROVE, dataclasses.replace(unknown, policy=POLICY))  # off by default


def test_policy_parses_require_known_creator_and_evidence_max_age() -> None:
    policies = parse_policies({"default": {"require_known_creator": True, "evidence_max_age": 2.5},
                               "m": {"evidence_max_age": None}})
    default = policies.for_model("other")
    assert default.require_known_creator and default.evidence_max_age == timedelta(days=2.5)
    assert default.as_dict()["evidence_max_age"] == 2.5 and default.as_dict()["require_known_creator"] is True
    unlimited = policies.for_model("m")
    assert unlimited.evidence_max_age is None and unlimited.as_dict()["evidence_max_age"] is None
    plain = parse_policies({}).for_model("x")
    assert plain.evidence_max_age == timedelta(days=7) and not plain.require_known_creator
    for bad, match in (({"require_known_creator": "yes"}, "require_known_creator must be true or false"),
                       ({"evidence_max_age": -1}, "evidence_max_age must be a non-negative number"),
                       ({"evidence_max_age": 0}, "evidence_max_age is a number of days > 0"),
                       ({"evidence_max_age": "7d"}, "evidence_max_age must be"),
                       ({"evidence_max_age": 1e12}, "evidence_max_age is too large")):
        with pytest.raises(ConfigError, match=match):
            parse_policies({"default": bad})


# ----------------------------------------------------------------------------------------------
# Every write passes through authorize
# ----------------------------------------------------------------------------------------------
SCANNED = [PROJECT_ROOT / "services", PROJECT_ROOT / "app_pages", PROJECT_ROOT / "app.py"]
# Where registry writes may be *defined* or done outside the tower's decisions: the Registry wraps
# MLflow's client; the demo seeder builds the demo registry the way an ML platform would.
EXEMPT = [PROJECT_ROOT / "services" / "stores" / "registry.py", PROJECT_ROOT / "services" / "demo"]
REGISTRY_WRITES = {"set_alias", "delete_alias", "transition_stage", "set_version_tag", "set_model_tag",
                   "set_registered_model_alias", "delete_registered_model_alias", "transition_model_version_stage",
                   "set_model_version_tag", "set_registered_model_tag", "delete_model_version_tag",
                   "delete_registered_model_tag", "update_model_version", "update_registered_model"}
GOVERNANCE_TABLES = {"LEDGER", "REQUESTS", "EVIDENCE", "PROJECTIONS"}
# schema_upgrade: run at start-up by the tables' owner for no actor (tower_db.create_schema); it may
# rewrite derived columns such as an open key, never a ledger row (the chain would show it).
MARKERS = {"write_action", "write_step", "schema_upgrade"}


def _decorated(node: ast.AST) -> bool:
    for decorator in getattr(node, "decorator_list", []):
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in MARKERS:
            return True
    return False


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _is_table_write(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in ("insert", "update", "delete"):
        owner = func.value
        owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        if owner_name in GOVERNANCE_TABLES:
            return True
        if owner_name == "sa" and call.args:
            arg = call.args[0]
            return (arg.attr if isinstance(arg, ast.Attribute) else getattr(arg, "id", "")) in GOVERNANCE_TABLES
    return False


def unguarded_writes(source: str, filename: str, write_names: set[str]) -> list[str]:
    """Calls that write (registry writes, write steps, DML on governance tables) outside any
    function marked @write_action / @write_step."""
    found: list[str] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            guarded = guarded or _decorated(node)
        if isinstance(node, ast.Call) and not guarded and (_callee(node) in write_names or _is_table_write(node)):
            found.append(f"{filename}:{node.lineno} {ast.unparse(node.func)}")
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    tree = ast.parse(source, filename)
    for node in tree.body:
        visit(node, False)
    return found


def _python_files() -> Iterator[Path]:
    for root in SCANNED:
        files = [root] if root.is_file() else sorted(root.rglob("*.py")) if root.is_dir() else []
        for path in files:
            if not any(path == e or e in path.parents for e in EXEMPT):
                yield path


def test_no_registry_write_ledger_insert_or_write_step_runs_outside_a_declared_write() -> None:
    write_names = REGISTRY_WRITES | set(WRITE_STEPS.values())
    problems = []
    for path in _python_files():
        problems += unguarded_writes(path.read_text(encoding="utf-8"), str(path.relative_to(PROJECT_ROOT)),
                                     write_names)
    assert not problems, "writes outside @write_action/@write_step:\n" + "\n".join(problems)


def test_the_scanner_catches_an_unguarded_write() -> None:
    source = (
        "def sneaky(registry, conn):\n"
        "    registry.set_alias('m', 'production', '3')\n"
        "    conn.execute(LEDGER.insert().values())\n"
        "    append_decision(conn)\n"
        "@write_step()\n"
        "def fine(registry):\n"
        "    registry.set_alias('m', 'production', '3')\n"
    )
    found = unguarded_writes(source, "x.py", REGISTRY_WRITES | {"append_decision"})
    assert [f.split(" ")[0] for f in found] == ["x.py:2", "x.py:3", "x.py:4"]


def test_write_steps_refuse_to_run_outside_an_authorized_write_action(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 't.db'}")
    ledger_schema.create_tables(engine)
    with engine.begin() as conn, pytest.raises(UnauthorizedWrite):
        ledger.store_evidence(conn, "{}", "0" * 64, ledger_rows.parse_iso("2026-01-01T00:00:00.000000Z"))
    engine.dispose()


def test_a_write_action_that_never_calls_authorize_fails() -> None:
    @write_action(Action.APPROVE)
    def careless() -> str:
        return "wrote nothing, checked nothing"

    try:
        with pytest.raises(UnauthorizedWrite, match="without calling authorize"):
            careless()
    finally:  # not a real write action of the services
        WRITE_ACTIONS.pop(f"{careless.__module__}.{careless.__qualname__}")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as w:
        yield w


def _registry_state(world: World) -> tuple:
    client = world.client
    return tuple((m.name, tuple(sorted(m.aliases.items())), tuple(sorted(m.tags.items())))
                 for m in client.search_registered_models()) + tuple(
        (v.name, v.version, tuple(sorted(v.tags.items()))) for v in client.search_model_versions())


def _tower_state(world: World) -> tuple:
    with world.ctx.engine.connect() as conn:
        return tuple(tuple(conn.execute(sa.select(t)).all()) for t in TABLES)


def test_every_registered_write_action_refuses_an_actor_without_the_right(world: World) -> None:
    ctx = world.ctx
    open_request = promotion.request_promotion(ctx, ALICE, "credit-risk", "3", "Production", "better").request.id
    promoted = promotion.request_promotion(ctx, ALICE, "credit-risk", "3", "Staging", "for rollback").request.id
    promotion.approve(ctx, RITA, promoted, "ok")
    # one invocation per write action, each as someone who may not do it
    invocations: dict[str, Callable[[], object]] = {
        "services.governance.promotion.request_promotion":
            lambda: promotion.request_promotion(ctx, BOB, "credit-risk", "4", "Production", "not mine"),
        "services.governance.promotion.rollback_request":
            lambda: promotion.rollback_request(ctx, BOB, "credit-risk", "Staging", "not mine"),
        "services.governance.promotion.cancel_request":
            lambda: promotion.cancel_request(ctx, BOB, open_request, "not mine"),
        "services.governance.promotion.approve":
            lambda: promotion.approve(ctx, VIC, open_request, "viewer"),
        "services.governance.promotion.reject":
            lambda: promotion.reject(ctx, person("dan", "data_scientist"), open_request, "no"),
        "services.governance.promotion.refresh_evidence":
            lambda: promotion.refresh_evidence(ctx, VIC, open_request),
        "services.governance.projection.repair_projections":
            lambda: projection.repair_projections(ctx, RITA),
        "services.governance.projection.retry_pending":  # anyone signed in may retry; nobody unsigned
            lambda: projection.retry_pending(ctx, Actor(issuer="", subject="", name="anonymous")),
    }
    assert set(WRITE_ACTIONS) == set(invocations), "a write action without a Forbidden check here"
    before = (_registry_state(world), _tower_state(world))
    for name, call in invocations.items():
        with pytest.raises(Forbidden):
            call()
        assert (_registry_state(world), _tower_state(world)) == before, f"{name} wrote although refused"
