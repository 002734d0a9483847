"""What a page table looks like: human column labels, one time format, a dash for what is missing.

Times and days are turned into text here, not by ``st.column_config``: the text is what the user
reads and what a test can check, and ``YYYY-MM-DD HH:MM UTC`` still sorts in time order. Numbers
stay numbers so the table sorts them; their missing values show as :data:`MISSING` through the
table's ``placeholder`` (:func:`show`), never as "None" or "nan".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import streamlit as st

MISSING = "—"
TIME_FORMAT = "%Y-%m-%d %H:%M UTC"  # every time a page shows; stored times are naive UTC
DAY_FORMAT = "%Y-%m-%d"  # every day (a daily window is named by its first day)

# Names that appear as metrics, rules and columns, as people say them. Anything not listed reads
# as its words (label()), so a new metric is never shown as a raw identifier.
LABELS = {
    "roc_auc": "ROC AUC", "f1": "F1", "mae": "MAE", "rmse": "RMSE", "tpr": "TPR", "fpr": "FPR",
    "accuracy": "Accuracy", "precision": "Precision", "recall": "Recall",
    "demographic_parity_difference": "Demographic parity difference",
    "equalized_odds_difference": "Equalized odds difference",
    "disparate_impact_ratio": "Disparate impact ratio",
    "selection_rate": "Selection rate", "label_coverage": "Label coverage",
}
RULE_LABELS = {
    "drift": "Drift", "latency_p95": "Latency p95", "error_rate": "Error rate",
    "fairness_dpd": "Demographic parity", "fairness_eod": "Equalized odds", "performance": "Performance",
    "estimated_performance_drop": "Estimated performance", "multivariate_drift": "Multivariate drift",
}

ALERT_COLUMNS = {
    "model": "Model", "rule": "Rule", "subject": "Subject", "status": "Status",
    "opened_window": "Opened on", "last_window": "Last breached on", "resolved_window": "Resolved on",
    "value": "Value", "threshold": "Threshold", "message": "Message", "notified_at": "Notified at",
    "notify_error": "Notification error",
}
ALERT_DAYS = ("opened_window", "last_window", "resolved_window")  # window starts: days, not moments
ALERT_TIMES = ("notified_at",)

LATENCY_COLUMNS = {
    "version": "Version", "requests": "Requests", "errors": "Errors", "error_rate": "Error rate",
    "p50_ms": "p50 (ms)", "p95_ms": "p95 (ms)", "p99_ms": "p99 (ms)",
    "first_seen": "First request", "last_seen": "Last request",
}
LATENCY_TIMES = ("first_seen", "last_seen")

FAIRNESS_GROUP_COLUMNS = {"group": "Group", "count": "Predictions", "selection_rate": "Selection rate",
                          "tpr": "TPR", "fpr": "FPR"}


def label(name: str) -> str:
    """A metric or column name as people read it."""
    return LABELS.get(name, name.replace("_", " "))


def _missing(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA or (isinstance(value, str) and not value.strip()):
        return True
    return isinstance(value, float) and math.isnan(value)


def _utc(value: Any) -> datetime:
    moment: datetime = pd.Timestamp(value).to_pydatetime()
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def format_time(value: Any) -> str:
    """``YYYY-MM-DD HH:MM UTC`` for a datetime, Timestamp or ISO text; :data:`MISSING` for none."""
    return MISSING if _missing(value) else _utc(value).strftime(TIME_FORMAT)


def format_day(value: Any) -> str:
    """``YYYY-MM-DD`` for a date or datetime; :data:`MISSING` for none."""
    if _missing(value):
        return MISSING
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.strftime(DAY_FORMAT)
    return _utc(value).strftime(DAY_FORMAT)


def readable(frame: pd.DataFrame, labels: Mapping[str, str], *, times: Iterable[str] = (),
             days: Iterable[str] = (), values: Mapping[str, Mapping[str, str]] | None = None) -> pd.DataFrame:
    """The ``labels`` columns of ``frame``, in that order and renamed; ``times`` and ``days`` as text
    in the one format; ``values`` maps a column's raw values to words; missing text as a dash."""
    table = frame.loc[:, list(labels)].copy()
    for column in times:
        table[column] = table[column].map(format_time).astype("object")
    for column in days:
        table[column] = table[column].map(format_day).astype("object")
    for column, words in (values or {}).items():
        table[column] = table[column].map(lambda v, w=words: w.get(v, v) if isinstance(v, str) else v)
    for column in table.columns:
        if table[column].dtype == "object":
            table[column] = table[column].map(lambda v: MISSING if _missing(v) else v)
    return table.rename(columns=dict(labels))


def show(frame: pd.DataFrame | Any, *, column_config: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    """``st.dataframe`` without the index and with missing values shown as a dash."""
    return st.dataframe(frame, hide_index=True, placeholder=MISSING, column_config=column_config, **kwargs)
