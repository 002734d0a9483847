"""The pure halves of ui/tables.py and ui/windows.py: one time format, human labels, what an empty
window says, and which days a default window covers."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone

import pandas as pd
import pytest

from ui.tables import MISSING, format_day, format_time, label, readable
from ui.windows import MONITOR_COMMAND, complete_days, empty_window

LOG = (datetime(2026, 10, 28, 0, 3), datetime(2026, 12, 2, 23, 59, 59))


@pytest.mark.parametrize(("value", "shown"), [
    (datetime(2026, 12, 2, 14, 5, 33), "2026-12-02 14:05 UTC"),
    (datetime(2026, 12, 2, 15, 5, tzinfo=timezone(timedelta(hours=1))), "2026-12-02 14:05 UTC"),
    (pd.Timestamp("2026-12-02 14:05:59.9"), "2026-12-02 14:05 UTC"),
    ("2026-12-02 14:05:00", "2026-12-02 14:05 UTC"),  # sqlite hands some times back as text
    (None, MISSING), (pd.NaT, MISSING), (math.nan, MISSING), ("", MISSING),
])
def test_a_time_has_one_format_and_a_missing_one_is_a_dash(value, shown):
    assert format_time(value) == shown


@pytest.mark.parametrize(("value", "shown"), [
    (datetime(2026, 12, 2), "2026-12-02"), (date(2026, 12, 2), "2026-12-02"),
    (pd.Timestamp("2026-12-02 00:00"), "2026-12-02"), (None, MISSING), (pd.NaT, MISSING),
])
def test_a_day_has_one_format(value, shown):
    assert format_day(value) == shown


def test_readable_renames_in_the_labels_order_and_formats_times_days_and_missing_text():
    raw = pd.DataFrame({"extra": [1, 2], "opened_window": [datetime(2026, 12, 1), datetime(2026, 12, 2)],
                        "notified_at": [datetime(2026, 12, 2, 8, 1), None], "rule": ["latency_p95", "drift"],
                        "notify_error": [None, ""], "value": [1.5, math.nan]})
    table = readable(raw, {"rule": "Rule", "opened_window": "Opened on", "notified_at": "Notified at",
                           "notify_error": "Notification error", "value": "Value"},
                     days=("opened_window",), times=("notified_at",), values={"rule": {"latency_p95": "Latency p95"}})
    assert list(table.columns) == ["Rule", "Opened on", "Notified at", "Notification error", "Value"]
    assert list(table["Opened on"]) == ["2026-12-01", "2026-12-02"]
    assert list(table["Notified at"]) == ["2026-12-02 08:01 UTC", MISSING]
    assert list(table["Rule"]) == ["Latency p95", "drift"]
    assert list(table["Notification error"]) == [MISSING, MISSING]
    assert table["Value"].dtype == "float64", "numbers stay numbers (sortable; the placeholder shows the dash)"


def test_readable_of_an_empty_frame_keeps_the_labels():
    table = readable(pd.DataFrame(columns=["a", "b_at"]), {"a": "A", "b_at": "B"}, times=("b_at",))
    assert list(table.columns) == ["A", "B"] and table.empty


def test_a_label_of_an_unknown_name_reads_as_words():
    assert label("roc_auc") == "ROC AUC"
    assert label("demographic_parity_difference") == "Demographic parity difference"
    assert label("some_new_metric") == "some new metric"


def test_complete_days_end_at_the_start_of_today_utc():
    start, end = complete_days(7, today=date(2026, 12, 3))
    assert (start, end) == (datetime(2026, 11, 26), datetime(2026, 12, 3))
    start, end = complete_days(1)
    assert end == datetime.combine(datetime.now(UTC).date(), datetime.min.time())
    assert end - start == timedelta(days=1)


def test_a_window_before_the_log_names_the_logs_days():
    said = empty_window("credit-risk", datetime(2026, 1, 1), datetime(2026, 1, 8), LOG, source="log")
    assert said.text == ("No predictions of credit-risk between 2026-01-01 and 2026-01-07: the log holds "
                         "2026-10-28 to 2026-12-02; pick a window inside it.")
    assert said.command is None


def test_a_window_after_the_log_names_the_logs_days_too():
    said = empty_window("m", datetime(2027, 1, 1), datetime(2027, 1, 2), LOG, source="monitoring",
                        what="performance results")
    assert said.text.startswith("No performance results of m between 2027-01-01 and 2027-01-01: the log holds")
    assert said.command is None, "monitoring a window without predictions would give nothing"


def test_missing_results_of_a_logged_window_say_monitoring_has_not_run_and_give_the_command():
    said = empty_window("m", datetime(2026, 11, 1), datetime(2026, 11, 8), LOG, source="monitoring",
                        what="fairness results")
    assert said.text.startswith("Monitoring has not run for m between 2026-11-01 and 2026-11-07")
    assert "2026-10-28 to 2026-12-02" in said.text
    assert said.command == MONITOR_COMMAND


def test_a_window_touching_the_logs_last_day_counts_as_logged():
    said = empty_window("m", datetime(2026, 12, 2), datetime(2026, 12, 3), LOG, source="monitoring")
    assert said.command == MONITOR_COMMAND


def test_an_empty_log_says_so_whatever_the_page_reads():
    for source in ("log", "monitoring"):
        said = empty_window("m", datetime(2026, 11, 1), datetime(2026, 11, 8), None, source=source)
        assert said.text.startswith("The prediction log of m is empty")
        assert said.command is None


def test_a_gap_inside_the_log_is_named_as_one():
    said = empty_window("m", datetime(2026, 11, 1), datetime(2026, 11, 8), LOG, source="log")
    assert "gap" in said.text and "2026-10-28 to 2026-12-02" in said.text
    assert said.command is None
