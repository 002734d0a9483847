"""The promotion journey in AppTest, as the demo's people: request -> review -> approve / reject,
recorded on the real registry and in the real ledger; roles without the right see no page and are
refused by the service when they call it anyway."""

from __future__ import annotations

import time

import pytest
import yaml
from mlflow.tracking import MlflowClient
from streamlit.testing.v1 import AppTest

from services.auth.identity import Actor, actor_from_claims, auth_config
from services.demo.identities import DEMO_USERS
from services.errors import Forbidden
from services.governance import audit, promotion, review_state
from services.settings import PROJECT_ROOT, load_settings
from services.wiring import governance_context
from tests.support.app_test import GOOD_AUTH, texts

# Run again on the production backends by the second pass of `make test`.
pytestmark = pytest.mark.both_backends

ISSUER = "http://127.0.0.1:9400"


def claims(sub: str, *, expires_in_s: float = 3600) -> dict:
    user = next(u for u in DEMO_USERS if u.sub == sub)
    return {"is_logged_in": True, "iss": ISSUER, "exp": int(time.time() + expires_in_s), **user.claims()}


def page(sub: str, path: str | None = None, *, expires_in_s: float = 3600, **query: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.secrets["auth"] = GOOD_AUTH
    at.user = claims(sub, expires_in_s=expires_in_s)
    at.run()
    if path:
        at.switch_page(path)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def widget(elements, label: str):
    return next(e for e in elements if e.label.startswith(label))


# Gates that v4 of credit-risk passes without monitoring results, so the journey is the subject
# here; the demo's own policy (overrides, drift and fairness gates) has its tests below and in
# tests/governance/.
JOURNEY_POLICIES = {
    "default": {"approvals_required": 1, "approvers": {"roles": ["reviewer"]}, "override_roles": ["admin"]},
    "credit-risk": {"approvals_required": 2,
                    "metrics": [{"name": "roc_auc", "direction": "higher", "max_regression": 0.5}]},
}


def use_stores(demo_dir, monkeypatch, policies: dict | None = None):
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
    if policies is not None:
        config = yaml.safe_load((PROJECT_ROOT / "tower.yaml").read_text())
        config["policies"] = policies
        (demo_dir / "tower.yaml").write_text(yaml.safe_dump(config))
        monkeypatch.setenv("TOWER_CONFIG", str(demo_dir / "tower.yaml"))
    settings = load_settings()
    return settings, governance_context(settings)


@pytest.fixture
def stores(demo_dir, monkeypatch):
    return use_stores(demo_dir, monkeypatch, JOURNEY_POLICIES)


@pytest.fixture
def demo_policy_stores(demo_dir, monkeypatch):
    return use_stores(demo_dir, monkeypatch)


def request_in_browser(sub: str, model: str, version: str, stage: str, reason: str) -> AppTest:
    at = page(sub, "app_pages/promotions.py")
    at.selectbox(key="promote_model").select(model).run()
    widget(at.selectbox, "Version").select(version).run()
    widget(at.selectbox, "To stage").select(stage).run()
    widget(at.text_area, "Justification").input(reason)
    widget(at.button, "Request promotion").click().run()
    assert not at.exception
    return at


def decide_in_browser(sub: str, verb: str, comment: str = "", override: str = "") -> AppTest:
    at = page(sub, "app_pages/review.py")
    widget(at.text_area, "Comment").input(comment)
    if override:
        widget(at.text_area, "Override reason").input(override)
    widget(at.button, verb).click().run()
    assert not at.exception
    return at


def alias(settings, model: str, name: str) -> str:
    value = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_registered_model(model).aliases.get(name)
    return None if value is None else str(value)


def test_owner_requests_and_two_reviewers_approve_which_moves_the_alias(stores):
    settings, ctx = stores
    at = request_in_browser("alice", "credit-risk", "4", "Production", "v4 adds the new bureau features")
    assert "recorded" in texts(at, ("success",))
    [req] = review_state.list_requests(ctx, status="open")
    assert (req.model, req.version, req.stage, req.requester_subject) == ("credit-risk", "4", "Production", "alice")

    at = decide_in_browser("rita", "Approve", "looks fine")
    assert "approved (waiting for more approvals)" in texts(at, ("success",))
    assert alias(settings, "credit-risk", "production") == "3", "one approval of two must not move the alias"
    decide_in_browser("ravi", "Approve", "agreed")
    assert alias(settings, "credit-risk", "production") == "4"
    assert review_state.get_request(ctx, req.id).status == "approved"

    history = page("vera", "app_pages/audit.py", model="credit-risk")
    table = history.dataframe[0].value
    assert {"request", "approve", "promote"} <= set(table["action"])
    assert "verify" in texts(history, ("success",))
    tags = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_model_version("credit-risk", "4").tags
    assert sum(key.startswith("tower_audit_") for key in tags) >= 3


def test_reviewer_rejects_with_a_comment_and_nothing_moves(stores):
    settings, ctx = stores
    request_in_browser("dave", "demand-forecast", "4", "Production", "retrained on October")
    at = decide_in_browser("ravi", "Reject", "")  # a rejection without a comment is refused
    assert "comment" in texts(at, ("error",)).lower()
    assert review_state.list_requests(ctx, status="open"), "a refused rejection records nothing"
    at = decide_in_browser("ravi", "Reject", "MAE got worse on the holiday weeks")
    # The page redraws from the ledger: the decided request is gone from the queue, no button left.
    assert "rejected" in texts(at, ("success",))
    assert "No promotion request is waiting" in texts(at, ("info",))
    assert not any(b.label in ("Approve", "Reject") for b in at.button)
    [req] = review_state.list_requests(ctx, model="demand-forecast")
    assert req.status == "rejected" and req.resolution.comment == "MAE got worse on the holiday weeks"
    assert alias(settings, "demand-forecast", "production") == "3"


@pytest.mark.parametrize(("sub", "hidden"), [
    ("vera", ["app_pages/promotions.py", "app_pages/review.py"]),
    ("sam", ["app_pages/promotions.py", "app_pages/review.py"]),
    ("alice", ["app_pages/review.py"]),
    ("rita", ["app_pages/promotions.py"]),
])
def test_a_role_without_the_right_does_not_get_the_page(stores, sub, hidden):
    at = page(sub)
    for path in hidden:
        with pytest.raises(ValueError):
            at.switch_page(path)


def test_a_role_without_the_right_is_refused_by_the_service_itself(stores):
    settings, ctx = stores
    request_in_browser("carol", "fraud-detection", "5", "Production", "restores latency")
    [req] = review_state.list_requests(ctx, status="open")
    for sub in ("vera", "sam", "carol"):  # viewer, data scientist, and the requester herself
        actor = actor_from_claims(claims(sub), auth_config(settings))
        with pytest.raises(Forbidden):
            promotion.approve(ctx, actor, req.id, "sneaky", "override")
    assert not audit.history(ctx, action="approve") and not audit.history(ctx, action="promote")
    with pytest.raises(Forbidden):
        viewer = actor_from_claims(claims("vera"), auth_config(settings))
        promotion.request_promotion(ctx, viewer, "fraud-detection", "2", "Production", "a viewer asks")


def test_owner_sees_only_her_own_models_in_the_request_form(stores):
    at = page("bob", "app_pages/promotions.py")
    assert at.selectbox(key="promote_model").options == ["loan-approval"]


def test_only_an_admin_may_approve_past_a_failed_gate_and_must_say_why(demo_policy_stores):
    settings, ctx = demo_policy_stores
    # The demo policy: the AUC gate and the drift/fairness gates (no monitoring yet) fail for v5.
    request_in_browser("carol", "fraud-detection", "5", "Production", "restores latency")
    at = decide_in_browser("adam", "Approve with override", "ok")
    assert "needs a written reason" in texts(at, ("error",))
    decide_in_browser("adam", "Approve with override", "ok", override="latency fix outweighs the recall gate")
    assert alias(settings, "fraud-detection", "production") == "5"
    [promoted] = audit.history(ctx, action="promote")
    assert promoted.is_override and promoted.override_reason == "latency fix outweighs the recall gate"


def test_a_reviewer_without_the_override_role_is_told_so_before_typing_and_offered_only_reject(
        demo_policy_stores):
    request_in_browser("carol", "fraud-detection", "5", "Production", "restores latency")
    at = page("rita", "app_pages/review.py")
    assert not any(t.label.startswith("Override reason") for t in at.text_area)
    assert [b.label for b in at.button if b.label in ("Approve", "Approve with override")] == []
    warning = texts(at, ("warning",))
    assert "You may reject, not approve" in warning and "override" in warning and "admin" in warning
    assert any(b.label == "Reject" for b in at.button)


def test_the_demo_credit_risk_candidate_is_promoted_through_one_override_and_one_approval(demo_policy_stores):
    settings, ctx = demo_policy_stores  # credit-risk: 2 approvals, only admins override, one admin
    request_in_browser("alice", "credit-risk", "4", "Production", "v4 adds the new bureau features")
    at = page("adam", "app_pages/review.py")
    assert any(b.label == "Approve with override" for b in at.button), "the demo candidate fails a gate"
    at = decide_in_browser("adam", "Approve with override", "risk signed off", override="drift is the new bureau data")
    assert "waiting for more approvals" in texts(at, ("success",))
    at = page("rita", "app_pages/review.py")
    assert "overrode the failed gates" in texts(at, ("info",))
    assert not any(t.label.startswith("Override reason") for t in at.text_area)
    decide_in_browser("rita", "Approve", "agreed")
    assert alias(settings, "credit-risk", "production") == "4"
    overrides = [d for d in audit.history(ctx, model="credit-risk") if d.is_override]
    assert [d.actor_subject for d in overrides] == ["adam"]


def test_an_expired_sign_in_cannot_decide_and_nothing_is_recorded(stores):
    settings, ctx = stores
    request_in_browser("alice", "credit-risk", "4", "Production", "v4")
    at = page("rita", "app_pages/review.py", expires_in_s=-60)
    widget(at.text_area, "Comment").input("late")
    widget(at.button, "Approve").click().run()
    assert "sign-in has expired" in texts(at, ("error",))
    assert not audit.history(ctx, action="approve")


def test_a_stale_request_is_refused_on_the_review_page_until_the_evidence_is_refreshed(stores):
    settings, ctx = stores
    request_in_browser("dave", "demand-forecast", "4", "Production", "retrained on October")
    # the holder changes under the request: an admin's rollback-style move outside the tower
    MlflowClient(tracking_uri=settings.mlflow_tracking_uri).set_registered_model_alias(
        "demand-forecast", "production", "2")
    at = page("ravi", "app_pages/review.py")
    assert not at.exception
    warning = texts(at, ("warning",))
    assert "held by v3 when this evidence was taken and is held by v2 now" in warning
    assert "Refresh the evidence" in warning and not [b for b in at.button if b.label == "Approve"]
    widget(at.button, "Refresh evidence").click().run()
    assert not at.exception
    [req] = review_state.list_requests(ctx, status="open")
    assert (req.round, req.previous_version) == (1, "2")
    at = decide_in_browser("ravi", "Reject", "on the fresh evidence: v4 served no traffic")
    assert not texts(at, ("error",)), texts(at, ("error",))
    assert review_state.get_request(ctx, req.id).status == "rejected"


def test_the_audit_page_reports_a_deleted_newest_ledger_row_by_its_sequence_number(stores):
    settings, ctx = stores
    request_in_browser("dave", "demand-forecast", "4", "Production", "retrained on October")
    decide_in_browser("ravi", "Reject", "not yet")
    [newest] = audit.history(ctx, limit=1)
    with ctx.engine.begin() as conn:  # a database admin, bypassing the tower
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS governance_ledger_no_delete") \
            if conn.dialect.name == "sqlite" else conn.exec_driver_sql(
                "ALTER TABLE governance_ledger DISABLE TRIGGER USER")
        conn.exec_driver_sql(f"DELETE FROM governance_projections WHERE decision_id = '{newest.decision_id}'")
        conn.exec_driver_sql(f"DELETE FROM governance_ledger WHERE seq = {newest.seq}")
    at = page("vera", "app_pages/audit.py", model="demand-forecast")
    assert not at.exception
    assert f"row {newest.seq}" in texts(at, ("error",))


