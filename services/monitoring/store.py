"""Monitoring tables of the tower state (docs/ARCHITECTURE.md), declared on ``services.stores.tower_db.METADATA``.

``monitoring_results`` is long format, one row per (model, version, window, slice, column, metric),
readable by any SQL client::

    SELECT window_start, column_name, value, threshold, alert FROM monitoring_results
    WHERE model = 'credit-risk' AND version = '*' AND metric = 'drift_score' ORDER BY window_start

Conventions: ``version`` ``'*'`` is all versions together; ``slice_key``/``slice_value`` ``''`` is the
whole population (fairness rows use the sensitive attribute and its group); ``column_name`` ``''``
is a model-level metric; ``segment`` ``''`` is the whole population, else the name of a segment
declared in tower.yaml (``services.segments``); ``method`` ``''`` where no statistical method applies. ``alert`` is the
per-window verdict of the metric against ``threshold`` (NULL when not judged). ``lower``/``upper``/
``noise`` bound the value of a ``drift_effect`` row (its bootstrap interval, its noise level; issue 15)
and are NULL on every other row. Windows are
replaced whole: the job deletes a window's rows and inserts the new ones in one transaction, and a
unique constraint forbids duplicates.

``monitoring_references`` keeps each reference profile (histograms, value counts, performance)
once per (model, reference definition), keyed by the digest of the definition.

``monitoring_fitted`` keeps the small objects fitted on a reference (a calibration map, PCA
components and their band), one per (reference, kind), beside the profile they were fitted with.

``alert_episodes`` is the alert state and its history: one row per episode of a rule's condition,
``open`` (condition holds, not notified yet), ``notifying`` (a run is sending it), ``notified``,
``resolved`` (the condition cleared, or a person resolved it). ``severity`` is ``warning`` or
``critical`` (``services.monitoring.config``, per rule). The workflow columns (``workflow``,
``snoozed_until``, ``assignee``, ``workflow_seq``) are what people did to the episode; every action is a
row of the append-only ``alert_actions``, written in the same transaction
(``services.monitoring.alert_workflow``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.segments import OVERALL
from services.stores.tower_db import METADATA, schema_upgrade

ALL_VERSIONS = "*"
NO_SLICE = ""
MODEL_LEVEL = ""

# Alert episode statuses.
OPEN, NOTIFYING, NOTIFIED, RESOLVED = "open", "notifying", "notified", "resolved"
ACTIVE_STATUSES = (OPEN, NOTIFYING, NOTIFIED)
# Severities and workflow states (issue 14, alert workflow).
WARNING, CRITICAL = "warning", "critical"
ACKNOWLEDGED, SNOOZED = "acknowledged", "snoozed"  # workflow: OPEN, ACKNOWLEDGED, SNOOZED or RESOLVED

monitoring_results = sa.Table(
    "monitoring_results", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("version", sa.String(255), nullable=False),
    sa.Column("window_start", sa.DateTime, nullable=False),
    sa.Column("window_end", sa.DateTime, nullable=False),
    sa.Column("segment", sa.String(64), nullable=False, server_default=""),  # '' = the whole population
    sa.Column("slice_key", sa.String(255), nullable=False, server_default=""),
    sa.Column("slice_value", sa.String(1000), nullable=False, server_default=""),
    sa.Column("column_name", sa.String(255), nullable=False, server_default=""),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("method", sa.String(64), nullable=False, server_default=""),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("alert", sa.Boolean, nullable=True),
    sa.Column("reference_id", sa.String(64), nullable=True),
    sa.Column("computed_at", sa.DateTime, nullable=False),
    # Issue 15: a statistic's bootstrap interval and its noise level at the window's size (drift_effect
    # rows); NULL elsewhere. Added to older databases by interval_columns.
    sa.Column("lower", sa.Float, nullable=True),
    sa.Column("upper", sa.Float, nullable=True),
    sa.Column("noise", sa.Float, nullable=True),
    sa.UniqueConstraint("model", "version", "window_start", "window_end", "segment", "slice_key", "slice_value",
                        "column_name", "metric", name="uq_monitoring_results_cell"),
    sa.Index("ix_monitoring_results_model_metric", "model", "metric", "window_start"),
)

monitoring_references = sa.Table(
    "monitoring_references", METADATA,
    sa.Column("reference_id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(255), nullable=False, index=True),
    sa.Column("definition", sa.Text, nullable=False),  # JSON: what the reference is
    sa.Column("payload", sa.Text, nullable=False),  # JSON: edges, histograms, value counts, performance
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("computed_at", sa.DateTime, nullable=False),
)

monitoring_fitted = sa.Table(
    "monitoring_fitted", METADATA,
    sa.Column("reference_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(64), primary_key=True),  # e.g. "calibration", "pca"
    sa.Column("model", sa.String(255), nullable=False, index=True),
    sa.Column("payload", sa.Text, nullable=False),  # JSON written by the kind's own module
    sa.Column("computed_at", sa.DateTime, nullable=False),
)

# Issue 16: the all-versions aggregates of each day that is over that the job computed, so that a
# window of whole days adds its kept days instead of binning every row again (services.monitoring.kept_days).
# One row per (model, segment, day); the digests say under which reference and mapping it holds, and the
# payload's digest (over its key too) makes an edited or moved row a miss. The payload is JSON, never pickle.
monitoring_kept_days = sa.Table(
    "monitoring_kept_days", METADATA,
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("segment", sa.String(64), primary_key=True),  # '' = the whole population
    sa.Column("day", sa.Date, primary_key=True),  # the UTC day [00:00, 24:00)
    sa.Column("profile_digest", sa.String(64), nullable=False),  # the reference profile's id and edges
    sa.Column("mapping_digest", sa.String(64), nullable=False),  # the mapping parts that change the numbers
    sa.Column("payload", sa.Text, nullable=False),  # JSON: counts and sums of the day (no latency)
    sa.Column("payload_digest", sa.String(64), nullable=False),
    sa.Column("computed_at", sa.DateTime, nullable=False),
)

alert_episodes = sa.Table(
    "alert_episodes", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(255), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(1000), nullable=False, server_default=""),  # column, attribute, or ''
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("opened_window", sa.DateTime, nullable=False),  # start of the window that opened it
    sa.Column("last_window", sa.DateTime, nullable=False),  # latest window in which the condition held
    sa.Column("resolved_window", sa.DateTime, nullable=True),  # first window in which it no longer held
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=True),  # the metric in last_window
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("opened_at", sa.DateTime, nullable=False),  # wall clock, UTC
    sa.Column("notified_at", sa.DateTime, nullable=True),
    sa.Column("resolved_at", sa.DateTime, nullable=True),
    sa.Column("notify_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("notify_error", sa.Text, nullable=True),
    sa.Column("claimed_at", sa.DateTime, nullable=True),
    # --- alert workflow (services.monitoring.alert_workflow); added to older databases by workflow_columns
    sa.Column("severity", sa.String(16), nullable=False, server_default=WARNING),
    sa.Column("workflow", sa.String(16), nullable=False, server_default=OPEN),
    sa.Column("snoozed_until", sa.DateTime, nullable=True),  # UTC; meaningful while workflow = snoozed
    sa.Column("assignee", sa.Text, nullable=True),  # a person's name as typed: stored as given, shown inert
    sa.Column("workflow_seq", sa.Integer, nullable=False, server_default="0"),  # actions recorded so far
    sa.UniqueConstraint("model", "rule", "subject", "opened_window", name="uq_alert_episodes_episode"),
    sa.Index("ix_alert_episodes_model_status", "model", "status"),
)

# Append-only: one row per action a person took on an episode. ``seq`` is the episode's action count
# after this one; the unique (episode_id, seq) lets only one of two people acting on the same state win.
alert_actions = sa.Table(
    "alert_actions", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("episode_id", sa.Integer, nullable=False, index=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # acknowledge, snooze, assign, resolve
    sa.Column("actor_issuer", sa.Text, nullable=False),
    sa.Column("actor_subject", sa.Text, nullable=False),
    sa.Column("actor_name", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),  # UTC
    sa.Column("until", sa.DateTime, nullable=True),  # snooze: until when
    sa.Column("assignee", sa.Text, nullable=True),  # assign: to whom
    sa.Column("comment", sa.Text, nullable=True),
    sa.UniqueConstraint("episode_id", "seq", name="uq_alert_actions_episode_seq"),
)

_WORKFLOW_COLUMNS = (  # name, DDL for ALTER TABLE ... ADD COLUMN (portable between SQLite and PostgreSQL)
    ("severity", f"VARCHAR(16) NOT NULL DEFAULT '{WARNING}'"),
    ("workflow", f"VARCHAR(16) NOT NULL DEFAULT '{OPEN}'"),
    ("snoozed_until", "TIMESTAMP"),
    ("assignee", "TEXT"),
    ("workflow_seq", "INTEGER NOT NULL DEFAULT 0"),
)


@schema_upgrade
def workflow_columns(engine: Engine) -> None:
    """A tower state written before the alert workflow gets the episode's severity and workflow columns
    (every existing episode: warning, open, no action). Each column is added on its own, so a second
    process starting at once (it finds the column there) or a crash half-way is picked up next start."""
    for name, ddl in _WORKFLOW_COLUMNS:
        if name in {c["name"] for c in sa.inspect(engine).get_columns(alert_episodes.name)}:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {alert_episodes.name} ADD COLUMN {name} {ddl}"))
        except sa.exc.DBAPIError:
            if name not in {c["name"] for c in sa.inspect(engine).get_columns(alert_episodes.name)}:
                raise


@schema_upgrade
def segment_column(engine: Engine) -> None:
    """A tower state written before segments gets ``monitoring_results.segment`` ('' on every row) and
    the cell's unique constraint over it. SQLite cannot alter a constraint, so it rebuilds the table
    (in one transaction). Two processes starting at once: the loser finds the column there."""
    table = monitoring_results
    inspector = sa.inspect(engine)
    if not inspector.has_table(table.name) or "segment" in {c["name"] for c in inspector.get_columns(table.name)}:
        return
    had = {c["name"] for c in inspector.get_columns(table.name)}  # a later upgrade (interval_columns) adds its own
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                old = f"{table.name}_before_segments"
                conn.execute(sa.text("DROP INDEX IF EXISTS ix_monitoring_results_model_metric"))
                conn.execute(sa.text(f"ALTER TABLE {table.name} RENAME TO {old}"))
                table.create(conn)
                names = ", ".join(c.name for c in table.columns if c.name in had)
                conn.execute(sa.text(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {old}"))  # noqa: S608
                conn.execute(sa.text(f"DROP TABLE {old}"))
            else:
                cell = ("model", "version", "window_start", "window_end", "segment", "slice_key", "slice_value",
                        "column_name", "metric")
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN segment VARCHAR(64) NOT NULL "
                                     f"DEFAULT '{OVERALL}'"))
                conn.execute(sa.text(f"ALTER TABLE {table.name} DROP CONSTRAINT uq_monitoring_results_cell"))
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD CONSTRAINT uq_monitoring_results_cell "
                                     f"UNIQUE ({', '.join(cell)})"))
    except sa.exc.DBAPIError:
        if "segment" not in {c["name"] for c in sa.inspect(engine).get_columns(table.name)}:
            raise


_INTERVAL_COLUMNS = ("lower", "upper", "noise")


@schema_upgrade
def interval_columns(engine: Engine) -> None:
    """A tower state written before drift intervals (issue 15) gets ``monitoring_results.lower``,
    ``upper`` and ``noise`` (NULL on every existing row). Nullable columns without a constraint: a plain
    ADD COLUMN on SQLite and PostgreSQL alike. Two processes starting at once: the loser finds the
    column there; a crash half-way is picked up at the next start (each column on its own)."""
    table = monitoring_results
    if not sa.inspect(engine).has_table(table.name):
        return
    for name in _INTERVAL_COLUMNS:
        if name in {c["name"] for c in sa.inspect(engine).get_columns(table.name)}:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {name} FLOAT"))
        except sa.exc.DBAPIError:
            if name not in {c["name"] for c in sa.inspect(engine).get_columns(table.name)}:
                raise
