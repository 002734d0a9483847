"""The alerts page's worklist and its action forms, and the log of what people did (history view).

Reads are fresh, not cached: after an action the list shows it at once, for everyone, without
clearing anybody's cache. Which controls show is a courtesy (``alert_workflow.refusal``); every
action is authorized again by the service, with the roles asked of the identity provider just before.
Text people typed (comments, assignees) is shown through ``literal`` or in table cells, never as markdown.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st

from services.auth.identity import Actor
from services.monitoring import alert_workflow as wf
from services.outages import TOWER
from services.settings import Settings
from ui import backends
from ui.notices import literal
from ui.page import errors_shown
from ui.session import actor_for_write
from ui.tables import ALERT_DAYS, RULE_LABELS, format_time, readable, show

WORKLIST_COLUMNS = {
    "severity": "Severity", "model": "Model", "rule": "Rule", "subject": "Subject", "state": "State",
    "assignee": "Assigned to", "snoozed_until": "Snoozed until", "opened_window": "Opened on",
    "last_window": "Last breached on", "value": "Value", "threshold": "Threshold", "message": "Message",
    "notified_at": "Notified at",
}
ACTION_COLUMNS = {
    "at": "When", "actor_name": "Who", "action": "Action", "model": "Model", "rule": "Rule", "subject": "Subject",
    "until": "Snoozed until", "assignee": "Assigned to", "comment": "Comment",
}
ACTION_WORDS = {"acknowledge": "acknowledged", "snooze": "snoozed", "assign": "assigned", "resolve": "resolved"}
_FLASH = "alert_flash"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def worklist_table(frame: pd.DataFrame) -> pd.DataFrame:
    return readable(frame, WORKLIST_COLUMNS, days=[c for c in ALERT_DAYS if c in WORKLIST_COLUMNS],
                    times=("snoozed_until", "notified_at"), values={"rule": RULE_LABELS})


def actions_table(frame: pd.DataFrame) -> pd.DataFrame:
    return readable(frame, ACTION_COLUMNS, times=("at", "until"),
                    values={"rule": RULE_LABELS, "action": ACTION_WORDS})


def worklist(settings: Settings, model: str | None, actor: Actor) -> None:
    """Filters, the table, and the actions the actor may take on one alert of it."""
    for text in st.session_state.pop(_FLASH, []):
        st.success(text, icon=":material/check_circle:")
    left, right = st.columns([3, 1])
    states: list[str] = left.pills("Show", list(wf.STATES), selection_mode="multi", key="alert_states",
                                   default=[wf.OPEN, wf.ACKNOWLEDGED, wf.SNOOZED])
    mine = right.checkbox("Assigned to me", key="alert_mine", disabled=not actor.authenticated,
                          help=None if actor.authenticated else "Sign in to see the alerts assigned to you.")
    now = _now()
    frame = backends.guarded(settings, TOWER, lambda: wf.worklist(
        backends.tower(settings), model, states or (), now=now, assigned=actor if mine else None))
    if frame.empty:
        st.info("No alert matches these filters." if states else "Choose which alerts to show.")
        return
    show(worklist_table(frame), column_config={"Message": st.column_config.TextColumn(width="large")})
    _actions(settings, frame, actor)


def _actions(settings: Settings, frame: pd.DataFrame, actor: Actor) -> None:
    """The forms, for the alerts of the list the actor may act on (none for a viewer)."""
    owners: dict[str, str | None] = {}

    def owner_of(name: str) -> str | None:
        if name not in owners:
            owners[name] = backends.registry(settings).model_tags(name).get("owner")
        return owners[name]

    with errors_shown():
        workable = frame[(frame["state"] != wf.RESOLVED)
                         & frame["model"].map(lambda m: wf.refusal(actor, m, owner_of) is None)]
    if workable.empty:
        return
    st.subheader("Act on an alert")
    rows = {int(r["id"]): r for _, r in workable.iterrows()}
    chosen = st.selectbox("Alert", list(rows), key="alert_episode", format_func=lambda i: _option(rows[i]))
    if chosen is None:
        return
    row = rows[chosen]
    st.caption(f"{literal(str(row['message']))}  \nState: **{row['state']}**"
               + (f", assigned to {literal(str(row['assignee']))}" if row["assignee"] else "")
               + (f", snoozed until {format_time(row['snoozed_until'])}" if row["state"] == wf.SNOOZED else ""))
    ack, snooze, assign, resolve = st.tabs(["Acknowledge", "Snooze", "Assign", "Resolve"])
    with ack, st.form("alert_acknowledge"):
        st.write("Say you have seen it and are on it.")
        if st.form_submit_button("Acknowledge", disabled=row["state"] == wf.ACKNOWLEDGED):
            _record(settings, row, wf.ACKNOWLEDGE)
    with snooze, st.form("alert_snooze"):
        default = _now() + timedelta(days=1)
        day = st.date_input("Snooze until (UTC day)", value=default.date(),
                            min_value=default.date() - timedelta(days=1), max_value=(_now() + wf.MAX_SNOOZE).date())
        at = st.time_input("At (UTC)", value=time(default.hour, 0))
        if st.form_submit_button("Snooze"):
            _record(settings, row, wf.SNOOZE, until=datetime.combine(day, at))
    with assign, st.form("alert_assign"):
        who = st.text_input("Assign to", max_chars=wf.MAX_ASSIGNEE, placeholder="a person's name or e-mail")
        if st.form_submit_button("Assign"):
            _record(settings, row, wf.ASSIGN, assignee=who)
    with resolve, st.form("alert_resolve"):
        comment = st.text_area("Comment (required to resolve)", max_chars=wf.MAX_COMMENT,
                               placeholder="What was done, or why it needs nothing.")
        if st.form_submit_button("Resolve", type="primary"):
            _record(settings, row, wf.RESOLVE, comment=comment)


def _option(row: pd.Series) -> str:
    subject = f" · {row['subject']}" if row["subject"] else ""
    return f"{row['model']} · {RULE_LABELS.get(row['rule'], row['rule'])}{subject} ({row['state']}, {row['severity']})"


def _record(settings: Settings, row: pd.Series, action: str, **fields: object) -> None:
    with errors_shown():
        owner_of = lambda m: backends.registry(settings).model_tags(m).get("owner")  # noqa: E731 - read at the write
        done = wf.act(backends.tower(settings), owner_of, actor_for_write(settings), int(row["id"]), action,
                      expected_seq=int(row["workflow_seq"]), **fields)  # type: ignore[arg-type]
        st.session_state[_FLASH] = [f"Alert {ACTION_WORDS[action]}: {literal(str(row['model']))} · "
                                    f"{RULE_LABELS.get(str(row['rule']), str(row['rule']))} (now {done.state})."]
        st.rerun()


def action_log(settings: Settings, model: str | None) -> None:
    """Every action people took, newest first."""
    frame = backends.guarded(settings, TOWER, lambda: wf.history(backends.tower(settings), model))
    if frame.empty:
        st.info("Nobody has acted on an alert yet.")
        return
    show(actions_table(frame), column_config={"Comment": st.column_config.TextColumn(width="large")})
