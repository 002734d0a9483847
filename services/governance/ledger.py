"""The decision ledger: append-only, hash-chained, in the tower state (SQLite or PostgreSQL).

Tables (declared on ``services.stores.tower_db.METADATA``; ``create_schema`` creates them):

- ``governance_ledger``       one row per decision, never updated or deleted (a trigger refuses it):
                              ``seq`` (1, 2, 3, ... without gaps), a deterministic ``decision_id``
                              (UNIQUE), the actor, the action, the comment, the evidence digest,
                              the server time (UTC), ``prev_hash`` and ``hash`` = SHA-256 over the
                              canonical JSON of the row's other fields (prev_hash among them).
- ``governance_requests``     promotion requests and their status; ``open_key`` is UNIQUE while a
                              request is open, so one (model, version, stage) has one open request.
- ``governance_evidence``     evidence snapshots (canonical JSON), addressed by their digest.
- ``governance_projections``  which decisions have been projected onto the registry, and what.

Decision ids: ``request`` rows hash the request id; an approval that does not complete the quorum
hashes (request, approver issuer + subject), so one approver counts once; the *resolution* of a
request (the approval completing the quorum, a rejection or a cancellation) hashes the request id
alone, so a request can be resolved once and only once, whoever races for it.

Appends serialize on the chain head: SQLite takes the write lock up front (``BEGIN IMMEDIATE``,
waiting up to the busy timeout), PostgreSQL a transaction-scoped advisory lock. The work inside is
re-run on a lock timeout, a deadlock or a unique violation, a bounded number of times.
"""

from __future__ import annotations

import fcntl
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, RowMapping

from services.errors import ConfigError, TowerError, TowerStateUnavailable
from services.governance.authz import Action, require_authorized, write_step
from services.governance.canonical import canonical_json, sha256_hex
from services.governance.ledger_keys import LedgerKeys, load_keys
from services.stores.tower_db import METADATA, UPGRADES

T = TypeVar("T")
GENESIS_HASH = "0" * 64
_ADVISORY_LOCK_KEY = 0x746F776572_4C44  # "towerLD": one lock for the chain head of this database
_ATTEMPTS = 6

# Ledger actions (what a row records).
REQUEST, APPROVE, PROMOTE, REJECT, CANCEL = "request", "approve", "promote", "reject", "cancel"
REFRESH = "refresh"  # a reviewer re-snapshotted the evidence: earlier approvals no longer count
LEDGER_ACTIONS = (REQUEST, APPROVE, PROMOTE, REJECT, CANCEL, REFRESH)
# Request status.
OPEN, APPROVED, REJECTED, CANCELLED = "open", "approved", "rejected", "cancelled"
_RESOLVED_STATUS = {PROMOTE: APPROVED, REJECT: REJECTED, CANCEL: CANCELLED}
# The authorization a ledger row needs in the current write scope.
_ROW_ACTIONS: dict[str, tuple[Action, ...]] = {
    REQUEST: (Action.REQUEST_PROMOTION, Action.ROLLBACK_REQUEST),
    APPROVE: (Action.APPROVE,),
    PROMOTE: (Action.APPROVE,),
    REJECT: (Action.REJECT,),
    CANCEL: (Action.CANCEL_REQUEST,),
    REFRESH: (Action.REJECT,),  # the reviewer's right: it can only delay a promotion, never grant one
}

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
OPTIONAL_COLUMNS = ("on_behalf_of", "key_id")  # hashed only when not NULL (see row_hash)
HASHED_COLUMNS = tuple(c.name for c in LEDGER.columns if c.name != "hash" and c.name not in OPTIONAL_COLUMNS)
# The request row's fields that never change; each must equal its ``request`` ledger row's (audit).
REQUEST_IMMUTABLE = {"id": "request_id", "model": "model", "version": "version", "stage": "to_stage",
                     "previous_version": "previous_version", "requester_issuer": "actor_issuer",
                     "requester_subject": "actor_subject", "requester_name": "actor_name", "reason": "comment",
                     "evidence_digest": "evidence_digest", "created_at": "recorded_at",
                     "on_behalf_of": "on_behalf_of"}

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