# ----------------------------------------------------------------------------------------------
# The requester's side
# ----------------------------------------------------------------------------------------------
def test_the_gates_show_for_the_chosen_version_before_anything_is_submitted(stores):
    _, ctx = stores
    at = page("alice", "app_pages/promotions.py")
    at.selectbox(key="promote_model").select("credit-risk").run()
    widget(at.selectbox, "Version").select("4").run()
    widget(at.selectbox, "To stage").select("Production").run()
    gates = next(d.value for d in at.dataframe if "Gate" in d.value.columns or "gate" in d.value.columns)
    assert "metric:roc_auc" in set(gates.iloc[:, 0])
    assert "Gates for v4 → Production" in texts(at, ("markdown",))
    assert review_state.list_requests(ctx) == [], "a preview records nothing"


def test_a_refused_request_keeps_the_justification_the_owner_typed(stores):
    at = page("alice", "app_pages/promotions.py")
    at.selectbox(key="promote_model").select("credit-risk").run()
    widget(at.selectbox, "Version").select("3").run()  # v3 already holds Production in the demo
    widget(at.selectbox, "To stage").select("Production").run()
    widget(at.text_area, "Justification").input("a long, careful justification")
    widget(at.button, "Request promotion").click().run()
    assert "already holds Production" in texts(at, ("error",))
    assert widget(at.text_area, "Justification").value == "a long, careful justification"


