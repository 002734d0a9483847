"""The fleet's health by dimension and what changed since last week, and the drift page's data-quality
columns, on the seeded demo. The oracles read the raw rows (a copy of the DuckDB warehouse) and the
stored results (the tower-state file) with plain SQL and numpy, not through our services."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, time, timedelta

import duckdb
import numpy as np
import pytest

from app_pages.fleet import CHIP_COLUMNS
from services.settings import load_settings
from tests.support.app_test import DEMO_MODELS, open_page, oracle_copy
from tests.support.production import warehouse_file

pytestmark = pytest.mark.both_backends


def tower_rows(sql: str, params: tuple = ()) -> list[tuple]:
    url = load_settings().tower_db_url
    if not url.startswith("sqlite:///"):
        pytest.skip("the oracle reads the embedded tower-state file")
    with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
        return con.execute(sql, params).fetchall()


def warehouse_values(settings, sql: str, params: list) -> np.ndarray:
    with duckdb.connect(oracle_copy(str(warehouse_file(settings))), read_only=True) as con:
        return np.array([np.nan if r[0] is None else r[0] for r in con.execute(sql, params).fetchall()], dtype=float)


def fleet_end() -> datetime:
    """The fleet window's end: midnight UTC today (the last complete day is yesterday)."""
    return datetime.combine(datetime.now(UTC).date(), time())


def oracle_since_last_week(model: str) -> str:
    end = fleet_end()
    last, before = end - timedelta(days=7), end - timedelta(days=14)
    iso = [d.isoformat(sep=" ") for d in (before, last, end)]
    new = tower_rows("SELECT COUNT(*) FROM alert_episodes WHERE model = ? AND opened_window >= ? AND opened_window < ?",
                     (model, iso[1], iso[2]))[0][0]
    parts = [f"{new} new alert" + ("" if new == 1 else "s")]

    def mean(metric: str, lo: str, hi: str) -> float | None:
        values = [v for (v,) in tower_rows(
            "SELECT value FROM monitoring_results WHERE model = ? AND segment = '' AND version = '*' AND metric = ? "
            "AND column_name = '' AND slice_key = '' AND window_start >= ? AND window_start < ? "
            "AND value IS NOT NULL", (model, metric, lo, hi))]
        return float(np.mean(values)) if values else None

    p95, p95_before = mean("p95_ms", iso[1], iso[2]), mean("p95_ms", iso[0], iso[1])
    if p95 is not None and p95_before:
        change = round(100 * (p95 / p95_before - 1))
        parts.append(f"p95 {'±0' if change == 0 else f'{change:+d}'} %")
    share, share_before = mean("drift_share", iso[1], iso[2]), mean("drift_share", iso[0], iso[1])
    if share is not None and share_before is not None:
        change = round(100 * (share - share_before))
        parts.append(f"drift share {'±0' if change == 0 else f'{change:+d}'} pp")
    return " · ".join(parts)


def test_the_fleet_shows_every_dimension_with_its_tooltip_and_what_changed_since_last_week(demo_env):
    at = open_page("app_pages/fleet.py")
    assert not at.exception
    grid = at.dataframe[0]
    table = grid.value.set_index("Model")
    assert list(table.columns[:10]) == ["Health", "Latency", "Errors", "Drift", "Multivariate", "Data quality",
                                        "Fairness", "Performance", "Why", "Since last week"]
    config = json.loads(grid.proto.columns)
    for label in CHIP_COLUMNS.values():
        assert config[label]["help"], label  # the tooltip says what makes the chip red
    assert "CBPE" in config["Performance"]["help"] and "range" in config["Data quality"]["help"]
    words = {"critical", "alert", "warning", "ok", "no results"}  # critical: an open critical episode (latency)
    assert all(str(v).split(" ×")[0] in words for v in table[list(CHIP_COLUMNS.values())].to_numpy().ravel())
    for model in DEMO_MODELS:
        assert table.loc[model, "Since last week"] == oracle_since_last_week(model), model
    assert table.loc["demand-forecast", "Since last week"].startswith("0 new alerts")
    assert (table.loc["demand-forecast", list(CHIP_COLUMNS.values())] == "ok").all()


def test_the_drift_page_puts_data_quality_next_to_drift_with_pandas_numbers(demo_env):
    at = open_page("app_pages/drift.py", model="credit-risk")
    assert not at.exception
    table = next(d.value for d in at.dataframe if "Feature" in d.value.columns).set_index("Feature")
    columns = list(table.columns)
    assert columns.index("Data quality") < columns.index("Null share") < columns.index("Out of range")
    today = datetime.now(UTC).date()
    start, end = datetime.combine(today - timedelta(days=14), time()), datetime.combine(today, time())
    for feature in ("income", "debt_ratio", "age"):
        current = warehouse_values(demo_env, f"SELECT {feature} FROM predictions_credit_risk WHERE ts >= ? AND ts < ?",
                                   [start, end])
        reference = warehouse_values(demo_env, f"SELECT {feature} FROM reference_credit_risk", [])
        ref = reference[np.isfinite(reference)]
        finite = current[np.isfinite(current)]
        outside = ((finite < ref.min()) | (finite > ref.max())).mean()
        assert table.loc[feature, "Out of range"] == pytest.approx(outside, rel=1e-12, abs=1e-15), feature
        assert table.loc[feature, "Null share"] == pytest.approx(1 - np.isfinite(current).mean(), abs=1e-15)
        verdict = "ok" if outside <= 0.05 else None
        if verdict:
            assert table.loc[feature, "Data quality"] == "ok", feature
        else:
            assert "out-of-range share" in table.loc[feature, "Data quality"], feature
    assert table.loc["region", "Out of range"] in (None, "—") or np.isnan(table.loc["region", "Out of range"])