def create_tables(engine: Engine) -> None:
    """Create the governance tables only (``services.stores.tower_db.create_schema`` creates every table)."""
    try:
        METADATA.create_all(engine, tables=list(TABLES))
        upgrade_tables(engine)
    except sa.exc.OperationalError as exc:
        raise TowerStateUnavailable(f"The tower state database cannot be reached: {_first_line(exc)}",
                                    "Check TOWER_DB_URL.") from exc


# ----------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------
def iso(moment: datetime) -> str:
    """The ledger's time format: UTC, microseconds, 'Z' (fixed width, so it sorts as text)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _id(*parts: str) -> str:
    return sha256_hex("\x1f".join(("tower-decision", *parts)))


def request_decision_id(request_id: str) -> str:
    return _id("request", request_id)


def approval_decision_id(request_id: str, issuer: str, subject: str, round_: int = 0) -> str:
    """One approval per approver and evidence round (round 0 keeps the ids written before refreshes)."""
    return _id("approve", request_id, issuer, subject) if round_ == 0 else \
        _id("approve", request_id, issuer, subject, f"round-{round_}")


def refresh_decision_id(request_id: str, round_: int) -> str:
    return _id("refresh", request_id, str(round_))


def resolution_decision_id(request_id: str) -> str:
    """The one id every terminal decision of a request (promote, reject, cancel) shares."""
    return _id("resolve", request_id)


def open_key(model: str, version: str, stage: str) -> str:
    return sha256_hex("\x1f".join(("open", model, version, stage)))


@dataclass(frozen=True)
class Decision:
    """One ledger row."""

    seq: int
    decision_id: str
    request_id: str
    action: str
    model: str
    version: str
    from_stage: str | None
    to_stage: str
    previous_version: str | None
    actor_name: str
    actor_issuer: str
    actor_subject: str
    actor_email: str | None
    actor_roles: tuple[str, ...]
    comment: str
    override_reason: str | None
    overridden_gates: tuple[str, ...]
    evidence_digest: str | None
    recorded_at: datetime
    prev_hash: str
    hash: str
    on_behalf_of: str | None = None

    @property
    def actor_key(self) -> str:
        return f"{self.actor_issuer}|{self.actor_subject}"

    @property
    def is_override(self) -> bool:
        return bool(self.overridden_gates)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (exports, tags)."""
        return {
            "seq": self.seq, "decision_id": self.decision_id, "request_id": self.request_id,
            "action": self.action, "model": self.model, "version": self.version,
            "from_stage": self.from_stage, "to_stage": self.to_stage, "previous_version": self.previous_version,
            "actor_name": self.actor_name, "actor_issuer": self.actor_issuer, "actor_subject": self.actor_subject,
            "actor_email": self.actor_email, "actor_roles": list(self.actor_roles), "comment": self.comment,
            "override_reason": self.override_reason, "overridden_gates": list(self.overridden_gates),
            "evidence_digest": self.evidence_digest, "recorded_at": iso(self.recorded_at),
            "prev_hash": self.prev_hash, "hash": self.hash, "on_behalf_of": self.on_behalf_of,
        }


@dataclass(frozen=True)
class RequestRow:
    id: str
    kind: str
    model: str
    version: str
    stage: str
    previous_version: str | None
    requester_issuer: str
    requester_subject: str
    requester_name: str
    reason: str
    evidence_digest: str | None
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolution_id: str | None
    on_behalf_of: str | None = None


