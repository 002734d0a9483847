"""Monitoring tables of the tower state (docs/ARCHITECTURE.md), declared on ``services.stores.tower_db.METADATA``.

``monitoring_results`` is long format, one row per (model, version, window, slice, column, metric),
readable by any SQL client::

    SELECT window_start, column_name, value, threshold, alert FROM monitoring_results
    WHERE model = 'credit-risk' AND version = '*' AND metric = 'drift_score' ORDER BY window_start

Conventions: ``version`` ``'*'`` is all versions together; ``slice_key``/``slice_value`` ``''`` is the
whole population (fairness rows use the sensitive attribute and its group); ``column_name`` ``''``
is a model-level metric; ``segment`` ``''`` is the whole population, else the name of a segment
declared in tower.yaml (``services.segments``); ``method`` ``''`` where no statistical method applies. ``alert`` is the
per-window verdict of the metric against ``threshold`` (NULL when not judged). Windows are
replaced whole: the job deletes a window's rows and inserts the new ones in one transaction, and a
unique constraint forbids duplicates.

``monitoring_references`` keeps each reference profile (histograms, value counts, performance)
once per (model, reference definition), keyed by the digest of the definition.

``monitoring_fitted`` keeps the small objects fitted on a reference (a calibration map, PCA
components and their band), one per (reference, kind), beside the profile they were fitted with.

``alert_episodes`` is the alert state and its history: one row per episode of a rule's condition,
``open`` (condition holds, not notified yet), ``notifying`` (a run is sending it), ``notified``,
``resolved`` (the condition cleared).
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
    sa.UniqueConstraint("model", "rule", "subject", "opened_window", name="uq_alert_episodes_episode"),
    sa.Index("ix_alert_episodes_model_status", "model", "status"),
)


@schema_upgrade
def segment_column(engine: Engine) -> None:
    """A tower state written before segments gets ``monitoring_results.segment`` ('' on every row) and
    the cell's unique constraint over it. SQLite cannot alter a constraint, so it rebuilds the table
    (in one transaction). Two processes starting at once: the loser finds the column there."""
    table = monitoring_results
    inspector = sa.inspect(engine)
    if not inspector.has_table(table.name) or "segment" in {c["name"] for c in inspector.get_columns(table.name)}:
        return
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                old = f"{table.name}_before_segments"
                conn.execute(sa.text("DROP INDEX IF EXISTS ix_monitoring_results_model_metric"))
                conn.execute(sa.text(f"ALTER TABLE {table.name} RENAME TO {old}"))
                table.create(conn)
                names = ", ".join(c.name for c in table.columns if c.name != "segment")
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