def test_a_recorded_request_clears_the_justification(stores):
    at = request_in_browser("alice", "credit-risk", "4", "Production", "v4 adds the new bureau features")
    assert "recorded" in texts(at, ("success",))
    assert widget(at.text_area, "Justification").value == ""


def test_an_owner_sees_and_cancels_a_bots_request_on_her_model(demo_policy_stores):
    settings, ctx = demo_policy_stores  # the demo policy lets ci-bot request
    ci = Actor(issuer=auth_config(settings).service_issuer, subject="ci-bot", name="service:ci-bot",
               roles=frozenset({"model_owner"}), kind="service")
    rid = promotion.request_promotion(ctx, ci, "credit-risk", "4", "Production", "nightly retrain").request.id
    at = page("alice", "app_pages/promotions.py")
    table = at.dataframe[-1].value
    assert list(table["Requested by"]) == ["service:ci-bot"] and list(table["Status"]) == ["open"]
    widget(at.text_input, "Why").input("not before the bureau data review")
    widget(at.button, "Cancel request").click().run()
    assert not at.exception
    request = review_state.get_request(ctx, rid)
    assert request.status == "cancelled" and request.resolution.actor_subject == "alice"
    table = at.dataframe[-1].value
    assert table["Decided by"].iloc[0].startswith("Alice")
    assert table["Decision comment"].iloc[0] == "not before the bureau data review"


