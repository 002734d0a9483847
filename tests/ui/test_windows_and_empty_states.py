"""One window rule and readable tables, through AppTest on the seeded demo.

Every windowed page defaults to complete UTC days ending yesterday; a window with nothing in it says
what the log does hold (the oracle reads the warehouse with its own SQL, not through our code);
tables have human labels, one time format, and never show "None" or "nan".
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

from services.settings import load_settings
from tests.support.app_test import DEMO_MODELS, open_page, oracle_copy, texts
from tests.support.production import warehouse_file

# Run again on the production backends by the second pass of `make test`.
pytestmark = pytest.mark.both_backends

MONITOR_HINT = "tower monitor run"
TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MISSING = "—"
RAW_MISSING = re.compile(r"\b(None|nan|NaN|NaT)\b")
# Page, window key, default length in days.
WINDOWS = [("app_pages/latency.py", "latency_window", 21), ("app_pages/fairness.py", "fairness_window", 14),
           ("app_pages/performance.py", "performance_window", 30), ("app_pages/alerts.py", "alerts_window", 30)]
ALERT_LABELS = ["Model", "Rule", "Subject", "Status", "Opened on", "Last breached on", "Resolved on", "Value",
                "Threshold", "Message", "Notified at", "Notification error"]
ALERT_DAYS = ["Opened on", "Last breached on", "Resolved on"]
WORKLIST_LABELS = ["Severity", "Model", "Rule", "Subject", "State", "Assigned to", "Snoozed until", "Opened on",
                   "Last breached on", "Value", "Threshold", "Message", "Notified at"]
ALERT_TIMES = ["Notified at"]


def yesterday() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def log_days(settings, model: str) -> tuple[date, date] | None:
    """The first and last day of the model's log, read straight from the DuckDB file."""
    mapping = settings.models[model]
    ts = mapping.column("timestamp")
    with duckdb.connect(oracle_copy(str(warehouse_file(settings))), read_only=True) as con:
        first, last = con.execute(f"SELECT min({ts}), max({ts}) FROM {mapping.table}").fetchone()
    return None if first is None else (first.date(), last.date())


def far_before(settings, model: str) -> tuple[date, date]:
    """A week well before the log's first day."""
    bounds = log_days(settings, model)
    assert bounds is not None
    start = bounds[0] - timedelta(days=90)
    return start, start + timedelta(days=6)


def with_window(page: str, key: str, window: tuple[date, date], **query: str) -> AppTest:
    at = open_page(page, **query)
    at.date_input(key=key).set_value(window)
    return at.run()


def assert_no_raw_missing(at: AppTest) -> None:
    """No cell holds the text None/nan, and a table with missing numbers shows them as a dash."""
    for frame in at.dataframe:
        table = frame.value
        cells = table.astype(str).where(table.notna(), MISSING)
        assert not cells.isin(["None", "nan", "NaN", "NaT", "<NA>"]).any().any(), table
        if table.isna().any().any():
            assert frame.proto.placeholder == MISSING, f"missing values in {list(table.columns)} shown raw"
    assert not RAW_MISSING.search(texts(at)), texts(at)


# ------------------------------------------------------------------------------------------------
# One window rule
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("page", "key", "days"), WINDOWS)
def test_every_windowed_page_defaults_to_complete_days_ending_yesterday(demo_env, page, key, days):
    at = open_page(page, model="credit-risk")
    assert not at.exception
    end = yesterday()
    assert at.date_input(key=key).value == (end - timedelta(days=days - 1), end)


def test_the_latency_default_window_holds_no_partial_day(demo_env):
    at = open_page("app_pages/latency.py", model="fraud-detection")
    first = yesterday() - timedelta(days=20)
    table = at.dataframe[0].value
    last_request = pd.to_datetime(table["Last request"].str.removesuffix(" UTC"))
    first_request = pd.to_datetime(table["First request"].str.removesuffix(" UTC"))
    assert (last_request < datetime.combine(yesterday() + timedelta(days=1), time())).all()
    assert (first_request >= datetime.combine(first, time())).all()


