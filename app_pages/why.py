"""Why: the segments behind a metric's change and the features ranked by drift, for one alert window.

?model=&start=&end=&metric= (days YYYY-MM-DD, both included); services/monitoring/root_cause.py
says what is computed and why.
"""

from __future__ import annotations

import streamlit as st

from services.mapping import ModelMapping
from services.monitoring import root_cause
from services.monitoring.reference_period import Period, configured_reference_text, default_reference_period
from services.settings import Settings
from services.stores.warehouse.rows import log_rows, reference_rows
from ui import backends
from ui import why_views as views
from ui.notices import literal
from ui.page import errors_shown, page
from ui.reference_notice import reference_notice
from ui.tables import label, show
from ui.widgets import model_names, model_picker

METRIC_KEY = "why_metric"


def _metric(mapping: ModelMapping) -> str:
    options = list(root_cause.metrics_for(mapping.task))
    default, note = root_cause.default_metric(mapping.task, st.query_params.get("metric"))
    if st.session_state.get(METRIC_KEY) not in options:
        st.session_state[METRIC_KEY] = default
    if note:
        st.caption(literal(note))
    chosen: str = st.selectbox("Metric", options, key=METRIC_KEY, format_func=label,
                               help="Metrics that are means over rows, so their change splits exactly by segment")
    return chosen


def _segments(settings: Settings, mapping: ModelMapping, window: Period, metric: str) -> None:
    st.subheader(f"Segments behind the {label(metric)} change")
    choice = st.radio("Baseline", [views.BASELINE_REFERENCE, views.BASELINE_BEFORE], horizontal=True,
                      key="why_baseline")
    if choice == views.BASELINE_REFERENCE:
        baseline, text = reference_rows(mapping), configured_reference_text(mapping)
    else:
        period = default_reference_period(window)
        baseline, text = log_rows(mapping, *period), f"the log from {period[0]:%Y-%m-%d} to " \
            f"{period[1]:%Y-%m-%d} (excluded)"
    with st.spinner("Counting outcomes per segment in the warehouse…"):
        found = views.segment_explanation(settings, mapping, metric, baseline, log_rows(mapping, *window))
    if found.reason:
        st.info(literal(found.reason[:1].upper() + found.reason[1:]))
        return
    columns = [b.column for b in found.partitions]
    column = st.selectbox("Split by", columns, key=f"why_split:{mapping.name}",
                          help="One column at a time, so the segments never overlap and cover every row; the split "
                               "that best isolates a segment whose own metric moved comes first")
    bars = next(b for b in found.partitions if b.column == column)
    d = bars.decomposition
    assert d is not None
    st.caption(f"{label(metric)} {d.before:.4f} on {literal(text)} → {d.after:.4f} in the window: change "
               f"{d.change:+.4f}. Each bar is the segment's weight × {label(metric)} in the window minus the same in "
               "the baseline; the bars add up to the change exactly. Mix part: the segment's share of rows moved; "
               "rate part: its own metric moved. " + ("Rows in none of the declared ranges (or with no finite "
                                                      "value) form (rest)." if bars.ranged else ""))
    estimated = [side for side, flag in zip(("the baseline", "the window"), found.estimated, strict=True) if flag]
    if estimated:
        st.caption(f"Estimated before labels (CBPE) for {' and '.join(estimated)}: no label has arrived there, so each "
                   "row's label counts as its calibrated probability, as on the Performance page.")
    left, right = st.columns([3, 2])
    left.plotly_chart(views.waterfall_figure(d, metric, column))
    with right:
        table = views.bars_table(d, dict(bars.segments), mapping, column, window[0].date())
        show(table, column_config=views.number_columns(["Weight (baseline)", "Weight (window)", "Metric (baseline)",
                                                        "Metric (window)", "Contribution", "Mix part",
                                                        "Rate part"]), key=f"why_bars:{column}")
    st.caption("Drift is not split by segment: a drift score or distance is no weighted mean of its segments' "
               "scores. Its features are ranked below.")


def _features(settings: Settings, mapping: ModelMapping, window: Period) -> None:
    st.subheader("Features ranked by drift")
    heatmaps = views.feature_heatmaps(settings, mapping, *window)
    if all(frame.empty for frame in heatmaps.values()):
        st.info("No stored drift results in this window: run `python -m services.cli monitor run` over these days.")
        return
    version = views.serving_version(settings, mapping, *window)
    weights = None
    with errors_shown():  # the registry down: rank by drift alone, and say why
        weights = views.importances(settings, mapping, version)
        st.caption(f"Weighted by the feature importances logged on the run of version {version}, the version that "
                   "served most of the window (normalised to sum to 1)." if weights else
                   f"Ranked by drift alone: this version's run (version {version or 'none'}, the one that served most "
                   "of the window) logged no feature importances (`feature_importance.<feature>` run metrics).")
    ranked = root_cause.rank_features(heatmaps, weights)
    table = views.features_table(ranked, mapping, window[0].date())
    st.caption("× threshold: the daily score ÷ its threshold, averaged over the window's days (above 1 drifts).")
    show(table, column_config=views.number_columns(["× threshold (mean)", "Importance", "Weighted drift"], "%.3f"),
         key="why_features")
    for f in ranked[:3]:
        views.drift_link(mapping, f.feature, f.segment or None, window[0].date(),
                         f"{f.feature} ({f.segment or 'all rows'}) in the drift explorer")


def render(settings: Settings) -> None:
    name = model_picker(model_names(settings))
    mapping = settings.model(name) if name else None
    if mapping is None:
        st.info("No monitored model: map one under `models:` in tower.yaml." if name is None else
                f"{literal(name)} has no prediction log mapped in tower.yaml.")
        return
    window = views.window_picker()
    if window is None:
        return
    mapping = reference_notice(backends.resolved_reference(settings, mapping))  # the baseline "the model's reference"
    metric = _metric(mapping)
    _segments(settings, mapping, window, metric)
    _features(settings, mapping, window)


if __name__ == "__main__":
    page(render, "Why")