def row_hash(values: Mapping[str, Any] | RowMapping, keys: LedgerKeys | None = None) -> str:
    """SHA-256 over the canonical JSON of the row's fields (prev_hash included, hash excluded).

    A column added later is hashed only when set: rows written before it verify unchanged, and
    setting or clearing it on a row written after it breaks that row's hash.
    """
    fields = {name: values[name] for name in HASHED_COLUMNS}
    fields.update({name: values[name] for name in OPTIONAL_COLUMNS if values.get(name) is not None})
    text = canonical_json(fields)
    key_id = values.get("key_id")
    if key_id:  # keyed: only a holder of the key can compute it (MissingLedgerKey otherwise)
        return (keys or load_keys()).sign(str(key_id), text)
    return sha256_hex(text)


def decision_from_row(row: Mapping[str, Any] | RowMapping) -> Decision:
    return Decision(
        seq=int(row["seq"]), decision_id=row["decision_id"], request_id=row["request_id"], action=row["action"],
        model=row["model"], version=row["version"], from_stage=row["from_stage"], to_stage=row["to_stage"],
        previous_version=row["previous_version"], actor_name=row["actor_name"], actor_issuer=row["actor_issuer"],
        actor_subject=row["actor_subject"], actor_email=row["actor_email"],
        actor_roles=tuple(json.loads(row["actor_roles"])), comment=row["comment"],
        override_reason=row["override_reason"], overridden_gates=tuple(json.loads(row["overridden_gates"])),
        evidence_digest=row["evidence_digest"], recorded_at=parse_iso(row["recorded_at"]),  # type: ignore[arg-type]
        prev_hash=row["prev_hash"], hash=row["hash"], on_behalf_of=row.get("on_behalf_of"),
    )


def request_from_row(row: Mapping[str, Any] | RowMapping) -> RequestRow:
    return RequestRow(
        id=row["id"], kind=row["kind"], model=row["model"], version=row["version"], stage=row["stage"],
        previous_version=row["previous_version"], requester_issuer=row["requester_issuer"],
        requester_subject=row["requester_subject"], requester_name=row["requester_name"], reason=row["reason"],
        evidence_digest=row["evidence_digest"], status=row["status"],
        created_at=parse_iso(row["created_at"]),  # type: ignore[arg-type]
        resolved_at=parse_iso(row["resolved_at"]), resolution_id=row["resolution_id"],
        on_behalf_of=row.get("on_behalf_of"),
    )


# ----------------------------------------------------------------------------------------------
# The serialized transaction
# ----------------------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]


def _retryable(exc: sa.exc.DBAPIError) -> bool:
    if isinstance(exc, sa.exc.IntegrityError):
        return True  # re-run: it now sees the row that won, and answers idempotently or with Conflict
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if code in ("40001", "40P01", "55P03", "57014"):  # serialization, deadlock, lock/statement timeout
        return True
    text = str(getattr(exc, "orig", exc)).lower()
    return isinstance(exc, sa.exc.OperationalError) and ("locked" in text or "busy" in text)


