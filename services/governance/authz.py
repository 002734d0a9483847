"""Authorization: one function, ``authorize(actor, action, resource)``, deny by default.

It is pure: the caller resolves the facts (the model's owner tag, the version's creator, the
request's requester, the model's policy) into a :class:`Resource` and passes the actor with the
roles it holds *now*, so a reviewer removed from the group loses the right at the next decision.

Every service function that writes is declared with ``@write_action(Action...)``: the decorator
registers it in ``WRITE_ACTIONS`` and opens a write scope; the write primitives (ledger rows,
registry tags and aliases) are ``@write_step`` functions that refuse to run unless ``authorize``
has succeeded in the current scope. So no write can happen without an authorization check, and a
test lists every write action and scans the code for writes outside these markers.

The rules (roles from ``services.auth.identity.ROLES``; admin holds every right of reviewer and owner):

| action             | who                                                                      |
|--------------------|--------------------------------------------------------------------------|
| request_promotion, | model_owner whose subject is the model's ``owner`` tag, or an identity    |
| rollback_request   | in the policy's ``requesters``; admin                                     |
| cancel_request     | the requester (same issuer + subject), still model_owner or admin; for a  |
|                    | service account's request also the model's owner (a person)               |
| approve            | a *person*, reviewer/admin allowed by the policy's approvers; never the   |
|                    | requester, the person a bot requested for, or the version's creator       |
|                    | (four-eyes, even for admins)                                              |
| reject             | a person, reviewer/admin allowed by the policy's approvers                |
| override_gate      | as approve, and holding one of the policy's ``override_roles``            |
| repair_projection  | a person holding admin, or a service account declared ``repair: true``    |

viewer and data_scientist read only; an unknown action or role gives nothing. Service accounts
request; people decide: a service actor never approves, rejects or overrides, whatever roles it
claims, and holds at most viewer, data_scientist and model_owner.

Four-eyes compares people, not strings: the requester is the same issuer + subject or the same
person key (``auth.person_claim``); the creator (an MLflow user name) and the on-behalf-of name
match any of the approver's names (subject, username, e-mail) normalised with NFKC + casefold.
A policy with ``require_known_creator`` refuses approval while the creator is unknown.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from services.auth.identity import ROLES, SERVICE_ROLES, Actor
from services.errors import Forbidden
from services.governance.policy import Policy

F = TypeVar("F", bound=Callable[..., Any])


class Action(StrEnum):
    REQUEST_PROMOTION = "request_promotion"
    ROLLBACK_REQUEST = "rollback_request"
    CANCEL_REQUEST = "cancel_request"
    APPROVE = "approve"
    REJECT = "reject"
    OVERRIDE_GATE = "override_gate"
    REPAIR_PROJECTION = "repair_projection"
    RETRY_PROJECTION = "retry_projection"  # apply what verified ledger rows already decided; decides nothing


@dataclass(frozen=True)
class Resource:
    """What an action is about, with the facts authorization needs (resolved by the caller)."""

    model: str | None = None
    version: str | None = None
    stage: str | None = None
    owner: str | None = None  # the registered model's ``owner`` tag (a subject)
    creator: str | None = None  # who created the version in MLflow (version user, else run user)
    requester: tuple[str, str] | None = None  # (issuer, subject) of the request's author
    policy: Policy | None = None
    on_behalf_of: str | None = None  # the person a service account requested for (a name)
    requester_person: str | None = None  # the requester's person key (Actor.person_key)
    requester_is_service: bool = False  # the request was filed by a service account (CI)


# Roles an admin holds implicitly: "everything a reviewer and an owner can".
IMPLIED = {"admin": frozenset({"reviewer", "model_owner"})}


def effective_roles(actor: Actor) -> frozenset[str]:
    allowed_roles = SERVICE_ROLES if actor.is_service else ROLES  # a bot never holds reviewer or admin
    known = frozenset(r for r in actor.roles if r in allowed_roles)  # an unknown role gives nothing
    implied = frozenset().union(*(IMPLIED.get(r, frozenset()) for r in known))
    return known | implied


def _who(actor: Actor) -> str:
    return actor.name or actor.subject


def _deny(message: str, hint: str = "") -> Forbidden:
    return Forbidden(message, hint)


def _may_request(actor: Actor, roles: frozenset[str], resource: Resource, verb: str) -> None:
    if "admin" in roles:
        return
    if "model_owner" not in roles:
        raise _deny(f"{_who(actor)} may not {verb} '{resource.model}': only its owner or an admin may.",
                    "Ask the model's owner, or an admin, to make the request.")
    owner_ok = resource.owner is not None and resource.owner == actor.subject
    policy = resource.policy
    listed = policy is not None and (actor.issuer, actor.subject) in policy.requesters
    if not (owner_ok or listed):
        raise _deny(f"{_who(actor)} may not {verb} '{resource.model}': its owner is "
                    f"{resource.owner or 'not set'} (the registered model's 'owner' tag).")


def _may_review(actor: Actor, roles: frozenset[str], resource: Resource, verb: str) -> Policy:
    if not roles & {"reviewer", "admin"}:
        raise _deny(f"{_who(actor)} may not {verb} promotion requests: it needs the reviewer role.")
    policy = resource.policy
    if policy is None:
        raise _deny(f"No policy applies to '{resource.model}', so nobody may {verb} its requests.")
    listed = bool(roles & policy.approvers.roles) or (actor.issuer, actor.subject) in policy.approvers.subjects
    if not listed:
        raise _deny(f"{_who(actor)} is not among the approvers of '{resource.model}' in its policy.",
                    "The policy's approvers list who may decide on this model.")
    return policy


def _is_requester(actor: Actor, resource: Resource) -> bool:
    if resource.requester is not None and actor.is_same_person(*resource.requester):
        return True
    return resource.requester_person is not None and resource.requester_person in (actor.person_key, actor.key)


def _four_eyes(actor: Actor, resource: Resource) -> None:
    if _is_requester(actor, resource):
        raise _deny(f"{_who(actor)} requested this promotion and may not approve it (four-eyes rule).")
    if resource.on_behalf_of is not None and actor.answers_to(resource.on_behalf_of):
        raise _deny(f"{_who(actor)} triggered this request (a service account requested on their behalf) "
                    "and may not approve it (four-eyes rule).")
    # MLflow records the creator as a user name without issuer: matched on any of the actor's
    # names, normalised, whatever the issuer (errs towards refusing).
    if resource.creator is not None and actor.answers_to(resource.creator):
        raise _deny(f"{_who(actor)} created version {resource.version} of '{resource.model}' and may not "
                    "approve its promotion (four-eyes rule).")
    if resource.creator is None and resource.policy is not None and resource.policy.require_known_creator:
        raise _deny(f"The creator of version {resource.version} of '{resource.model}' is unknown (no run, no "
                    "user tag) and the policy requires a known creator.",
                    "Record who created the version (its MLflow user or run), then decide.")


def authorize(actor: Actor, action: Action | str, resource: Resource) -> None:
    """Return if ``actor`` may perform ``action`` on ``resource``; raise Forbidden otherwise."""
    try:
        action = Action(action)
    except ValueError:
        raise _deny(f"Unknown action {action!r}: refused.") from None
    if not actor.authenticated:
        raise _deny("You are not signed in: the tower is read-only.", "Sign in to request or decide.")
    roles = effective_roles(actor)
    if actor.is_service and action in (Action.APPROVE, Action.REJECT, Action.OVERRIDE_GATE):
        raise _deny(f"{_who(actor)} is a service account and may not {action.value.replace('_', ' ')}. "
                    "Service accounts request; people decide.",
                    "A reviewer decides in the tower's Promotions page.")
    if action in (Action.REQUEST_PROMOTION, Action.ROLLBACK_REQUEST):
        _may_request(actor, roles, resource, "request promotion of" if action == Action.REQUEST_PROMOTION
                     else "request a rollback of")
    elif action == Action.CANCEL_REQUEST:
        is_requester = resource.requester is not None and actor.is_same_person(*resource.requester)
        # A bot's request answers to the model's owner: she may withdraw what CI filed on her model.
        owns_bots_request = (resource.requester_is_service and not actor.is_service
                             and resource.owner is not None and resource.owner == actor.subject)
        if not (is_requester or owns_bots_request):
            raise _deny(f"{_who(actor)} did not make this request and may not cancel it.",
                        "Only the requester (or, for a service account's request, the model's owner) may "
                        "cancel; a reviewer may reject it.")
        if not roles & {"model_owner", "admin"}:
            raise _deny(f"{_who(actor)} no longer holds the model_owner role and may not cancel requests.")
    elif action == Action.APPROVE:
        _may_review(actor, roles, resource, "approve")
        _four_eyes(actor, resource)
    elif action == Action.REJECT:
        _may_review(actor, roles, resource, "reject")
    elif action == Action.OVERRIDE_GATE:
        policy = _may_review(actor, roles, resource, "approve")
        _four_eyes(actor, resource)
        if not roles & policy.override_roles:
            raise _deny(f"{_who(actor)} may not override a failed gate of '{resource.model}': that needs "
                        f"one of the roles {', '.join(sorted(policy.override_roles)) or '(none)'}.")
    elif action == Action.REPAIR_PROJECTION:
        if actor.is_service and "repair" not in actor.capabilities:
            raise _deny(f"{_who(actor)} may not repair the registry projection: admins only, or a service "
                        "account declared with `repair: true`.")
        if not actor.is_service and "admin" not in roles:
            raise _deny(f"{_who(actor)} may not repair the registry projection: admins only.")
    elif action == Action.RETRY_PROJECTION:
        pass  # any authenticated actor (the scheduled job too): it writes only what verified rows say
    else:  # pragma: no cover - every Action is handled above; kept so a new one is denied
        raise _deny(f"Action {action} has no rule: refused.")
    scope = _SCOPE.get()
    if scope is not None:
        scope.authorized.add(action)


def refusal(actor: Actor, action: Action | str, resource: Resource) -> str | None:
    """Why ``authorize`` would refuse, in its words; None when it would pass (for showing controls
    and their reasons; never instead of it)."""
    token = _SCOPE.set(None)  # a probe must not count as an authorization of the current scope
    try:
        authorize(actor, action, resource)
        return None
    except Forbidden as err:
        return err.message
    finally:
        _SCOPE.reset(token)


def allowed(actor: Actor, action: Action | str, resource: Resource) -> bool:
    """Whether ``authorize`` would pass (for showing or hiding controls; never instead of it)."""
    return refusal(actor, action, resource) is None


# ----------------------------------------------------------------------------------------------
# Write markers
# ----------------------------------------------------------------------------------------------
@dataclass
class _WriteScope:
    function: str
    actions: tuple[Action, ...]
    authorized: set[Action] = field(default_factory=set)


_SCOPE: contextvars.ContextVar[_WriteScope | None] = contextvars.ContextVar("tower_write_scope", default=None)
WRITE_ACTIONS: dict[str, tuple[Action, ...]] = {}  # "module.function" -> the actions it may perform
WRITE_STEPS: dict[str, str] = {}  # "module.function" -> its bare name (ledger rows, registry writes)


class UnauthorizedWrite(RuntimeError):
    """A programming error: a write was attempted without a successful ``authorize`` first."""


def write_action(*actions: Action) -> Callable[[F], F]:
    """Declare a service entry point that writes; it must call ``authorize`` before any write."""
    if not actions:
        raise ValueError("write_action needs at least one Action")

    def decorate(fn: F) -> F:
        name = f"{fn.__module__}.{fn.__qualname__}"
        WRITE_ACTIONS[name] = tuple(actions)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            scope = _WriteScope(name, tuple(actions))
            token = _SCOPE.set(scope)
            try:
                result = fn(*args, **kwargs)
            finally:
                _SCOPE.reset(token)
            if not scope.authorized:
                raise UnauthorizedWrite(f"{name} returned without calling authorize()")
            return result

        wrapper.__write_actions__ = tuple(actions)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def require_authorized(*actions: Action) -> None:
    """Raise UnauthorizedWrite unless ``authorize`` succeeded (for one of ``actions``, if given)."""
    scope = _SCOPE.get()
    if scope is None or not scope.authorized:
        raise UnauthorizedWrite("a governance write was attempted outside an authorized write action")
    if actions and not scope.authorized & set(actions):
        raise UnauthorizedWrite(
            f"{scope.function} authorized {sorted(scope.authorized)} but wrote as {sorted(actions)}")


def write_step(*actions: Action) -> Callable[[F], F]:
    """Mark a function that writes (a ledger row, a registry tag): it runs only once authorized."""

    def decorate(fn: F) -> F:
        WRITE_STEPS[f"{fn.__module__}.{fn.__qualname__}"] = fn.__name__

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            require_authorized(*actions)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
