"""The drift explorer's figures and its feature preselection, without a page."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest

from tests.support.plotly_cells import cell_colour, heatmap_trace
from ui.drift_views import heatmap_figure, preselected_feature

DAY = datetime(2026, 11, 30)


def heatmap(cells: dict[str, float]) -> pd.DataFrame:
    """One day per ratio and feature, each at threshold 0.1 (a distance): score = ratio / 10."""
    rows = [{"day": DAY + timedelta(days=d), "column": c, "method": "wasserstein", "score": r / 10 + d / 1000,
             "threshold": 0.1, "drifted": r >= 1, "ratio": r + d / 100}
            for c, r in cells.items() for d in range(2)]
    return pd.DataFrame(rows)


def cells(figure: dict) -> dict[tuple[str, str], tuple[float, list]]:
    trace = heatmap_trace(figure)
    return {(y, x[:10]): (trace["z"][i][j], trace["customdata"][i][j])
            for i, y in enumerate(trace["y"]) for j, x in enumerate(trace["x"])}


def test_nine_times_the_threshold_does_not_look_like_twice_it():
    figure = json.loads(heatmap_figure(heatmap({"a": 9.0, "b": 2.0, "c": 1.0, "d": 0.3})).to_json())
    z = {feature: value for (feature, day), (value, _) in cells(figure).items() if day == "2026-11-30"}
    assert z["a"] > z["b"] > z["c"] > z["d"]
    colours = {feature: cell_colour(figure, value) for feature, value in z.items()}
    assert len(set(colours.values())) == 4, colours


def test_the_scale_runs_from_a_tenth_to_twenty_times_the_threshold_and_clips_beyond():
    figure = json.loads(heatmap_figure(heatmap({"huge": 300.0, "top": 20.0, "tiny": 0.001, "low": 0.1})).to_json())
    z = {feature: value for (feature, day), (value, _) in cells(figure).items() if day == "2026-11-30"}
    assert cell_colour(figure, z["huge"]) == cell_colour(figure, z["top"])
    assert cell_colour(figure, z["tiny"]) == cell_colour(figure, z["low"])
    colorbar = heatmap_trace(figure)["colorbar"]
    assert {"0.1×", "1×", "2×", "5×", "20×"} <= set(colorbar["ticktext"])


def test_the_hover_gives_the_raw_score_the_threshold_and_the_ratio():
    frame = heatmap({"a": 9.0, "b": 2.0})
    figure = json.loads(heatmap_figure(frame).to_json())
    template = heatmap_trace(figure)["hovertemplate"]
    assert "score" in template and "threshold" in template and "×" in template
    shown = cells(figure)
    for row in frame.itertuples():
        _, data = shown[(row.column, f"{row.day:%Y-%m-%d}")]
        assert data[:3] == pytest.approx([row.score, row.threshold, row.ratio])


def test_the_most_drifting_features_sit_at_the_top():
    figure = json.loads(heatmap_figure(heatmap({"low": 0.5, "high": 9.0, "mid": 2.0})).to_json())
    assert heatmap_trace(figure)["y"] == ["high", "mid", "low"]
    assert figure["layout"]["yaxis"]["autorange"] == "reversed"  # the first row drawn on top


def test_the_preselected_feature_is_the_requested_one_if_it_exists_else_the_first_ranked():
    ranked = ["debt_ratio", "income", "region"]
    assert preselected_feature(ranked, None) == "debt_ratio"
    assert preselected_feature(ranked, "region") == "region"
    assert preselected_feature(ranked, "not-a-feature") == "debt_ratio"
