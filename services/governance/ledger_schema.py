"""The ledger's tables, declared on ``services.stores.tower_db.METADATA`` (``create_schema`` creates them):

- ``governance_ledger``       one row per decision, never updated or deleted (a trigger refuses it):
                              ``seq`` (1, 2, 3, ... without gaps), a deterministic ``decision_id``
                              (UNIQUE), the actor, the action, the comment, the evidence digest,
                              the server time (UTC), ``prev_hash`` and ``hash`` = SHA-256 over the
                              canonical JSON of the row's other fields (prev_hash among them).
- ``governance_requests``     promotion requests and their status; ``open_key`` is UNIQUE while a
                              request is open, so one (model, version, stage) has one open request.
- ``governance_evidence``     evidence snapshots (canonical JSON), addressed by their digest.
- ``governance_projections``  which decisions have been projected onto the registry, and what.

Also the upgrade of an existing database (new nullable columns, the TRUNCATE trigger).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from services.errors import TowerStateUnavailable
from services.governance.ledger_tx import first_line
from services.stores.tower_db import METADATA, UPGRADES, schema_upgrade

LEDGER = sa.Table(
    "governance_ledger", METADATA,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("decision_id", sa.String(64), nullable=False, unique=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("model", sa.Text, nullable=False, index=True),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("from_stage", sa.Text, nullable=True),  # the stage(s) the version held before
    sa.Column("to_stage", sa.Text, nullable=False),  # the stage the request is about
    sa.Column("previous_version", sa.String(32), nullable=True),  # the holder of to_stage before
    sa.Column("actor_name", sa.Text, nullable=False),
    sa.Column("actor_issuer", sa.Text, nullable=False),
    sa.Column("actor_subject", sa.Text, nullable=False),
    sa.Column("actor_email", sa.Text, nullable=True),
    sa.Column("actor_roles", sa.Text, nullable=False),  # canonical JSON list
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("override_reason", sa.Text, nullable=True),
    sa.Column("overridden_gates", sa.Text, nullable=False),  # canonical JSON list
    sa.Column("evidence_digest", sa.String(64), nullable=True),
    sa.Column("recorded_at", sa.String(32), nullable=False),  # ISO 8601 UTC, microseconds, "Z"
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # Added later (nullable; hashed only when set, so rows written before them still verify).
    sa.Column("on_behalf_of", sa.Text, nullable=True),  # the person a service account acted for
    sa.Column("key_id", sa.String(16), nullable=True),  # fingerprint of the HMAC key of ``hash`` (None: SHA-256)
    # Who the actor is as N-of-M counts people: "person:<verified claim>", or the account's issuer|subject
    # when the claim is absent or unverified. Rows written before it fall back to their e-mail.
    sa.Column("actor_person", sa.Text, nullable=True),
    # On a promote row: the decision ids of the earlier approvals the quorum was completed with (canonical
    # JSON list), so a closed request's history shows what the decision counted, not a recount.
    sa.Column("counted", sa.Text, nullable=True),
)
REQUESTS = sa.Table(
    "governance_requests", METADATA,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # promotion / rollback
    sa.Column("model", sa.Text, nullable=False, index=True),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("stage", sa.Text, nullable=False),
    sa.Column("previous_version", sa.String(32), nullable=True),
    sa.Column("requester_issuer", sa.Text, nullable=False),
    sa.Column("requester_subject", sa.Text, nullable=False),
    sa.Column("requester_name", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence_digest", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("resolved_at", sa.String(32), nullable=True),
    sa.Column("resolution_id", sa.String(64), nullable=True),
    sa.Column("open_key", sa.String(64), nullable=True, unique=True),  # NULL once resolved
    sa.Column("on_behalf_of", sa.Text, nullable=True),
)
EVIDENCE = sa.Table(
    "governance_evidence", METADATA,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)
PROJECTIONS = sa.Table(
    "governance_projections", METADATA,
    sa.Column("decision_id", sa.String(64), sa.ForeignKey("governance_ledger.decision_id"), primary_key=True),
    sa.Column("applied_at", sa.String(32), nullable=False),
    sa.Column("tag_key", sa.String(250), nullable=False),
    sa.Column("applied", sa.Text, nullable=False),  # JSON: the tags and the alias/stage written
)
TABLES = (LEDGER, REQUESTS, EVIDENCE, PROJECTIONS)

# Append-only, enforced by the database as well: UPDATE and DELETE of a ledger row are refused.
_APPEND_ONLY = "the governance ledger is append-only"
for _op in ("UPDATE", "DELETE"):
    event.listen(LEDGER, "after_create", sa.DDL(  # type: ignore[no-untyped-call]  # SQLAlchemy DDL() unannotated
        f"CREATE TRIGGER governance_ledger_no_{_op.lower()} BEFORE {_op} ON governance_ledger "
        f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END").execute_if(dialect="sqlite"))
event.listen(LEDGER, "after_create", sa.DDL(  # type: ignore[no-untyped-call]  # SQLAlchemy DDL() unannotated
    "CREATE OR REPLACE FUNCTION governance_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"'BEGIN RAISE EXCEPTION ''{_APPEND_ONLY}''; END'").execute_if(dialect="postgresql"))
event.listen(LEDGER, "after_create", sa.DDL(  # type: ignore[no-untyped-call]  # SQLAlchemy DDL() unannotated
    "CREATE TRIGGER governance_ledger_append_only BEFORE UPDATE OR DELETE ON governance_ledger "
    "FOR EACH ROW EXECUTE FUNCTION governance_ledger_append_only()").execute_if(dialect="postgresql"))
# TRUNCATE fires no row trigger: it needs a statement-level one (PostgreSQL; SQLite has no TRUNCATE).
_NO_TRUNCATE = ("CREATE TRIGGER governance_ledger_no_truncate BEFORE TRUNCATE ON governance_ledger "
                "FOR EACH STATEMENT EXECUTE FUNCTION governance_ledger_append_only()")


def upgrade_tables(engine: Engine) -> None:
    """Bring an existing database up to date: new nullable columns, the TRUNCATE trigger (idempotent).

    Run by the role that owns the tables (``create_schema``); the app's own role cannot alter them.
    """
    inspector = sa.inspect(engine)
    with engine.begin() as conn:
        for table in (LEDGER, REQUESTS):
            if not inspector.has_table(table.name):
                continue
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present and column.nullable:
                    conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} "
                                         f"{column.type.compile(engine.dialect)}"))
        if engine.dialect.name == "postgresql" and inspector.has_table(LEDGER.name):
            exists = conn.execute(sa.text("SELECT 1 FROM pg_trigger WHERE tgname = 'governance_ledger_no_truncate' "
                                          "AND tgrelid = 'governance_ledger'::regclass")).first()
            if exists is None:
                conn.execute(sa.text(_NO_TRUNCATE))


UPGRADES.append(upgrade_tables)


@schema_upgrade
def canonical_open_keys(engine: Engine) -> None:
    """An open request an older tower wrote as "03" keeps "03" (its ledger row cannot be rewritten),
    but its open key becomes the canonical one, so no second open request for "3" can sit beside it.
    Where one already does, the key is left alone and `audit verify` reports the row."""
    from services.governance.ledger_rows import open_key  # ledger_rows imports this module's tables
    from services.versions import intended_version

    if not sa.inspect(engine).has_table(REQUESTS.name):
        return
    with engine.connect() as conn:
        rows = conn.execute(sa.select(REQUESTS.c.id, REQUESTS.c.model, REQUESTS.c.version, REQUESTS.c.stage)
                            .where(REQUESTS.c.open_key.is_not(None))).all()
    for row in rows:
        intended = intended_version(row.version)
        if intended is None or intended == row.version:
            continue
        try:  # one row at a time: a key already taken (here, or by another process starting) is skipped
            with engine.begin() as conn:
                conn.execute(REQUESTS.update().where(REQUESTS.c.id == row.id)
                             .values(open_key=open_key(row.model, intended, row.stage)))
        except sa.exc.IntegrityError:
            continue


def create_tables(engine: Engine) -> None:
    """Create the governance tables only (``services.stores.tower_db.create_schema`` creates every table)."""
    try:
        METADATA.create_all(engine, tables=list(TABLES))
        upgrade_tables(engine)
    except sa.exc.OperationalError as exc:
        raise TowerStateUnavailable(f"The tower state database cannot be reached: {first_line(exc)}",
                                    "Check TOWER_DB_URL.") from exc

