"""The tower on PostgreSQL as a role that does not own the governance tables (README, threat model):
it requests, decides and repairs, and it cannot change, delete, truncate or un-trigger the ledger."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg.sql
import pytest
import sqlalchemy as sa

from services.governance import audit, ledger, ledger_tx, projection, promotion
from services.stores.tower_db import make_tower_engine
from tests.support.governance import ALICE, RITA, World, open_world, person

pytestmark = pytest.mark.postgres

GRANTS = """
GRANT CONNECT ON DATABASE {db} TO {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT ON governance_ledger, governance_evidence TO {role};
GRANT SELECT, INSERT, UPDATE ON governance_requests, governance_projections TO {role};
"""


@pytest.fixture
def app_role_world(tmp_path: Path) -> Iterator[tuple[World, sa.Engine]]:
    """A PostgreSQL world whose tables belong to the test's owner role, and an engine of an app role."""
    with open_world(tmp_path, "postgres") as world:
        role = f"tower_app_{uuid.uuid4().hex[:10]}"
        url = sa.make_url(world.tower_url)
        owner = psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database,
                                autocommit=True, connect_timeout=5)
        try:
            owner.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(role)))
            for statement in GRANTS.strip().splitlines():
                owner.execute(psycopg.sql.SQL(statement.rstrip(";")).format(
                    db=psycopg.sql.Identifier(url.database), role=psycopg.sql.Identifier(role)))
            engine = make_tower_engine(url.set(username=role).render_as_string(hide_password=False))
            try:
                yield world, engine
            finally:
                engine.dispose()
        finally:
            owner.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(psycopg.sql.Identifier(role)))
            owner.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))
            owner.close()


def test_a_non_owner_app_role_runs_the_whole_promotion(app_role_world: tuple[World, sa.Engine]) -> None:
    world, engine = app_role_world
    ctx = dataclasses.replace(world.ctx, engine=engine)
    rid = promotion.request_promotion(ctx, ALICE, "credit-risk", "3", "Production", "as the app role").request.id
    assert promotion.approve(ctx, RITA, rid, "ok").promoted
    assert projection.repair_projections(ctx, person("ada", "admin")).failed == ()
    assert ctx.registry.model_aliases("credit-risk")["production"] == "3"
    assert audit.verify_all(ctx).ok


@pytest.mark.parametrize("statement", [
    "UPDATE governance_ledger SET comment = 'rewritten'",
    "DELETE FROM governance_ledger",
    "TRUNCATE governance_ledger CASCADE",
    "ALTER TABLE governance_ledger DISABLE TRIGGER USER",
    "DROP TRIGGER governance_ledger_append_only ON governance_ledger",
])
def test_the_app_role_cannot_rewrite_or_untrigger_the_ledger(app_role_world: tuple[World, sa.Engine],
                                                             statement: str) -> None:
    world, engine = app_role_world
    ctx = dataclasses.replace(world.ctx, engine=engine)
    rid = promotion.request_promotion(ctx, ALICE, "credit-risk", "3", "Production", "v3").request.id
    promotion.approve(ctx, RITA, rid, "ok")
    before = ledger_tx.read(engine, lambda c: ledger.decisions(c))
    with pytest.raises(sa.exc.DBAPIError, match="append-only|permission denied|must be owner"), \
            engine.begin() as conn:
        conn.exec_driver_sql(statement)
    assert ledger_tx.read(engine, lambda c: ledger.decisions(c)) == before
