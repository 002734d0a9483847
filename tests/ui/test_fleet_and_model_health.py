"""Fleet → reason: per-dimension chips next to the model's name agree with the stored alert episodes
(read straight from the tower-state file), Health is their worst, and model detail shows the same
health with links to the pages that explain it."""

from __future__ import annotations

import sqlite3

import pytest

from services.settings import load_settings
from tests.support.app_test import open_page, texts

pytestmark = pytest.mark.both_backends

CHIPS = ["Latency", "Errors", "Drift", "Multivariate", "Data quality", "Fairness", "Performance"]
CRITICAL_CELLS: set[tuple[str, str]] = set()  # (model, chip column) with a critical open episode, from the oracle
RULE_COLUMN = {"drift": "Drift", "latency_p95": "Latency", "error_rate": "Errors", "fairness_dpd": "Fairness",
               "fairness_eod": "Fairness", "performance": "Performance", "multivariate_drift": "Multivariate",
               "estimated_performance_drop": "Performance", "data_quality_nulls": "Data quality",
               "data_quality_unseen": "Data quality", "data_quality_range": "Data quality"}


def open_episodes(demo_env) -> dict[tuple[str, str], int]:
    settings = load_settings()
    if not settings.tower_db_url.startswith("sqlite:///"):
        pytest.skip("the oracle reads the embedded tower-state file")
    with sqlite3.connect(settings.tower_db_url.removeprefix("sqlite:///")) as con:
        rows = con.execute("SELECT model, rule, severity FROM alert_episodes WHERE status != 'resolved'").fetchall()
    counts: dict[tuple[str, str], int] = {}
    for model, rule, _ in rows:
        key = (model, RULE_COLUMN[rule])
        counts[key] = counts.get(key, 0) + 1
    CRITICAL_CELLS.clear()
    CRITICAL_CELLS.update((model, RULE_COLUMN[rule]) for model, rule, severity in rows if severity == "critical")
    return counts


def test_the_chips_next_to_each_model_count_its_open_alerts_per_dimension(demo_env):
    table = open_page("app_pages/fleet.py").dataframe[0].value.set_index("Model")
    assert list(table.columns[:9]) == ["Health", *CHIPS, "Why"], "the reason sits next to the model's name"
    episodes = open_episodes(demo_env)
    assert episodes, "the demo has open alerts"
    for (model, column), n in episodes.items():
        word = "critical" if (model, column) in CRITICAL_CELLS else "alert"  # the episode's severity
        assert table.loc[model, column] == (word if n == 1 else f"{word} ×{n}")
    assert CRITICAL_CELLS, "the demo's SLO breaches are critical (latency_p95 and error_rate default to 1×)"
    assert (table.loc["demand-forecast", CHIPS] == "ok").all()


def test_health_is_the_worst_chip_and_never_disagrees_with_the_slo_status(demo_env):
    table = open_page("app_pages/fleet.py").dataframe[0].value.set_index("Model")
    for model, row in table.iterrows():
        chips = [str(row[c]).split(" ×")[0] for c in CHIPS]
        expected = next((s for s in ("critical", "alert", "warning", "ok") if s in chips), "no results")
        assert row["Health"] == expected, model
        if row["SLO (7 d)"] == "SLO breach":
            assert any(str(row[c]).startswith(("alert", "critical")) for c in ("Latency", "Errors"))
    assert "🔴" not in "".join(table["Health"]), "status is text (and colour), not an emoji"


def test_model_detail_shows_the_health_and_links_each_alert_to_its_page(demo_env):
    at = open_page("app_pages/model.py", model="credit-risk")
    assert not at.exception
    assert "Health: alert" in [h.value for h in at.subheader]
    links = [(e.proto.label.replace("\\", ""), e.proto.page) for e in at.get("page_link")]
    drift = [label for label, page in links if "Drift: alert" in label]
    assert drift and "debt" in drift[0], links
    assert any("open alert" in label for label, _ in links)


def test_model_detail_of_the_healthy_model_says_so_without_links(demo_env):
    at = open_page("app_pages/model.py", model="demand-forecast")
    assert "Health: ok" in [h.value for h in at.subheader]
    assert not [e for e in at.get("page_link") if "alert" in e.proto.label]
    assert "Drift: ok" in texts(at, ("caption",))