def _sqlite_locked(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        # The driver must not open transactions by itself, so that ours starts with the write lock.
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")
        return result


def _postgres_locked(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
        return fn(conn)


def run_locked(engine: Engine, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` in one transaction holding the ledger's write lock; commit; return its result.

    ``fn`` reads what it needs under the lock and may be run again (bounded) after a lock
    timeout, a deadlock or a unique violation. A TowerError raised by ``fn`` rolls back and
    propagates at once.
    """
    dialect = engine.dialect.name
    if dialect == "sqlite":
        locked = _sqlite_locked
    elif dialect == "postgresql":
        locked = _postgres_locked
    else:
        raise ConfigError(f"The tower state must be SQLite or PostgreSQL, not {dialect}.", "Check TOWER_DB_URL.")
    for attempt in range(_ATTEMPTS):
        try:
            return locked(engine, fn)
        except TowerError:
            raise
        except sa.exc.DBAPIError as exc:
            if attempt == _ATTEMPTS - 1 or not _retryable(exc):
                raise TowerStateUnavailable(f"The tower state database refused the write: {_first_line(exc)}",
                                            "Try again; if it persists, check TOWER_DB_URL.") from exc
            time.sleep(min(0.5, 0.05 * 2 ** attempt) * (0.5 + random.random()))  # jitter
    raise AssertionError("unreachable")  # pragma: no cover


_PROJECTION_LOCK_KEY = 0x746F776572_5052  # "towerPR": registry projections and repairs, one at a time
PROJECTION_LOCK_WAIT_S = 30.0


@contextmanager
def projection_lock(engine: Engine, wait_s: float = PROJECTION_LOCK_WAIT_S) -> Iterator[None]:
    """Hold the registry-projection lock of this tower state, across threads and processes.

    Projections write to MLflow, which takes seconds; holding the ledger's write lock that long
    would stall every decision, so they have a lock of their own: a session advisory lock on
    PostgreSQL, an exclusive ``flock`` on a file beside the SQLite database. TowerStateUnavailable
    after ``wait_s`` (the decision stays recorded; the repair applies it).
    """
    deadline = time.monotonic() + wait_s
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            while not conn.execute(sa.select(sa.func.pg_try_advisory_lock(_PROJECTION_LOCK_KEY))).scalar():
                if time.monotonic() > deadline:
                    raise TowerStateUnavailable("Another projection of decisions onto the registry is still running.",
                                                "The decision is recorded; run `promote repair` later.")
                time.sleep(0.05)
            try:
                yield
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(_PROJECTION_LOCK_KEY)))
        return
    database = engine.url.database
    path = Path(database + ".projection.lock") if database and database != ":memory:" else None
    if path is None:
        with _MEMORY_LOCK:
            yield
        return
    with open(path, "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TowerStateUnavailable("Another projection of decisions onto the registry is still running.",
                                                "The decision is recorded; run `promote repair` later.") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_MEMORY_LOCK = threading.Lock()


def read(engine: Engine, fn: Callable[[Connection], T]) -> T:
    """Run a read; an unreachable database is TowerStateUnavailable."""
    try:
        with engine.connect() as conn:
            return fn(conn)
    except sa.exc.DBAPIError as exc:
        raise TowerStateUnavailable(f"The tower state database cannot be read: {_first_line(exc)}",
                                    "Check TOWER_DB_URL.") from exc


# ----------------------------------------------------------------------------------------------
# Writes (only inside an authorized write action)
# ----------------------------------------------------------------------------------------------
@write_step()
def append_decision(conn: Connection, *, decision_id: str, request_id: str, action: str, model: str, version: str,
                    from_stage: str | None, to_stage: str, previous_version: str | None, actor_name: str,
                    actor_issuer: str, actor_subject: str, actor_email: str | None, actor_roles: Iterable[str],
                    comment: str, override_reason: str | None, overridden_gates: Sequence[str],
                    evidence_digest: str | None, recorded_at: datetime,
                    on_behalf_of: str | None = None) -> Decision:
    """Append one row at the head of the chain (call inside ``run_locked``)."""
    if action not in _ROW_ACTIONS:
        raise ValueError(f"unknown ledger action {action!r}")
    require_authorized(*_ROW_ACTIONS[action])
    head = conn.execute(sa.select(LEDGER.c.seq, LEDGER.c.hash).order_by(LEDGER.c.seq.desc()).limit(1)).first()
    values: dict[str, Any] = {
        "seq": 1 if head is None else int(head.seq) + 1,
        "decision_id": decision_id, "request_id": request_id, "action": action, "model": model,
        "version": str(version), "from_stage": from_stage, "to_stage": to_stage,
        "previous_version": previous_version, "actor_name": actor_name, "actor_issuer": actor_issuer,
        "actor_subject": actor_subject, "actor_email": actor_email,
        "actor_roles": canonical_json(sorted(set(actor_roles))), "comment": comment,
        "override_reason": override_reason, "overridden_gates": canonical_json(list(overridden_gates)),
        "evidence_digest": evidence_digest, "recorded_at": iso(recorded_at),
        "prev_hash": GENESIS_HASH if head is None else head.hash, "on_behalf_of": on_behalf_of,
    }
    keys = load_keys()
    values["key_id"] = keys.current_id
    values["hash"] = row_hash(values, keys)
    conn.execute(LEDGER.insert().values(**values))
    return decision_from_row(values)


@write_step(Action.REQUEST_PROMOTION, Action.ROLLBACK_REQUEST)
def insert_request(conn: Connection, *, request_id: str, kind: str, model: str, version: str, stage: str,
                   previous_version: str | None, requester_issuer: str, requester_subject: str,
                   requester_name: str, reason: str, evidence_digest: str | None, created_at: datetime,
                   on_behalf_of: str | None = None) -> RequestRow:
    values = {
        "id": request_id, "kind": kind, "model": model, "version": version, "stage": stage,
        "previous_version": previous_version, "requester_issuer": requester_issuer,
        "requester_subject": requester_subject, "requester_name": requester_name, "reason": reason,
        "evidence_digest": evidence_digest, "status": OPEN, "created_at": iso(created_at), "resolved_at": None,
        "resolution_id": None, "open_key": open_key(model, version, stage), "on_behalf_of": on_behalf_of,
    }
    conn.execute(REQUESTS.insert().values(**values))
    return request_from_row(values)


@write_step(Action.APPROVE, Action.REJECT, Action.CANCEL_REQUEST)
def resolve_request(conn: Connection, decision: Decision) -> None:
    """Close the request a terminal decision resolves (same transaction as the ledger row)."""
    status = _RESOLVED_STATUS[decision.action]
    done = conn.execute(
        REQUESTS.update()
        .where(REQUESTS.c.id == decision.request_id, REQUESTS.c.status == OPEN)
        .values(status=status, resolved_at=iso(decision.recorded_at), resolution_id=decision.decision_id,
                open_key=None)
    )
    if done.rowcount != 1:
        raise RuntimeError(f"request {decision.request_id} was not open")


@write_step()
def store_evidence(conn: Connection, body: str, digest: str, created_at: datetime) -> None:
    """Keep an evidence snapshot (content-addressed: the same evidence is stored once)."""
    exists = conn.execute(sa.select(EVIDENCE.c.digest).where(EVIDENCE.c.digest == digest)).first()
    if exists is None:
        conn.execute(EVIDENCE.insert().values(digest=digest, body=body, created_at=iso(created_at)))


@write_step()
def record_projection(engine: Engine, decision_id: str, tag_key: str, applied: Mapping[str, Any],
                      applied_at: datetime) -> bool:
    """Note that ``decision_id`` is projected; False if it already was (a concurrent repair)."""
    def insert(conn: Connection) -> bool:
        found = conn.execute(sa.select(PROJECTIONS.c.decision_id)
                             .where(PROJECTIONS.c.decision_id == decision_id)).first()
        if found is not None:
            return False
        conn.execute(PROJECTIONS.insert().values(decision_id=decision_id, tag_key=tag_key,
                                                 applied=canonical_json(applied), applied_at=iso(applied_at)))
        return True
    return run_locked(engine, insert)


# ----------------------------------------------------------------------------------------------
# Reads
# ----------------------------------------------------------------------------------------------
def get_request_row(conn: Connection, request_id: str) -> RequestRow | None:
    row = conn.execute(sa.select(REQUESTS).where(REQUESTS.c.id == request_id)).mappings().first()
    return None if row is None else request_from_row(row)


def open_request_for(conn: Connection, model: str, version: str, stage: str) -> RequestRow | None:
    row = conn.execute(sa.select(REQUESTS).where(REQUESTS.c.open_key == open_key(model, version, stage))
                       ).mappings().first()
    return None if row is None else request_from_row(row)


def decision_by_id(conn: Connection, decision_id: str) -> Decision | None:
    row = conn.execute(sa.select(LEDGER).where(LEDGER.c.decision_id == decision_id)).mappings().first()
    return None if row is None else decision_from_row(row)


def decisions_of_request(conn: Connection, request_id: str) -> list[Decision]:
    rows = conn.execute(sa.select(LEDGER).where(LEDGER.c.request_id == request_id).order_by(LEDGER.c.seq)).mappings()
    return [decision_from_row(r) for r in rows]


def decisions(conn: Connection, *conditions: Any, descending: bool = False, limit: int | None = None) -> list[Decision]:
    query = sa.select(LEDGER).where(*conditions).order_by(LEDGER.c.seq.desc() if descending else LEDGER.c.seq)
    if limit is not None:
        query = query.limit(limit)
    return [decision_from_row(r) for r in conn.execute(query).mappings()]


def latest_promotion(conn: Connection, model: str, stage: str, *, until: datetime | None = None) -> Decision | None:
    conditions = [LEDGER.c.model == model, LEDGER.c.to_stage == stage, LEDGER.c.action == PROMOTE]
    if until is not None:
        conditions.append(LEDGER.c.recorded_at <= iso(until))
    found = decisions(conn, *conditions, descending=True, limit=1)
    return found[0] if found else None


class TamperedRecord(TowerError):
    """A stored record does not match the hash that the ledger holds for it."""


def load_evidence(conn: Connection, digest: str) -> str | None:
    """The evidence body stored under ``digest``, verified against it (TamperedRecord if edited)."""
    body = conn.execute(sa.select(EVIDENCE.c.body).where(EVIDENCE.c.digest == digest)).scalar()
    if body is not None and sha256_hex(body) != digest:
        raise TamperedRecord(f"The evidence snapshot {digest[:12]} was altered after it was recorded: its content "
                             "no longer matches its digest.", "Run `audit verify`; do not decide on it.")
    return body


def verified_request_decision(conn: Connection, request_id: str) -> Decision:
    """The request's own ledger row, its hash checked: the facts authorization trusts (requester,
    holder at request time, on-behalf-of) come from here, never from the editable request table."""
    row = conn.execute(sa.select(LEDGER).where(LEDGER.c.decision_id == request_decision_id(request_id))
                       ).mappings().first()
    if row is None or row_hash(row) != row["hash"]:
        raise TamperedRecord(f"The ledger row of request {request_id[:12]} is missing or altered.",
                             "Run `audit verify`; nobody may decide on this request until it is resolved.")
    decision = decision_from_row(row)
    stored = get_request_row(conn, request_id)
    if stored is not None:
        for field_name, ledger_field in REQUEST_IMMUTABLE.items():
            mine = getattr(stored, field_name)
            theirs = getattr(decision, ledger_field)
            if field_name in ("id",):
                continue
            if field_name == "created_at":
                mine, theirs = iso(mine), iso(theirs)
            if mine != theirs:
                raise TamperedRecord(f"Request {request_id[:12]} was altered: its {field_name} no longer matches "
                                     "the ledger.", "Run `audit verify`; nobody may decide on it.")
    return decision


def head(conn: Connection) -> Decision | None:
    found = decisions(conn, descending=True, limit=1)
    return found[0] if found else None


def promoted_stages(conn: Connection) -> set[tuple[str, str]]:
    """(model, stage) pairs the tower has ever promoted: the ones the registry must follow."""
    rows = conn.execute(sa.select(LEDGER.c.model, LEDGER.c.to_stage).where(LEDGER.c.action == PROMOTE).distinct())
    return {(r.model, r.to_stage) for r in rows}


def projected_ids(conn: Connection) -> set[str]:
    return set(conn.execute(sa.select(PROJECTIONS.c.decision_id)).scalars())
