"""People working alerts: acknowledge, snooze until a time, assign to a person, resolve with a comment.

**State.** Every action is a row of the append-only ``alert_actions`` (who: issuer, subject and name;
when; the snooze's end, the assignee, the comment). The episode row keeps the state those actions
led to (``workflow``, ``snoozed_until``, ``assignee``) and how many there were (``workflow_seq``), so
pages, chips and the notifier filter in SQL. Both are written in ONE transaction whose first
statement is a conditional UPDATE ``... WHERE workflow_seq = <what the actor saw>``: of two people
acting on the same state (two acknowledges, a resolve racing a snooze) exactly one wins; the other
gets a Conflict naming who acted first and nothing of theirs is stored. The unique
``(episode_id, seq)`` of the actions makes a second row for one step impossible even so. A crash
between the steps rolls the whole action back.

**States** (``effective_state``, pure): ``resolved`` (a person resolved it, or its condition cleared),
``snoozed`` (until a time in the future; after it the episode is ``open`` again and announced if it
never was), ``acknowledged``, ``open``. Assigning changes only the assignee. A resolved episode takes
no more actions: if the condition still holds in the next window, the next evaluation opens a new
episode (``services.monitoring.alerts``).

**Who may act** (checked here, at the write, deny by default, with the roles the caller read from
the identity provider just before it): admins, data scientists, and model owners of THAT model (the
registered model's ``owner`` tag). Viewers, reviewers, service accounts and anyone not signed in are
refused.

Text people type (comments, assignee names) is stored exactly as given, within limits
(``MAX_COMMENT``, ``MAX_ASSIGNEE``; NUL refused: PostgreSQL cannot store it); pages render it inert.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.auth.identity import Actor, normalize_name
from services.errors import Conflict, Forbidden, InvalidInput, NotFound, TowerStateUnavailable
from services.governance.authz import effective_roles
from services.monitoring.store import ACKNOWLEDGED as ACKNOWLEDGED  # the states, re-exported for the page
from services.monitoring.store import ACTIVE_STATUSES, alert_actions, alert_episodes
from services.monitoring.store import OPEN as OPEN
from services.monitoring.store import RESOLVED as RESOLVED
from services.monitoring.store import SNOOZED as SNOOZED
from services.notify import outbox

ACKNOWLEDGE, SNOOZE, ASSIGN, RESOLVE = "acknowledge", "snooze", "assign", "resolve"
ACTIONS = (ACKNOWLEDGE, SNOOZE, ASSIGN, RESOLVE)
STATES = (OPEN, ACKNOWLEDGED, SNOOZED, RESOLVED)
MAX_COMMENT = 2000  # characters
MAX_ASSIGNEE = 200
MAX_SNOOZE = timedelta(days=30)  # longer than that is not a snooze: resolve it, or change the rule
WORKLIST_LIMIT = 500
# Who may act besides the model's owner; everything else is refused.
_ANY_MODEL_ROLES = frozenset({"admin", "data_scientist"})

OwnerOf = Callable[[str], str | None]  # model -> its registered model's owner tag (a subject)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


# --------------------------------------------------------------------------------------------
# Pure: states, input, transitions, who may act
# --------------------------------------------------------------------------------------------
def effective_state(workflow: str, snoozed_until: datetime | None, status: str, now: datetime) -> str:
    """What a person sees: resolved / snoozed / acknowledged / open (see the module docstring)."""
    if workflow == RESOLVED or status == RESOLVED:
        return RESOLVED
    if workflow == SNOOZED:
        return SNOOZED if snoozed_until is not None and snoozed_until > now else OPEN
    return ACKNOWLEDGED if workflow == ACKNOWLEDGED else OPEN


def _text(value: Any, what: str, limit: int, *, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(f"A {what} is required for this action; nothing was recorded.")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"The {what} must be text; nothing was recorded.")
    if len(value) > limit:
        raise InvalidInput(f"The {what} is {len(value):,} characters long; at most {limit:,} are kept.",
                           "Shorten it (link to a longer write-up); nothing was recorded.")
    if "\x00" in value:
        raise InvalidInput(f"The {what} contains a NUL character, which cannot be stored; nothing was recorded.")
    return value  # as given: rendered inert wherever it is shown


def _until(value: Any, now: datetime) -> datetime:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        raise InvalidInput("A snooze needs the time it ends; nothing was recorded.")
    if not isinstance(value, datetime):
        raise InvalidInput(f"The snooze's end must be a date and time, not {type(value).__name__}.")
    until = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value  # naive = UTC
    until = until.replace(microsecond=0)
    if until <= now:
        raise InvalidInput(f"The snooze would end at {until:%Y-%m-%d %H:%M} UTC, which is not in the future.")
    if until - now > MAX_SNOOZE:
        raise InvalidInput(f"A snooze lasts at most {MAX_SNOOZE.days} days.",
                           "Resolve the alert, or change the rule's threshold in tower.yaml.")
    return until


@dataclass(frozen=True)
class Request:
    """One action as validated: what will be stored."""

    episode_id: int
    action: str
    comment: str | None = None
    until: datetime | None = None
    assignee: str | None = None


def validate(episode_id: Any, action: Any, *, comment: Any = None, until: Any = None, assignee: Any = None,
             now: datetime) -> Request:
    """The action checked field by field (InvalidInput with what to fix); pure."""
    if isinstance(episode_id, bool) or not isinstance(episode_id, int) or episode_id < 1:
        raise InvalidInput(f"{episode_id!r} is not an alert episode id.")
    if action not in ACTIONS:
        raise InvalidInput(f"{str(action)[:40]!r} is not an alert action; expected one of {', '.join(ACTIONS)}.")
    return Request(
        episode_id=episode_id, action=action,
        comment=_text(comment, "comment", MAX_COMMENT, required=action == RESOLVE),
        until=_until(until, now) if action == SNOOZE else None,
        assignee=_text(assignee, "assignee", MAX_ASSIGNEE, required=True) if action == ASSIGN else None)


def transition(state: str, request: Request, last: str | None) -> dict[str, Any]:
    """The episode columns ``request`` sets from ``state``; Conflict when it makes no sense there.
    ``last``: who acted last and how, for the message."""
    if state == RESOLVED:
        raise Conflict(f"This alert is resolved{last or ''}; it takes no more actions.",
                       "If the condition comes back, the next monitoring run opens a new alert.")
    if request.action == ACKNOWLEDGE:
        if state == ACKNOWLEDGED:
            raise Conflict(f"This alert is already acknowledged{last or ''}.")
        return {"workflow": ACKNOWLEDGED, "snoozed_until": None}
    if request.action == SNOOZE:
        return {"workflow": SNOOZED, "snoozed_until": request.until}
    if request.action == ASSIGN:
        return {"assignee": request.assignee}
    return {"workflow": RESOLVED, "snoozed_until": None, "status": RESOLVED}


def refusal(actor: Actor, model: str, owner_of: OwnerOf) -> str | None:
    """Why ``actor`` may not act on the alerts of ``model``; None when they may. The owner tag is
    asked for only when it decides (a model owner without another right)."""
    who = actor.name or actor.subject
    if not actor.authenticated:
        return "You are not signed in: alerts are read-only."
    if actor.is_service:
        return f"{who} is a service account; people work alerts."
    roles = effective_roles(actor)
    if roles & _ANY_MODEL_ROLES:
        return None
    if "model_owner" in roles:
        owner = owner_of(model)
        if owner is not None and owner == actor.subject:
            return None
        return (f"{who} may not act on the alerts of '{model}': its owner is {owner or 'not set'} (the "
                "registered model's 'owner' tag); data scientists and admins may act on any model.")
    return (f"{who} may not act on alerts: that needs the data_scientist or admin role, or the model_owner "
            "role on the model.")


def authorize(actor: Actor, model: str, owner_of: OwnerOf) -> None:
    reason = refusal(actor, model, owner_of)
    if reason is not None:
        raise Forbidden(reason, "Ask the model's owner, a data scientist or an admin; nothing was recorded.")


# --------------------------------------------------------------------------------------------
# The write
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recorded:
    episode_id: int
    seq: int
    action: str
    state: str  # the episode's state after it
    at: datetime


def _episode(tower: Engine, episode_id: int) -> Any:
    row = _read_one(tower, sa.select(alert_episodes).where(alert_episodes.c.id == episode_id))
    if row is None:
        raise NotFound(f"There is no alert episode {episode_id}.", "Reload the alerts page.")
    return row


def _read_one(tower: Engine, query: Any) -> Any:
    try:
        with tower.connect() as conn:
            return conn.execute(query).first()
    except sa.exc.OperationalError as exc:
        raise TowerStateUnavailable(f"The tower state database cannot be reached: "
                                    f"{str(exc.orig).splitlines()[0]}", "Check TOWER_DB_URL.") from exc


def _last_action(tower: Engine, episode_id: int) -> str:
    a = alert_actions.c
    row = _read_one(tower, sa.select(a.action, a.actor_name, a.at).where(a.episode_id == episode_id)
                    .order_by(a.seq.desc()).limit(1))
    if row is None:
        return ""
    verb = {ACKNOWLEDGE: "acknowledged", SNOOZE: "snoozed", ASSIGN: "assigned", RESOLVE: "resolved"}[row.action]
    return f" (last {verb} by {row.actor_name} at {row.at:%Y-%m-%d %H:%M} UTC)"


def act(tower: Engine, owner_of: OwnerOf, actor: Actor, episode_id: Any, action: Any, *, comment: Any = None,
        until: Any = None, assignee: Any = None, expected_seq: int | None = None,
        now: datetime | None = None) -> Recorded:
    """Record ``action`` by ``actor`` on an episode (see the module docstring).

    ``actor`` must carry the roles they hold now (the page asks the identity provider again just
    before). ``expected_seq``: the episode's ``workflow_seq`` the actor saw; when someone acted since,
    Conflict (default: the current one). InvalidInput, NotFound, Forbidden or Conflict leave
    everything as it was."""
    now = now or _now()
    request = validate(episode_id, action, comment=comment, until=until, assignee=assignee, now=now)
    row = _episode(tower, request.episode_id)
    authorize(actor, row.model, owner_of)
    seq = row.workflow_seq if expected_seq is None else expected_seq
    if seq != row.workflow_seq:
        raise Conflict(f"Someone acted on this alert since you loaded it{_last_action(tower, row.id)}.",
                       "Look at its current state and try again if it still needs it; nothing was recorded.")
    state = effective_state(row.workflow, row.snoozed_until, row.status, now)
    values = transition(state, request, _last_action(tower, row.id) if state != OPEN else None)
    if request.action == RESOLVE:
        values["resolved_at"] = now
    e = alert_episodes.c
    try:
        with tower.begin() as conn:
            # First statement: the conditional UPDATE takes the row (PostgreSQL) or the write lock
            # (SQLite) before anything is read, so the loser of a race sees the winner's seq.
            updated = conn.execute(sa.update(alert_episodes).where(
                e.id == row.id, e.workflow_seq == seq, e.workflow != RESOLVED, e.status != RESOLVED,
            ).values(workflow_seq=seq + 1, **values)).rowcount
            if updated != 1:
                raise _Lost()
            conn.execute(sa.insert(alert_actions).values(
                episode_id=row.id, seq=seq + 1, action=request.action, actor_issuer=actor.issuer,
                actor_subject=actor.subject, actor_name=actor.name or actor.subject, at=now, until=request.until,
                assignee=request.assignee, comment=request.comment))
            if request.action in (SNOOZE, RESOLVE):
                # What was owed and not yet sent is not owed while snoozed (re-enqueued when the snooze
                # ends, ``alerts.enqueue_alerts``) nor once resolved. A POST already under way still lands.
                outbox.withdraw(conn, "alert", str(row.id))
    except (_Lost, sa.exc.IntegrityError):
        raise Conflict(f"Someone else acted on this alert at the same moment{_last_action(tower, row.id)}.",
                       "Look at its current state and try again if it still needs it; nothing was recorded.") \
            from None
    except sa.exc.OperationalError as exc:
        raise TowerStateUnavailable(f"The tower state database cannot be reached: "
                                    f"{str(exc.orig).splitlines()[0]}", "Check TOWER_DB_URL; nothing was recorded.") \
            from exc
    after = effective_state(values.get("workflow", row.workflow), values.get("snoozed_until", row.snoozed_until),
                            values.get("status", row.status), now)
    return Recorded(row.id, seq + 1, request.action, after, now)


class _Lost(Exception):
    """The conditional UPDATE matched nothing: another action (or the episode's end) came first."""


# --------------------------------------------------------------------------------------------
# Reads for the worklist and the history
# --------------------------------------------------------------------------------------------
WORKLIST_COLUMNS = ["id", "model", "rule", "subject", "severity", "state", "assignee", "snoozed_until",
                    "opened_window", "last_window", "value", "threshold", "message", "notified_at", "workflow_seq"]
HISTORY_COLUMNS = ["at", "model", "rule", "subject", "episode_id", "action", "actor_name", "until", "assignee",
                   "comment"]


def _state_condition(state: str, now: datetime) -> Any:
    e = alert_episodes.c
    active = e.status.in_(ACTIVE_STATUSES)
    if state == RESOLVED:
        return e.status == RESOLVED
    if state == SNOOZED:
        return sa.and_(active, e.workflow == SNOOZED, e.snoozed_until > now)
    if state == ACKNOWLEDGED:
        return sa.and_(active, e.workflow == ACKNOWLEDGED)
    return sa.and_(active, sa.or_(e.workflow == OPEN,
                                  sa.and_(e.workflow == SNOOZED, sa.or_(e.snoozed_until.is_(None),
                                                                        e.snoozed_until <= now))))


def assigned_to(actor: Actor, assignee: str | None) -> bool:
    """Whether an assignee as typed names this actor (any of their names, or their display name)."""
    if not assignee:
        return False
    return actor.answers_to(assignee) or (bool(actor.name) and normalize_name(actor.name) == normalize_name(assignee))


def worklist(tower: Engine, model: str | None = None, states: Iterable[str] = (OPEN, ACKNOWLEDGED, SNOOZED),
             *, now: datetime | None = None, assigned: Actor | None = None) -> pd.DataFrame:
    """Episodes in ``states`` (of ``model``, or all), critical first, then newest; with ``assigned``,
    only those assigned to that person. Read fresh (not cached): the page shows an action at once."""
    now = now or _now()
    chosen = [s for s in states if s in STATES]
    e = alert_episodes.c
    if not chosen:
        return pd.DataFrame(columns=WORKLIST_COLUMNS)
    query = (sa.select(alert_episodes).where(sa.or_(*(_state_condition(s, now) for s in chosen)))
             .order_by(sa.case((e.severity == "critical", 0), else_=1), e.opened_window.desc(), e.id.desc())
             .limit(WORKLIST_LIMIT))
    if model:
        query = query.where(e.model == model)
    try:
        with tower.connect() as conn:
            rows = conn.execute(query).all()
    except sa.exc.OperationalError as exc:
        raise TowerStateUnavailable(f"The tower state database cannot be reached: "
                                    f"{str(exc.orig).splitlines()[0]}", "Check TOWER_DB_URL.") from exc
    records = []
    for row in rows:
        if assigned is not None and not assigned_to(assigned, row.assignee):
            continue
        record = {c: getattr(row, c) for c in WORKLIST_COLUMNS if c != "state"}
        record["state"] = effective_state(row.workflow, row.snoozed_until, row.status, now)
        records.append(record)
    return pd.DataFrame(records, columns=WORKLIST_COLUMNS)


def history(tower: Engine, model: str | None = None, episode_id: int | None = None,
            limit: int = 1000) -> pd.DataFrame:
    """Every action people took (of ``model`` or one episode), newest first."""
    a, e = alert_actions.c, alert_episodes.c
    query = (sa.select(a.at, e.model, e.rule, e.subject, a.episode_id, a.action, a.actor_name, a.until, a.assignee,
                       a.comment).join_from(alert_actions, alert_episodes, a.episode_id == e.id)
             .order_by(a.at.desc(), a.id.desc()).limit(limit))
    if model:
        query = query.where(e.model == model)
    if episode_id is not None:
        query = query.where(a.episode_id == episode_id)
    try:
        with tower.connect() as conn:
            rows = conn.execute(query).all()
    except sa.exc.OperationalError as exc:
        raise TowerStateUnavailable(f"The tower state database cannot be reached: "
                                    f"{str(exc.orig).splitlines()[0]}", "Check TOWER_DB_URL.") from exc
    return pd.DataFrame([tuple(r) for r in rows], columns=HISTORY_COLUMNS)
