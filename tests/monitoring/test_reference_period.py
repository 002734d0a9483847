"""The reference period of the drift explorer as pure date logic: its default and the overlap it refuses."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from services.mapping import parse_model_mapping
from services.monitoring.reference import reference_definition, reference_id
from services.monitoring.reference_period import (
    configured_log_period,
    days_on_other_reference,
    default_reference_period,
    period_text,
    reference_overlap,
    reference_text,
)

WINDOW = (datetime(2026, 11, 19), datetime(2026, 12, 3))  # 14 UTC days, 19 November to 2 December
COLUMNS = {"request_id": "request_id", "timestamp": "ts", "version": "model_version", "prediction": "prediction",
           "latency_ms": "latency_ms", "status": "status"}


def mapping(reference: dict[str, str]):
    return parse_model_mapping("m", {"table": "log_m", "columns": COLUMNS, "reference": reference,
                                     "features": {"numerical": ["x"], "categorical": ["c"]}})


def test_the_default_reference_is_the_period_of_the_same_length_ending_where_the_window_starts():
    assert default_reference_period(WINDOW) == (datetime(2026, 11, 5), datetime(2026, 11, 19))
    week = (datetime(2026, 11, 26), datetime(2026, 12, 3))
    assert default_reference_period(week) == (datetime(2026, 11, 19), datetime(2026, 11, 26))
    assert reference_overlap(default_reference_period(WINDOW), WINDOW) is None


@pytest.mark.parametrize("reference", [
    (datetime(2026, 11, 26), datetime(2026, 12, 3)),   # the last week of the window (the old default)
    (datetime(2026, 11, 12), datetime(2026, 11, 20)),  # its last day is the window's first
    (datetime(2026, 12, 2), datetime(2026, 12, 9)),    # its first day is the window's last
    (datetime(2026, 11, 1), datetime(2026, 12, 31)),   # holds the whole window
    WINDOW,
])
def test_a_reference_sharing_a_day_with_the_window_is_refused_naming_both_periods(reference):
    message = reference_overlap(reference, WINDOW)
    assert message is not None
    assert period_text(reference) in message and "2026-11-19 – 2026-12-02" in message


@pytest.mark.parametrize("reference", [
    (datetime(2026, 11, 5), datetime(2026, 11, 19)),  # ends where the window starts (periods are half-open)
    (datetime(2026, 12, 3), datetime(2026, 12, 10)),  # starts where the window ends
])
def test_an_adjacent_reference_is_not_an_overlap(reference):
    assert reference_overlap(reference, WINDOW) is None


def test_a_period_of_whole_days_reads_as_its_first_and_last_day_and_any_other_with_times():
    assert period_text(WINDOW) == "2026-11-19 – 2026-12-02"
    assert period_text((datetime(2026, 11, 19, 6), datetime(2026, 11, 20, 18))) == \
        "2026-11-19 06:00 – 2026-11-20 18:00"


def test_the_reference_is_named_as_the_table_the_configured_period_or_the_chosen_log_period():
    table = mapping({"table": "ref_m"})
    assert "ref_m" in reference_text(table, (None, None))
    assert configured_log_period(table) is None
    chosen = reference_text(table, (datetime(2026, 11, 5), datetime(2026, 11, 19)))
    assert "2026-11-05 – 2026-11-18" in chosen and "ref_m" not in chosen
    configured = mapping({"start": "2026-10-01", "end": "2026-10-15"})
    assert configured_log_period(configured) == (datetime(2026, 10, 1), datetime(2026, 10, 15))
    assert "2026-10-01 – 2026-10-14" in reference_text(configured, (None, None))


def test_days_stored_against_another_reference_definition_are_counted():
    table = mapping({"table": "ref_m"})
    current = reference_id(reference_definition(table))
    days = [WINDOW[0] + timedelta(days=d) for d in (0, 0, 1, 1, 2)]
    heatmap = pd.DataFrame({"day": days, "column": ["x", "c"] * 2 + ["x"],
                            "reference_id": ["old", "old", current, current, current]})
    assert days_on_other_reference(heatmap, table) == 1
    assert days_on_other_reference(heatmap.iloc[2:], table) == 0
