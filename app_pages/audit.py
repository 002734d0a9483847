"""Audit: every decision, the chain's verification, exports, stage history, rollback, drift from
the registry (changes made outside the tower)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pandas as pd
import streamlit as st

from services.governance import audit, promotion, review_state
from services.governance.ledger_rows import LEDGER_ACTIONS
from services.settings import Settings
from ui import backends
from ui.governance_tables import decisions_table
from ui.notices import literal
from ui.page import page
from ui.session import actor_for_write, current_actor
from ui.widgets import model_names

ALL = "All models"


def _history(settings: Settings, model: str | None) -> None:
    ctx = backends.governance(settings)
    c1, c2, c3, c4 = st.columns(4)
    action = c1.selectbox("Action", ["any", *LEDGER_ACTIONS])
    who = c2.text_input("Actor (subject or name)")
    since = c3.date_input("From", value=None)
    until = c4.date_input("To", value=None)
    rows = audit.history(ctx, model=model, actor=who.strip() or None, action=None if action == "any" else action,
                         since=datetime.combine(since, time.min, UTC) if since else None,
                         until=datetime.combine(until, time.max, UTC) if until else None)
    report = audit.verify_all(ctx)
    (st.success if report.ok else st.error)(literal(report.summary), icon=":material/verified:" if report.ok
                                            else ":material/gpp_bad:")
    if report.findings:
        st.dataframe(pd.DataFrame([{"finding": f.kind, "where": f.where, "what": f.message}
                                   for f in report.findings]), hide_index=True)
    if not rows:
        st.info("No decision matches these filters yet.")
        return
    st.dataframe(decisions_table(rows), hide_index=True)
    left, right = st.columns(2)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    left.download_button("Export CSV", audit.export_csv(rows), f"tower-audit-{stamp}.csv", "text/csv")
    right.download_button("Export JSONL", audit.export_jsonl(rows), f"tower-audit-{stamp}.jsonl",
                          "application/jsonl")


def _stage_history(settings: Settings, model: str) -> None:
    ctx = backends.governance(settings)
    st.subheader("Which version held a stage")
    c1, c2, c3 = st.columns(3)
    stage = c1.selectbox("Stage", list(settings.stage_aliases))
    day = c2.date_input("Day (UTC)", value=datetime.now(UTC).date())
    moment = c3.time_input("Time (UTC)", value=time(12, 0))
    holder = audit.holder_at(ctx, model, stage, datetime.combine(day, moment, UTC))
    st.write(f"{stage} was held by **v{holder}**." if holder else
             f"The ledger does not know who held {stage} then (no promotion through the tower before).")
    for change in audit.detect_external_changes(ctx, model):
        st.warning(literal(change.description), icon=":material/sync_problem:")
    actor = current_actor(settings)
    previous = review_state.previous_holder(ctx, model, stage)
    if actor is not None and actor.has_role("model_owner", "admin") and previous:
        with st.form("rollback"):
            reason = st.text_input(f"Reason to roll {stage} back to v{previous}")
            if st.form_submit_button("Request rollback", icon=":material/undo:"):
                outcome = promotion.rollback_request(ctx, actor_for_write(settings), model, stage, reason)
                st.success(f"Rollback request {outcome.request.id[:12]} is in the review queue.")


def _linked(settings: Settings) -> None:
    """The decision a notification links to (``?decision=<id>``), shown first."""
    wanted = st.query_params.get("decision")
    if not wanted:
        return
    found = audit.linked_decision(backends.governance(settings), wanted)
    if found is None:
        st.warning("The linked decision is not in the ledger.", icon=":material/search_off:")
        return
    st.subheader(f"Decision {found.decision_id[:16]}")
    st.dataframe(decisions_table([found]), hide_index=True)
    st.caption(f"Evidence digest: {found.evidence_digest or '—'} · decision id: {found.decision_id}")


def render(settings: Settings) -> None:
    _linked(settings)
    names = model_names(settings)
    model = st.selectbox("Model", [ALL, *names], key="model", bind="query-params")
    _history(settings, None if model == ALL else model)
    if model != ALL:
        _stage_history(settings, model)


if __name__ == "__main__":
    page(render, "Audit trail")