# ------------------------------------------------------------------------------------------------
# Empty windows say what exists
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("page", "key"), [("app_pages/latency.py", "latency_window"),
                                           ("app_pages/fairness.py", "fairness_window"),
                                           ("app_pages/performance.py", "performance_window")])
def test_a_window_far_before_the_log_names_the_logs_first_and_last_day(demo_env, page, key):
    model = "loan-approval"  # has sensitive attributes, so the fairness page reaches its window
    window = far_before(demo_env, model)
    at = with_window(page, key, window, model=model)
    assert not at.exception and not at.error
    first, last = log_days(demo_env, model)
    said = texts(at)
    assert f"between {window[0]} and {window[1]}" in said
    assert f"the log holds {first} to {last}" in said and "pick a window inside it" in said
    assert MONITOR_HINT not in said, "the job has run; running it again would not help"
    assert not at.dataframe
    assert_no_raw_missing(at)


def private_demo(demo_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """The settings of the private copy, with the app pointed at it."""
    monkeypatch.setenv("TOWER_DATA_DIR", str(demo_dir))
    return load_settings()


@pytest.fixture
def no_monitoring_of_credit_risk(demo_dir, monkeypatch):
    """The demo with credit-risk's monitoring results removed: its log has data, the job has not run."""
    settings = private_demo(demo_dir, monkeypatch)
    engine = sa.create_engine(settings.tower_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM monitoring_results WHERE model = 'credit-risk'"))
    engine.dispose()
    return settings


def test_missing_results_with_a_logged_window_say_monitoring_has_not_run(no_monitoring_of_credit_risk):
    at = open_page("app_pages/performance.py", model="credit-risk")
    assert not at.exception and not at.error
    said = texts(at)
    end = yesterday()
    assert f"Monitoring has not run for credit-risk between {end - timedelta(days=29)} and {end}" in said
    first, last = log_days(no_monitoring_of_credit_risk, "credit-risk")
    assert f"{first} to {last}" in said
    assert MONITOR_HINT in said


@pytest.fixture
def empty_credit_risk_log(demo_dir, monkeypatch):
    settings = private_demo(demo_dir, monkeypatch)
    engine = sa.create_engine(settings.warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {settings.models['credit-risk'].table}"))
    engine.dispose()  # DuckDB: release the file before the app opens it read-only
    return settings


@pytest.mark.parametrize(("page", "key"), [("app_pages/latency.py", "latency_window"),
                                           ("app_pages/performance.py", "performance_window")])
def test_an_empty_log_says_it_is_empty(empty_credit_risk_log, page, key):
    # A window with no monitoring results either: only the log's emptiness is left to say.
    start = yesterday() - timedelta(days=400)
    at = with_window(page, key, (start, start + timedelta(days=6)), model="credit-risk")
    assert not at.exception and not at.error
    said = texts(at)
    assert "The prediction log of credit-risk is empty" in said
    assert MONITOR_HINT not in said


@pytest.fixture
def warehouse_missing(demo_env, monkeypatch, tmp_path) -> Path:
    path = tmp_path / "gone.duckdb"
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{path}")
    return path


def test_an_unreachable_warehouse_shows_the_outage_error_not_an_empty_window(warehouse_missing, demo_env):
    window = far_before(demo_env, "credit-risk")
    at = with_window("app_pages/performance.py", "performance_window", window, model="credit-risk")
    assert not at.exception
    assert "WAREHOUSE_URL" in texts(at, ("error",))
    assert "the log holds" not in texts(at)


# ------------------------------------------------------------------------------------------------
# Readable tables
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["app_pages/latency.py", "app_pages/fairness.py", "app_pages/performance.py",
                                  "app_pages/alerts.py", "app_pages/model.py", "app_pages/fleet.py"])
@pytest.mark.parametrize("model", sorted(DEMO_MODELS))
def test_no_table_or_text_shows_none_or_nan(demo_env, page, model):
    at = open_page(page, model=model)
    assert not at.exception
    assert_no_raw_missing(at)


def test_alert_tables_have_human_labels_and_one_time_format(demo_env):
    at = open_page("app_pages/alerts.py")
    current, history = at.dataframe[0].value, at.dataframe[1].value
    assert list(history.columns) == ALERT_LABELS
    assert list(current.columns) == WORKLIST_LABELS  # the worklist (tests/ui/test_alerts_page_workflow.py)
    for table in (current, history):
        for column in ALERT_DAYS[:2]:
            assert table[column].map(lambda v: v == MISSING or bool(DAY.match(v))).all(), table[column]
        for column in (*ALERT_TIMES, *(["Snoozed until"] if table is current else [])):
            assert table[column].map(lambda v: v == MISSING or bool(TIME.match(v))).all(), table[column]
    assert not re.search(r"[a-z]+_[a-z]+", " ".join(current["Rule"])), "rules read as words"


def test_alert_history_defaults_to_the_episodes_opened_in_the_last_30_complete_days(demo_env):
    end = datetime.combine(yesterday() + timedelta(days=1), time())
    start = end - timedelta(days=30)
    engine = sa.create_engine(demo_env.tower_db_url)
    with engine.connect() as conn:
        episodes = [(model, pd.Timestamp(opened).to_pydatetime()) for model, opened in conn.execute(sa.text(
            "SELECT model, opened_window FROM alert_episodes"))]
    engine.dispose()
    assert any(opened < start for _, opened in episodes), "the demo has an episode opened before the window"
    history = open_page("app_pages/alerts.py").dataframe[1].value
    expected = sorted((model, f"{opened:%Y-%m-%d}") for model, opened in episodes if start <= opened < end)
    assert sorted(zip(history["Model"], history["Opened on"], strict=True)) == expected


def test_the_alerts_page_follows_the_model_in_the_url(demo_env):
    at = open_page("app_pages/alerts.py", model="credit-risk")
    assert at.selectbox(key="model").value == "credit-risk"
    assert all(set(d.value["Model"]) == {"credit-risk"} for d in at.dataframe)


def test_latency_per_version_table_has_human_labels_and_one_time_format(demo_env):
    table = open_page("app_pages/latency.py", model="credit-risk").dataframe[0].value
    assert list(table.columns) == ["Version", "Requests", "Errors", "Error rate", "p50 (ms)", "p95 (ms)", "p99 (ms)",
                                   "First request", "Last request"]
    assert table["First request"].map(lambda v: bool(TIME.match(v))).all()
    assert table["Last request"].map(lambda v: bool(TIME.match(v))).all()


def test_fairness_groups_table_has_human_labels(demo_env):
    at = open_page("app_pages/fairness.py", model="loan-approval")
    table = at.dataframe[0].value
    assert list(table.columns) == ["Group", "Predictions", "Selection rate", "TPR", "FPR"]


def test_an_empty_alert_history_window_names_when_the_episodes_on_record_were_opened(demo_env):
    engine = sa.create_engine(demo_env.tower_db_url)
    with engine.connect() as conn:
        opened = {pd.Timestamp(v).date() for (v,) in conn.execute(sa.text(
            "SELECT opened_window FROM alert_episodes WHERE model = 'loan-approval'"))}
    engine.dispose()
    assert len(opened) >= 1, "the demo's story changed"
    at = open_page("app_pages/alerts.py", model="loan-approval")
    first, last = min(opened), max(opened)
    # A window of days before every episode on record: empty, and the page says when they were opened.
    at.date_input(key="alerts_window").set_value((first - timedelta(days=10), first - timedelta(days=5))).run()
    assert not at.exception
    when = f"on {first}" if first == last else f"from {first} to {last}"
    assert f"the episodes on record were opened {when}" in texts(at)
