"""Two replicas behind HAProxy (deploy/haproxy.cfg) sharing the tower state on PostgreSQL.

Through the proxy's HTTP and websocket path, as browsers use it: reviewers signed in through the OIDC
provider (the sticky cookie spreads their browsers over both replicas) press Approve on the same
request in 20 sessions at once; the ledger records one decision. Then one replica is stopped and
every browser, those it served included, reconnects through the proxy and is served by the other.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import yaml

from bench.protocol_load.signin import sign_in
from bench.protocol_load.wire import StreamSession
from services.auth.identity import Actor, auth_config
from services.governance import ledger, promotion, review_state
from services.settings import PROJECT_ROOT
from services.wiring import governance_context, load_settings
from tests.support.production import Postgres
from tests.support.replicas import Deployment, deployment, haproxy_binary

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(haproxy_binary() is None,
                                 reason="HAProxy is not installed (make test installs it when run as root)")]

MODEL, STAGE = "demand-forecast", "Staging"
BROWSERS, TABS = 4, 5  # 20 sessions: each reviewer's browser has five tabs open on the queue


@pytest.fixture
def shared_state(demo_dir: Path, postgres_url: str, tmp_path: Path):
    """A PostgreSQL tower state of the test's own, and a tower.yaml whose demand-forecast policy lets a
    gate without data pass (the fresh state has no monitoring results): a reviewer may approve."""
    postgres = Postgres(postgres_url)
    name = postgres.create(f"tower_deploy_{uuid.uuid4().hex[:12]}")
    config = yaml.safe_load((PROJECT_ROOT / "tower.yaml").read_text())
    config["policies"][MODEL]["no_data"] = "pass"
    path = tmp_path / "tower.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {"TOWER_DB_URL": postgres.database_url(name), "TOWER_CONFIG": str(path)}
    try:
        yield env
    finally:
        postgres.drop(name)


def _request(demo_dir: Path, env: dict[str, str]) -> tuple[object, str, str]:
    settings = load_settings({"TOWER_DATA_DIR": str(demo_dir), "TOWER_DEMO": "1", **env})
    ctx = governance_context(settings)
    holder = ctx.current_holders(MODEL)[STAGE]
    version = next(v.version for v in ctx.registry.list_versions(MODEL) if v.version != holder)
    ci = Actor(issuer=auth_config(settings).service_issuer, subject="ci-bot", name="service:ci-bot",
               roles=frozenset({"model_owner"}), kind="service")
    rid = promotion.request_promotion(ctx, ci, MODEL, version, STAGE, "nightly retrain").request.id
    return ctx, rid, version


async def _approve_everywhere(url: str) -> tuple[list[dict[str, str]], list[StreamSession], list]:
    browsers = await asyncio.gather(*(sign_in(url, "rita") for _ in range(BROWSERS)))
    cookies = [c for c, _seconds in browsers]
    tabs = [await StreamSession.open(url, c) for c in cookies for _ in range(TABS)]
    shown = await asyncio.gather(*(tab.run_page("review") for tab in tabs))
    for run in shown:
        assert run.ok and "Approve" in run.buttons, (run.status, run.buttons, run.alerts)
    comment = next(label for label in shown[0].text_areas if label.startswith("Comment"))
    pressed = await asyncio.gather(*(
        tab.run_page("review", widgets=[{"id": run.text_areas[comment], "text": "looks right"},
                                        {"id": run.buttons["Approve"], "trigger": True}])
        for tab, run in zip(tabs, shown, strict=True)))
    return cookies, tabs, pressed


async def _journey(app: Deployment, ctx: object, rid: str, version: str) -> None:
    cookies, tabs, pressed = await _approve_everywhere(app.url)

    served_by = [c["tower_replica"] for c in cookies]
    assert set(served_by) == {"app1", "app2"}, served_by  # new browsers spread, then stick by cookie
    for run in pressed:
        assert run.ok, run.status  # nobody sees an exception or an error box
    # Every session that got to press sees the one decision (its model name escaped as Markdown).
    recorded = [text for run in pressed for text in run.alerts if text.startswith("Recorded:")]
    assert recorded and all(text.endswith(f" v{version} promoted.") for text in recorded), recorded

    with ctx.engine.connect() as conn:  # type: ignore[attr-defined]
        decisions = [d for d in ledger.decisions_of_request(conn, rid) if d.action != "request"]
    assert [(d.action, d.actor_subject) for d in decisions] == [("promote", "rita")], decisions  # quorum of one
    assert review_state.get_request(ctx, rid).status == "approved"  # type: ignore[arg-type]
    assert ctx.current_holders(MODEL)[STAGE] == version  # type: ignore[attr-defined]

    # One replica dies with its sessions open: their websockets close, the others' stay up.
    dead = next(r for r in app.replicas if r.name == "app1")
    await asyncio.to_thread(dead.stop)
    on_dead = [tab for i, tab in enumerate(tabs) if served_by[i // TABS] == "app1"]
    on_live = [tab for i, tab in enumerate(tabs) if served_by[i // TABS] == "app2"]
    assert all(await asyncio.gather(*(tab.wait_closed_by_server(10) for tab in on_dead)))
    assert (await on_live[0].run_page("review")).ok

    # Every browser's front end reconnects through the proxy, asking for its old session: the cookie
    # naming the dead replica is redispatched, and the live replica serves a new session, signed in.
    for browser, first_tab in zip(cookies, tabs[::TABS], strict=True):
        tab = await StreamSession.open(app.url, browser, resume=first_tab.session_id)
        run = await tab.run_page("review")
        await tab.close()
        assert run.ok and run.title == "Review queue", (run.status, run.title)
        assert "Sign in" not in run.buttons  # the sign-in cookie is valid on the other replica
        assert any("No promotion request is waiting" in text for text in run.alerts), run.alerts
    for tab in tabs:
        await tab.close()


def test_approvals_in_20_sessions_over_both_replicas_record_one_decision_and_one_replica_can_die(
        demo_dir: Path, shared_state: dict[str, str]) -> None:
    ctx, rid, version = _request(demo_dir, shared_state)
    with deployment(demo_dir, 2, proxy=True, env=shared_state) as app:
        asyncio.run(_journey(app, ctx, rid, version))
