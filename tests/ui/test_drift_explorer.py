"""The drift explorer on the seeded demo: which reference it compares with (and refuses), a heat map
whose colours keep magnitude, the most drifting feature first, a row click that picks the feature."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from services import wiring
from services.monitoring import tower_reads
from tests.support.app_test import open_page, texts
from tests.support.plotly_cells import cell_colour, heatmap_trace

pytestmark = pytest.mark.both_backends

PAGE = "app_pages/drift.py"
LOG_PERIOD = "A period of the log"


def default_window() -> tuple[date, date]:
    """First and last UTC day of the page's default window: the 14 days ending yesterday."""
    today = datetime.now(UTC).date()
    return today - timedelta(days=14), today - timedelta(days=1)


def days(first: date, last: date) -> str:
    return f"{first:%Y-%m-%d} – {last:%Y-%m-%d}"


def drift_table(at: AppTest):
    return next(d for d in at.dataframe if "Feature" in d.value.columns)


def has_drift_table(at: AppTest) -> bool:
    return any("Feature" in d.value.columns for d in at.dataframe)


def reference_radio(at: AppTest):
    return next(r for r in at.radio if r.label == "Reference")


def reference_dates(at: AppTest):
    return next(d for d in at.date_input if d.label.startswith("Reference period"))


def feature(at: AppTest) -> str:
    return at.selectbox(key="drift_feature").value


def figures(at: AppTest) -> list[dict]:
    return [json.loads(e.proto.spec) for e in at.get("plotly_chart")]


def heatmap_figure(at: AppTest) -> dict:
    return next(f for f in figures(at) if any(t.get("type") == "heatmap" for t in f["data"]))


def captions(at: AppTest) -> list[str]:
    return [str(c.value).replace("\\", "") for c in at.caption]


def test_a_log_period_overlapping_the_window_is_refused_naming_both_and_nothing_is_compared(demo_env):
    at = open_page(PAGE, model="credit-risk")
    reference_radio(at).set_value(LOG_PERIOD).run()
    first, last = default_window()
    reference_dates(at).set_value((last - timedelta(days=6), last)).run()  # the window's last week
    assert not at.exception
    refused = " ".join(str(e.value) for e in at.error)
    assert days(last - timedelta(days=6), last) in refused and days(first, last) in refused, refused
    assert not has_drift_table(at)
    assert not any(s.key == "drift_feature" for s in at.selectbox)
    assert any(t.get("type") == "heatmap" for f in figures(at) for t in f["data"])  # the map needs no choice


def test_the_default_log_period_is_the_one_just_before_the_window_and_the_page_names_it(demo_env):
    at = open_page(PAGE, model="credit-risk")
    reference_radio(at).set_value(LOG_PERIOD).run()
    first, last = default_window()
    before = (first - timedelta(days=14), first - timedelta(days=1))
    assert tuple(reference_dates(at).value) == before
    assert not at.error and not at.exception
    table = drift_table(at).value.set_index("Feature")
    assert table.loc["debt_ratio", "Verdict"] == "drifted"  # the story drifts against the weeks before too
    compared = next(c for c in captions(at) if "reference rows" in c)
    assert days(*before) in compared and "reference_credit_risk" not in compared, compared
    heat = next(c for c in captions(at) if "monitor run" in c)
    assert "reference_credit_risk" in heat, heat  # the stored daily scores used the configured table


def test_the_page_says_the_heatmap_and_the_table_use_the_configured_table_by_default(demo_env):
    at = open_page(PAGE, model="credit-risk")
    heat = next(c for c in captions(at) if "monitor run" in c)
    compared = next(c for c in captions(at) if "reference rows" in c)
    assert "reference_credit_risk" in heat and "reference_credit_risk" in compared


def test_features_are_ranked_by_score_over_threshold_and_the_worst_is_preselected(demo_env):
    at = open_page(PAGE, model="credit-risk")
    table = drift_table(at).value
    assert set(table["Method"]) <= {"wasserstein", "jensenshannon"}  # distances: ratio = score / threshold
    ratio = table["Score"] / table["Threshold"]
    assert list(table["× threshold"]) == pytest.approx(list(ratio))
    assert list(ratio) == sorted(ratio, reverse=True)
    worst = table.loc[ratio.idxmax(), "Feature"]
    assert worst != "income"  # the first feature of the mapping is not the one drifting most
    assert feature(at) == worst
    assert at.selectbox(key="drift_feature").options[0] == worst


