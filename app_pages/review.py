"""Review queue: an authorized reviewer approves or rejects a promotion with the evidence in front."""

from __future__ import annotations

import streamlit as st

from services.auth.identity import Actor
from services.governance import promotion, review_state
from services.governance.authz import Action
from services.governance.context import GovernanceContext
from services.governance.staleness import staleness
from services.settings import Settings
from ui import backends
from ui.governance_tables import decisions_table, gates_table, metrics_table, requests_table
from ui.notices import literal
from ui.page import page
from ui.session import actor_for_write, require_roles


def _decide(settings: Settings, request: review_state.PromotionRequest, actor: Actor, failing: list[str]) -> None:
    ctx = backends.governance(settings)
    allowed = review_state.allowed_actions(ctx, actor, request)
    if not allowed & {Action.APPROVE, Action.REJECT}:
        st.info("You may not decide this request (you asked for it, created the version, or the model's "
                "policy names other approvers).")
        return
    with st.form(f"decide_{request.id}"):
        comment = st.text_area("Comment (required to reject)", max_chars=100_000)
        override = ""
        if failing:
            override = st.text_area(f"Override reason (needed to approve past the failed gates: {', '.join(failing)})",
                                    max_chars=100_000)
        approve_col, reject_col = st.columns(2)
        approve = approve_col.form_submit_button("Approve", type="primary", icon=":material/check:")
        reject = reject_col.form_submit_button("Reject", icon=":material/close:")
    if approve or reject:
        # The service decides again with the actor's current roles; a second click or a rival reviewer
        # gets the decision that was recorded first.
        current = actor_for_write(settings)  # roles as the identity provider says now
        if approve:
            outcome = promotion.approve(ctx, current, request.id, comment, override or None)
        else:
            outcome = promotion.reject(ctx, current, request.id, comment)
        verb = "promoted" if outcome.promoted else ("rejected" if reject else "approved (waiting for more approvals)")
        st.success(f"Recorded: {literal(request.model)} v{request.version} {verb}.")
        if outcome.projection_error:
            st.warning(f"The decision counts, but the registry is behind: {literal(outcome.projection_error)} "
                       "An administrator's repair pass will apply it.")


def _stale(settings: Settings, ctx: GovernanceContext, request: review_state.PromotionRequest, actor: Actor) -> bool:
    """Show the current holder; when the evidence is out of date, say why and offer a refresh."""
    holder = review_state.governed_holders(ctx, request.model).get(request.stage)
    st.markdown(f"**Current holder of {literal(request.stage)}:** {'v' + literal(holder) if holder else 'nobody'}"
                f" · compared against v{literal(request.previous_version) if request.previous_version else '—'}")
    why = staleness(ctx, request)
    if why is None:
        return False
    st.warning(f"{literal(why)}  \nRefresh the evidence to decide: a new snapshot is taken against the current "
               "holder and the approvals so far are reset.", icon=":material/update:")
    if st.button("Refresh evidence", key=f"refresh_{request.id}", icon=":material/refresh:"):
        promotion.refresh_evidence(ctx, actor_for_write(settings), request.id)
        st.rerun()
    return True


def render(settings: Settings) -> None:
    st.title("Review queue")
    actor = require_roles(settings, "reviewer", "admin")
    if actor is None:
        return
    ctx = backends.governance(settings)
    waiting = review_state.list_requests(ctx, status="open")
    if not waiting:
        st.info("No promotion request is waiting for review.")
        return
    st.dataframe(requests_table(waiting), hide_index=True)
    by_id = {r.id: r for r in waiting}
    chosen = st.selectbox("Request", list(by_id), key="request",
                          format_func=lambda i: f"{by_id[i].model} v{by_id[i].version} → {by_id[i].stage} "
                                                f"by {by_id[i].requester_name} ({i[:12]})")
    request = by_id[chosen]
    st.subheader(f"{literal(request.model)} v{request.version} → {request.stage}")
    st.caption(f"Replaces v{request.previous_version or '—'} · requested by {literal(request.requester_name)} "
               f"at {request.created_at:%Y-%m-%d %H:%M} UTC · approvals {len(request.approvals)}/"
               f"{request.approvals_required}")
    st.text_area("Justification", request.reason, disabled=True)
    if _stale(settings, ctx, request, actor):
        return
    evidence = review_state.evidence_snapshot(ctx, request.evidence_digest or "")
    failing = []
    if evidence is not None:
        st.markdown("**Gates of the model's policy** (evidence snapshotted with the request)")
        st.dataframe(gates_table(evidence), hide_index=True)
        st.dataframe(metrics_table(evidence), hide_index=True)
        failing = [g.name for g in evidence.gates if g.status != "passed"]
    if request.approvals:
        st.dataframe(decisions_table(list(request.approvals)), hide_index=True)
    for approval, why in request.void_approvals:
        st.warning(f"The approval by {literal(approval.actor_name)} no longer counts: {literal(why)}",
                   icon=":material/person_off:")
    _decide(settings, request, actor, failing)


if __name__ == "__main__":
    page(render)
