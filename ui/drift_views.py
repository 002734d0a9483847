"""The drift explorer's figures, its table as people read it, and its feature picker.

Presentation only: the ratios, rankings and reference rules come from services.monitoring
(``drift_heatmap``, ``drift_table``, ``reference_period``); this module turns them into plotly
figures, labelled columns and widget state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

# The heat map's colour scale, on score ÷ threshold (1 = the verdict line): logarithmic, so 9× and
# 2× look as different as they are, from a tenth of the threshold to twenty times it (clipped beyond).
RATIO_MIN, RATIO_MAX = 0.1, 20.0
RATIO_TICKS = (0.1, 0.5, 1.0, 2.0, 5.0, 20.0)
_RATIO_COLOURS = ("#f7fbff", "#c6dbef", "#fee8c8", "#fdbb84", "#e34a33", "#7f0000")  # one per tick

FEATURE_KEY = "drift_feature"
_FEATURE_MODEL = "drift_feature_model"  # which model the picker's value was chosen for
_ROW_SEEN = "drift_table_row_seen"  # the table selection already applied to the picker

# The table's columns as shown, in order: what judges the feature, then data quality beside it.
TABLE_LABELS = {
    "column": "Feature", "drifted": "Verdict", "score": "Score", "threshold": "Threshold",
    "ratio": "× threshold", "data_quality": "Data quality", "null_share": "Null share",
    "unseen_share": "Unseen share", "out_of_range_share": "Out of range", "method": "Method",
    "kind": "Kind", "psi": "PSI", "psi_band": "PSI band", "js_distance": "JS distance",
    "wasserstein_normed": "Wasserstein (normed)", "ks_statistic": "KS statistic", "chi2_pvalue": "χ² p-value",
    "reference_null_share": "Reference null share", "unseen_categories": "Unseen categories",
    # issue 15: the distance the verdict mode judges, its bootstrap interval and its noise level
    "effect_statistic": "Distance judged", "effect": "Distance", "lower": "Interval low", "upper": "Interval high",
    "noise": "Noise level", "too_small": "Too small to tell",
}
MISSING = "—"


def _position(ratio: float) -> float:
    """Where a ratio sits on the colour scale, 0 to 1."""
    low, high = math.log10(RATIO_MIN), math.log10(RATIO_MAX)
    return (math.log10(ratio) - low) / (high - low)


def heatmap_figure(heatmap: pd.DataFrame) -> go.Figure:
    """Feature x day heat map of a stored drift heat map (columns day, column, method, score,
    threshold, ratio): colour on a log scale of the ratio, the most drifting feature on top, and
    the raw score, threshold and ratio in the hover."""
    order = heatmap.groupby("column")["ratio"].max().sort_values(ascending=False, kind="stable").index

    def grid(values: str) -> pd.DataFrame:
        return heatmap.pivot_table(index="column", columns="day", values=values, aggfunc="first",
                                   dropna=False).reindex(order)

    ratio = grid("ratio")
    # customdata per cell: raw score, threshold, ratio, method (the hover shows them; z is only the colour)
    custom = np.dstack([grid(c).to_numpy(dtype=object) for c in ("score", "threshold", "ratio", "method")])
    z = np.log10(ratio.to_numpy(float).clip(RATIO_MIN, RATIO_MAX))
    fig = go.Figure(go.Heatmap(
        z=z, x=list(ratio.columns), y=list(order), customdata=custom,
        zmin=math.log10(RATIO_MIN), zmax=math.log10(RATIO_MAX),
        colorscale=[[_position(t), c] for t, c in zip(RATIO_TICKS, _RATIO_COLOURS, strict=True)],
        colorbar={"title": {"text": "score ÷ threshold"}, "tickvals": [math.log10(t) for t in RATIO_TICKS],
                  "ticktext": [f"{t:g}×" for t in RATIO_TICKS]},
        hovertemplate="<b>%{y}</b> on %{x|%Y-%m-%d}<br>score %{customdata[0]:.4g} (%{customdata[3]})"
                      "<br>threshold %{customdata[1]:.4g}<br>%{customdata[2]:.2f}× threshold<extra></extra>",
        xgap=1, ygap=1))
    fig.update_layout(height=max(260, 28 * len(order)), margin={"t": 20}, yaxis={"autorange": "reversed"},
                      xaxis_title="day (UTC)")
    return fig


def overlay_figure(dist: pd.DataFrame, column: str) -> go.Figure:
    """One feature's reference and current shares per reference bin, overlaid."""
    fig = go.Figure([go.Bar(name="reference", x=dist["bin"], y=dist["reference_share"], opacity=0.6),
                     go.Bar(name="current window", x=dist["bin"], y=dist["current_share"], opacity=0.6)])
    fig.update_layout(barmode="overlay", height=340, yaxis_tickformat=".0%", margin={"t": 40},
                      title={"text": f"{column}: reference vs current window"},
                      xaxis_title="value (reference bins of equal mass)", yaxis_title="share of rows")
    return fig


