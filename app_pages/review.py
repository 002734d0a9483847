"""Review queue: an authorized reviewer approves or rejects a promotion with the evidence in front."""

from __future__ import annotations

import streamlit as st

from services.auth.identity import Actor
from services.governance import promotion, review_state
from services.governance.context import GovernanceContext
from services.governance.decision_options import decision_options
from services.governance.staleness import staleness
from services.settings import Settings
from ui import backends
from ui.governance_tables import decisions_table, gates_table, metrics_table, requests_table
from ui.notices import literal
from ui.page import page
from ui.session import actor_for_write, require_roles

_FLASH = "review_flash"


def _decide(settings: Settings, request: review_state.PromotionRequest, actor: Actor) -> None:
    """Only the controls this reviewer may use, with the reasons for the others, before any typing."""
    ctx = backends.governance(settings)
    options = decision_options(ctx, actor, request)
    standing = options.standing_override
    if standing is not None:
        gates = literal(", ".join(standing.overridden_gates))
        st.info(f"{literal(standing.actor_name)} overrode the failed gates ({gates}) "
                f"at {standing.recorded_at:%Y-%m-%d %H:%M} UTC: {literal(standing.override_reason)}  \n"
                "Approvals after it are ordinary ones.", icon=":material/gavel:")
    if not options.may_approve and not options.may_reject:
        st.info(f"You may not decide this request: {literal(options.approve_refusal)}", icon=":material/block:")
        return
    if not options.may_approve:
        st.warning(f"You may reject, not approve: {literal(options.approve_refusal)}", icon=":material/block:")
    elif not options.may_reject:
        st.warning(f"You may approve, not reject: {literal(options.reject_refusal)}", icon=":material/block:")
    overriding = options.may_approve and bool(options.needs_override)
    with st.form(f"decide_{request.id}"):
        comment = st.text_area("Comment" + (" (required to reject)" if options.may_reject else ""),
                               max_chars=100_000)
        override = ""
        if overriding:
            override = st.text_area(f"Override reason (approving past the gates that did not pass: "
                                    f"{', '.join(options.needs_override)})", max_chars=100_000)
        approve_col, reject_col = st.columns(2)
        approve = options.may_approve and approve_col.form_submit_button(
            "Approve with override" if overriding else "Approve", type="primary", icon=":material/check:")
        reject = options.may_reject and reject_col.form_submit_button("Reject", icon=":material/close:")
    if approve or reject:
        # The service decides again with the actor's current roles; a second click or a rival reviewer
        # gets the decision that was recorded first.
        current = actor_for_write(settings)  # roles as the identity provider says now
        if approve:
            outcome = promotion.approve(ctx, current, request.id, comment, override or None)
        else:
            outcome = promotion.reject(ctx, current, request.id, comment)
        if outcome.promoted and outcome.created:
            backends.notify_decisions(settings)  # best effort, in the background: never fails the decision
        verb = "promoted" if outcome.promoted else ("rejected" if reject else "approved (waiting for more approvals)")
        flash = [("success", f"Recorded: {literal(request.model)} v{request.version} {verb}.")]
        if outcome.projection_error:
            flash.append(("warning", "The decision counts, but the registry is behind: "
                                     f"{literal(outcome.projection_error)}"))
        st.session_state[_FLASH] = flash
        st.rerun()  # the queue and the request redraw from the ledger


def _show_flash() -> None:
    for kind, text in st.session_state.pop(_FLASH, []):
        getattr(st, kind)(text)


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
    actor = require_roles(settings, "reviewer", "admin")
    if actor is None:
        return
    _show_flash()
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
    if evidence is not None:
        st.markdown("**Gates of the model's policy** (evidence snapshotted with the request)")
        st.dataframe(gates_table(evidence), hide_index=True)
        st.dataframe(metrics_table(evidence), hide_index=True)
    if request.approvals:
        st.dataframe(decisions_table(list(request.approvals)), hide_index=True)
    for approval, why in request.void_approvals:
        st.warning(f"The approval by {literal(approval.actor_name)} no longer counts: {literal(why)}",
                   icon=":material/person_off:")
    for override, why in request.lapsed_overrides:
        st.warning(f"The override by {literal(override.actor_name)} no longer stands: {literal(why)}",
                   icon=":material/gavel:")
    st.caption(f"Approvers' current rights: {literal(request.rights_source)}.")
    _decide(settings, request, actor)


if __name__ == "__main__":
    page(render, "Review queue")