def test_a_feature_named_in_the_url_is_preselected_and_an_unknown_one_is_ignored(demo_env):
    assert feature(open_page(PAGE, model="credit-risk", feature="region")) == "region"
    at = open_page(PAGE, model="credit-risk", feature="not_a_feature")
    assert not at.exception and not at.error
    assert feature(at) == drift_table(at).value["Feature"].iloc[0]


def test_clicking_a_row_selects_its_feature_and_a_later_pick_is_kept(demo_env):
    at = open_page(PAGE, model="credit-risk")
    table = drift_table(at)
    ranked = list(table.value["Feature"])
    assert feature(at) == ranked[0]
    at.session_state[table.key] = {"selection": {"rows": [len(ranked) - 1], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert feature(at) == ranked[-1]
    overlay = next(f for f in figures(at) if all(t.get("type") == "bar" for t in f["data"]))
    assert ranked[-1] in overlay["layout"]["title"]["text"]
    assert at.query_params["feature"] == ranked[-1]  # a reload or a shared link shows the same feature
    at.selectbox(key="drift_feature").select(ranked[1]).run()  # the row stays selected: the pick still wins
    assert feature(at) == ranked[1]


def test_switching_model_preselects_the_new_model_s_worst_feature(demo_env):
    at = open_page(PAGE, model="credit-risk")
    at.selectbox(key="drift_feature").select("income").run()
    at.selectbox(key="model").select("loan-approval").run()
    assert not at.exception
    assert feature(at) == drift_table(at).value["Feature"].iloc[0]


def test_the_heatmap_keeps_magnitude_beyond_twice_the_threshold_and_hovers_the_raw_score(demo_env):
    at = open_page(PAGE, model="credit-risk")
    figure = heatmap_figure(at)
    trace = heatmap_trace(figure)
    first, last = default_window()
    backends = wiring.Backends.from_settings(demo_env)
    try:
        stored = tower_reads.drift_heatmap(backends.tower(), "credit-risk", datetime.combine(first, time()),
                                           datetime.combine(last + timedelta(days=1), time()))
    finally:
        backends.close()
    day = f"{stored['day'].max():%Y-%m-%d}"
    cell = {(y, x[:10]): (trace["z"][i][j], trace["customdata"][i][j])
            for i, y in enumerate(trace["y"]) for j, x in enumerate(trace["x"])}
    latest = stored[stored["day"] == stored["day"].max()].set_index("column")
    ratios = latest["score"] / latest["threshold"]
    assert ratios["debt_ratio"] > 8 and 1.5 < ratios["region"] < 2.5  # the demo's 9× and 2×
    colour = {c: cell_colour(figure, cell[(c, day)][0]) for c in ("debt_ratio", "region", "age")}
    assert len(set(colour.values())) == 3, colour
    for column, row in latest.iterrows():
        data = cell[(column, day)][1]
        assert data[0] == pytest.approx(row["score"]) and data[1] == pytest.approx(row["threshold"])
    assert "customdata[0]" in trace["hovertemplate"]


def test_data_quality_sits_beside_the_score_as_percentages_under_human_labels(demo_env):
    at = open_page(PAGE, model="credit-risk")
    table = drift_table(at)
    columns = list(table.value.columns)
    assert columns[:4] == ["Feature", "Verdict", "Score", "Threshold"]
    assert columns[4:9] == ["× threshold", "Data quality", "Null share", "Unseen share", "Out of range"]
    assert not [c for c in columns if "_" in c]
    config = json.loads(table.proto.columns)
    assert config["Null share"]["type_config"]["format"] == "percent"
    assert config["Unseen share"]["type_config"]["format"] == "percent"
    assert config["Out of range"]["type_config"]["format"] == "percent" and config["Data quality"]["help"]
    assert table.proto.placeholder == "—"
    assert "None" not in texts(at)


def test_the_cached_heatmap_follows_the_model_picked_in_the_same_session(demo_env):
    """The figure is cached per (settings, model, window, segment): switching model draws the new
    model's features, and coming back draws the first model's map unchanged."""
    at = open_page(PAGE, model="credit-risk")
    first = heatmap_trace(heatmap_figure(at))
    at.selectbox(key="model").select("loan-approval").run()
    second = heatmap_trace(heatmap_figure(at))
    at.selectbox(key="model").select("credit-risk").run()
    again = heatmap_trace(heatmap_figure(at))

    assert not at.exception
    assert "debt_ratio" in first["y"] and set(second["y"]) != set(first["y"])
    assert again["y"] == first["y"] and again["z"] == first["z"]