def table_view(table: pd.DataFrame) -> pd.DataFrame:
    """``drift_table`` under human labels, in display order (a missing value is shown as MISSING)."""
    view = table.assign(
        drifted=table["drifted"].map({True: "drifted", False: "no drift"}).astype(object),
        too_small=table["too_small"].map({True: "too small", False: "no"}).astype(object),
        unseen_categories=table["unseen_categories"].replace("", None))
    return view[list(TABLE_LABELS)].rename(columns=TABLE_LABELS)


def table_columns() -> dict[str, Any]:
    """The column configuration of ``table_view``: shares as percentages, scores to four figures."""
    percent = st.column_config.NumberColumn(format="percent")
    return {
        "Score": st.column_config.NumberColumn(format="%.4g", help="The verdict statistic (Method); a p-value for "
                                               "ks, chisquare and z"),
        "Threshold": st.column_config.NumberColumn(format="%.4g"),
        "× threshold": st.column_config.NumberColumn(
            format="%.2f×", help="How far past the verdict line: score ÷ threshold for distances, threshold ÷ "
                                 "p-value for tests. Above 1 drifts."),
        "Null share": percent, "Unseen share": st.column_config.NumberColumn(
            format="percent", help="Share of current rows whose category the reference never saw"),
        "Reference null share": percent,
        "Data quality": st.column_config.TextColumn(
            help="Null share over the reference's + the rule's increase, unseen categories or values outside the "
                 "reference's range over their limits (tower.yaml monitoring.alerts.data_quality); ok otherwise"),
        "Out of range": st.column_config.NumberColumn(
            format="percent", help="Share of finite values below the reference's minimum or above its maximum "
                                   "(NaN and ±inf count in the null share)"),
        "PSI": st.column_config.NumberColumn(format="%.4g"),
        "JS distance": st.column_config.NumberColumn(format="%.4g"),
        "Wasserstein (normed)": st.column_config.NumberColumn(format="%.4g"),
        "KS statistic": st.column_config.NumberColumn(format="%.4g"),
        "χ² p-value": st.column_config.NumberColumn(format="%.4g"),
        "Distance judged": st.column_config.TextColumn(
            help="What the verdict modes judge: the verdict statistic, the KS statistic for ks, the JS distance for "
                 "chisquare and z"),
        "Distance": st.column_config.NumberColumn(format="%.4g"),
        "Interval low": st.column_config.NumberColumn(
            format="%.4g", help="Bootstrap interval of the distance (both samples redrawn at their sizes)"),
        "Interval high": st.column_config.NumberColumn(format="%.4g"),
        "Noise level": st.column_config.NumberColumn(
            format="%.4g", help="The distance's 95th percentile with no drift at this window's size: smaller drift "
                                "cannot be told from noise"),
    }


def table_key(model: str, ranked: Sequence[str]) -> str:
    """The table's widget key. It changes with the ranking, so a selected row never silently points
    at another feature after the window or reference reorders the table (the selection is by row)."""
    return "drift_table:" + model + ":" + ",".join(ranked)


def preselected_feature(ranked: Sequence[str], requested: str | None) -> str:
    """The feature to show first: the one the URL asks for when the model has it, else the most drifting."""
    return requested if requested is not None and requested in ranked else ranked[0]


def feature_picker(model: str, ranked: Sequence[str], key: str, selected_rows: Sequence[int]) -> str:
    """The feature picker, after the table (its widget ``key``, ``selected_rows`` of this run).

    Its state is set before it is drawn (Streamlit refuses a change once the widget exists): a newly
    clicked row selects that row's feature; a new model (or a first visit) preselects the URL's
    ``?feature=`` when that model has it, else the most drifting feature. The choice goes back into
    the URL so a reload or a shared link shows the same feature."""
    state = st.session_state
    clicked = ranked[selected_rows[0]] if selected_rows and selected_rows[0] < len(ranked) else None
    if clicked is not None and state.get(_ROW_SEEN) != (key, clicked):
        state[FEATURE_KEY] = clicked  # only a new click: a row left selected must not undo a later pick
    state[_ROW_SEEN] = (key, clicked)
    owner = state.get(_FEATURE_MODEL)
    if state.get(FEATURE_KEY) not in ranked or owner not in (None, model):
        # The URL's feature was linked for the model the session started on, not for one switched to.
        requested = st.query_params.get("feature") if owner in (None, model) else None
        state[FEATURE_KEY] = preselected_feature(ranked, requested)
    state[_FEATURE_MODEL] = model
    chosen: str = st.selectbox("Feature", list(ranked), key=FEATURE_KEY,
                               help="Most drifting first; click a row of the table to pick its feature")
    st.query_params["feature"] = chosen
    return chosen
