"""Promotions: a model owner sees the gates before asking, asks for a version to take a stage, and
follows and cancels the requests on her models, bots' requests included."""

from __future__ import annotations

import streamlit as st

from services.auth.identity import Actor
from services.governance import promotion, review_state
from services.governance.authz import Action
from services.governance.gate_check import gate_preview
from services.settings import Settings
from ui import backends
from ui.governance_tables import gates_table, requests_table
from ui.notices import literal
from ui.page import errors_shown, page
from ui.session import actor_for_write, require_roles

_REASON = "promote_reason"
_CLEAR_REASON = "promote_clear_reason"
_FLASH = "promote_flash"


def _my_models(settings: Settings, actor: Actor) -> list[str]:
    """Models the actor may ask for: the ones whose owner tag is theirs (all of them for an admin)."""
    models = backends.list_models(settings)
    if actor.has_role("admin"):
        return [m.name for m in models]
    return [m.name for m in models if m.owner == actor.subject]


def _preview(settings: Settings, model: str, version: str, stage: str) -> None:
    """The gates as the request would record them, before anything is submitted."""
    with errors_shown():
        evidence = gate_preview(backends.governance(settings), model, version, stage)
        failing = [g.name for g in evidence.failing]
        st.markdown(f"**Gates for v{literal(version)} → {literal(stage)}** (computed as the request will "
                    "record them)")
        st.dataframe(gates_table(evidence), hide_index=True)
        if failing:
            st.warning(f"{len(failing)} gate(s) did not pass: {literal(', '.join(failing))}. A reviewer can "
                       "approve only past an override with a written reason, by a role the policy names.",
                       icon=":material/warning:")
        else:
            st.success("Every gate passes.", icon=":material/check_circle:")


def _request_form(settings: Settings, actor: Actor) -> None:
    ctx = backends.governance(settings)
    for kind, text in st.session_state.pop(_FLASH, []):
        getattr(st, kind)(text)
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
    if version is None or stage is None:
        return
    _preview(settings, model, version, stage)
    if st.session_state.pop(_CLEAR_REASON, False):
        st.session_state[_REASON] = ""  # only after a recorded request: a refused one keeps the text
    with st.form("request_promotion"):
        reason = st.text_area("Justification", max_chars=100_000, key=_REASON,
                              placeholder="Why this version should take the stage; links to the evaluation.")
        submitted = st.form_submit_button("Request promotion", type="primary")
    if submitted:
        with st.spinner("Collecting the evidence and recording the request…"):
            outcome = promotion.request_promotion(ctx, actor_for_write(settings), model, version, stage, reason)
        st.session_state[_FLASH] = [("success", f"Request {outcome.request.id[:12]} recorded: v{version} of "
                                                f"{literal(model)} → {stage}. A reviewer will see it in the "
                                                "review queue.")]
        st.session_state[_CLEAR_REASON] = True
        st.rerun()


def _requests_on_my_models(settings: Settings, actor: Actor) -> None:
    ctx = backends.governance(settings)
    owned = set(_my_models(settings, actor)) if not actor.has_role("admin") else set()
    mine = [r for r in review_state.list_requests(ctx)
            if r.model in owned or actor.is_same_person(r.requester_issuer, r.requester_subject)]
    if not mine:
        st.info("No promotion request has been made on your models, by you or by a service account.")
        return
    st.caption("Every request on the models you own, yours and those a service account (CI) filed.")
    st.dataframe(requests_table(mine), hide_index=True)
    cancellable = {r.id: r for r in mine if r.is_open and Action.CANCEL_REQUEST in
                   review_state.allowed_actions(ctx, actor, r)}
    if cancellable:
        chosen = st.selectbox("Cancel an open request", list(cancellable),
                              format_func=lambda i: f"{cancellable[i].model} v{cancellable[i].version} → "
                                                    f"{cancellable[i].stage} by {cancellable[i].requester_name} "
                                                    f"({i[:12]})")
        comment = st.text_input("Why (kept in the audit trail)", key="cancel_comment", max_chars=10_000)
        if st.button("Cancel request", icon=":material/cancel:"):
            promotion.cancel_request(ctx, actor_for_write(settings), chosen, comment or "cancelled by the owner")
            st.session_state[_FLASH] = [("success", "The request is cancelled.")]
            st.rerun()


def render(settings: Settings) -> None:
    actor = require_roles(settings, "model_owner", "admin")
    if actor is None:
        return
    for tab, section in zip(st.tabs(["Request a promotion", "Requests on my models"]),
                            (_request_form, _requests_on_my_models), strict=True):
        with tab:
            with errors_shown():  # one section's failure leaves the other usable
                section(settings, actor)


if __name__ == "__main__":
    page(render, "Promotions")