def test_another_owner_does_not_see_or_cancel_a_bots_request_on_a_model_she_does_not_own(demo_policy_stores):
    settings, ctx = demo_policy_stores
    ci = Actor(issuer=auth_config(settings).service_issuer, subject="ci-bot", name="service:ci-bot",
               roles=frozenset({"model_owner"}), kind="service")
    promotion.request_promotion(ctx, ci, "credit-risk", "4", "Production", "nightly retrain")
    at = page("bob", "app_pages/promotions.py")  # bob owns loan-approval only
    assert "No promotion request has been made on your models" in texts(at, ("info",))
    assert not any(b.label == "Cancel request" for b in at.button)


def test_the_training_skew_gate_shows_each_features_interval_for_the_candidate(demo_policy_stores):
    """loan-approval's policy compares the candidate's own logged training data with the last week of
    traffic: the gate passes on the demo, and its detail gives intervals and noise levels, not bare numbers."""
    _, ctx = demo_policy_stores
    at = page("bob", "app_pages/promotions.py")
    at.selectbox(key="promote_model").select("loan-approval").run()
    widget(at.selectbox, "Version").select("3").run()
    widget(at.selectbox, "To stage").select("Production").run()
    assert not at.exception
    gates = next(d.value for d in at.dataframe if "Gate" in d.value.columns or "gate" in d.value.columns)
    row = gates[gates.iloc[:, 0] == "training_skew"]
    assert len(row) == 1, list(gates.iloc[:, 0])
    shown = " ".join(str(v) for v in row.iloc[0].tolist())
    assert "passed" in shown.lower() and "0 of 5 features" in shown and "differ from live traffic" in shown
    assert review_state.list_requests(ctx) == [], "a preview records nothing"
