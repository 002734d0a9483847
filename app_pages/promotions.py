"""Promotions: a model owner asks for a version to take a stage, follows and cancels the requests."""

from __future__ import annotations

import streamlit as st

from services.auth.identity import Actor
from services.governance import promotion, review_state
from services.settings import Settings
from ui import backends
from ui.governance_tables import gates_table, requests_table
from ui.notices import literal
from ui.page import errors_shown, page
from ui.session import actor_for_write, require_roles


def _my_models(settings: Settings, actor: Actor) -> list[str]:
    """Models the actor may ask for: the ones whose owner tag is theirs (all of them for an admin)."""
    models = backends.list_models(settings)
    if actor.has_role("admin"):
        return [m.name for m in models]
    return [m.name for m in models if m.owner == actor.subject]


def _request_form(settings: Settings, actor: Actor) -> None:
    ctx = backends.governance(settings)
    names = _my_models(settings, actor)
    if not names:
        st.info(f"No registered model names you ({literal(actor.subject)}) as its owner (the `owner` tag).")
        return
    model = st.selectbox("Model", names, key="promote_model")
    versions = [v.version for v in backends.list_versions(settings, model)]
    holders = ctx.current_holders(model)
    col1, col2 = st.columns(2)
    version = col1.selectbox("Version", versions, format_func=lambda v: f"v{v}")
    stage = col2.selectbox("To stage", list(settings.stage_aliases),
                           format_func=lambda s: f"{s} (now v{holders.get(s)})" if holders.get(s) else s)
    with st.form("request_promotion", clear_on_submit=True):
        reason = st.text_area("Justification", max_chars=100_000,
                              placeholder="Why this version should take the stage; links to the evaluation.")
        submitted = st.form_submit_button("Request promotion", type="primary")
    if submitted:
        with st.spinner("Collecting the evidence and recording the request…"):
            outcome = promotion.request_promotion(ctx, actor_for_write(settings), model, version, stage, reason)
        st.success(f"Request {outcome.request.id[:12]} recorded: v{version} of {literal(model)} → {stage}. "
                   "A reviewer will see it in the review queue.")
        evidence = review_state.evidence_snapshot(ctx, outcome.request.evidence_digest or "")
        if evidence is not None:
            st.dataframe(gates_table(evidence), hide_index=True)


def _my_requests(settings: Settings, actor: Actor) -> None:
    ctx = backends.governance(settings)
    mine = [r for r in review_state.list_requests(ctx)
            if actor.is_same_person(r.requester_issuer, r.requester_subject)]
    if not mine:
        st.info("You have not requested any promotion yet.")
        return
    st.dataframe(requests_table(mine), hide_index=True)
    open_ones = {r.id: r for r in mine if r.status == "open"}
    if open_ones:
        chosen = st.selectbox("Cancel an open request", list(open_ones),
                              format_func=lambda i: f"{open_ones[i].model} v{open_ones[i].version} → "
                                                    f"{open_ones[i].stage} ({i[:12]})")
        if st.button("Cancel request", icon=":material/cancel:"):
            promotion.cancel_request(ctx, actor_for_write(settings), chosen, "cancelled by the requester")
            st.success("The request is cancelled.")
            st.rerun()


def render(settings: Settings) -> None:
    st.title("Promotions")
    actor = require_roles(settings, "model_owner", "admin")
    if actor is None:
        return
    for tab, section in zip(st.tabs(["Request a promotion", "My requests"]), (_request_form, _my_requests),
                            strict=True):
        with tab:
            with errors_shown():  # one section's failure leaves the other usable
                section(settings, actor)


if __name__ == "__main__":
    page(render)
