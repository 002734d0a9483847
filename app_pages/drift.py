"""Drift explorer: feature x day drift scores, every feature's verdict over the window, one feature's distributions."""

from __future__ import annotations

import streamlit as st

from services.mapping import ModelMapping
from services.monitoring.multivariate import MultivariateResult
from services.monitoring.reference_period import (
    Period,
    configured_reference_text,
    days_on_other_reference,
    reference_text,
)
from services.monitoring.report_tables import drift_table, too_small_text, verdict_text
from services.monitoring.results import WindowReport
from services.settings import Settings
from ui import backends
from ui.alert_notice import open_alerts_notice
from ui.drift_views import (
    MISSING,
    feature_picker,
    overlay_figure,
    table_columns,
    table_key,
    table_view,
)
from ui.multivariate_views import reconstruction_figure
from ui.notices import literal
from ui.page import page
from ui.reference_notice import reference_notice
from ui.widgets import day_window, model_names, model_picker, reference_picker, segment_of, segment_picker
from ui.windows import empty_window_notice


def _daily_heatmap(settings: Settings, mapping: ModelMapping, window: Period) -> None:
    heatmap = backends.drift_heatmap(settings, mapping.name, *window, segment_of(mapping))
    st.subheader("Drift by feature and day")
    if heatmap.empty:
        empty_window_notice(settings, mapping, *window, source="monitoring", what="daily drift results")
        return
    # The job compares every day with the configured reference (monitoring/job.py, load_or_compute
    # without a range), whatever this page's picker says: the caption must not suggest otherwise.
    stale = days_on_other_reference(heatmap, mapping)
    st.caption(f"Each day against {literal(configured_reference_text(mapping))}, as `monitor run` stored it; the "
               "reference chosen below changes the table and the distributions, not this map. Colour: score ÷ "
               "threshold on a log scale (above 1× drifts); hover a cell for the raw score."
               + (f" {stale} of these days were computed against an earlier reference definition; the next "
                  "`monitor run` recomputes them." if stale else ""))
    st.plotly_chart(backends.drift_heatmap_figure(settings, mapping.name, *window, segment_of(mapping)))
    pairs = backends.co_drifting_pairs(settings, mapping.name, *window, segment_of(mapping))
    if not pairs.empty:
        st.caption("Features whose daily drift moves together")
        st.dataframe(pairs, hide_index=True)


def _multivariate(settings: Settings, mapping: ModelMapping, window: Period) -> None:
    """The daily PCA reconstruction error inside its reference band (services/monitoring/multivariate.py)."""
    st.subheader("Multivariate drift (PCA reconstruction error)")
    frame = backends.reconstruction_over_time(settings, mapping.name, *window, segment_of(mapping))
    if frame.empty or frame["value"].isna().all():
        st.caption("No multivariate drift results in this window: it needs at least two correlated numerical "
                   "features and a `monitor run` over these days.")
        return
    outside = int(frame["drifted"].fillna(False).sum())
    st.caption("Each day's mean distance between the standardised numerical features and their reconstruction "
               "from the reference's principal components (65 % of its variance); the band is mean ± 3σ over ten "
               "reference chunks. A change in how features move together shows here even when no feature "
               f"drifts alone. {outside} of {len(frame)} days outside the band.")
    st.plotly_chart(reconstruction_figure(frame))


def render(settings: Settings) -> None:
    name = model_picker(model_names(settings))
    mapping = settings.model(name) if name else None
    if mapping is None:
        st.info("No monitored model: map one under `models:` in tower.yaml." if name is None else
                f"{name} has no prediction log mapped in tower.yaml.")
        return
    open_alerts_notice(settings, mapping.name, "drift")
    mapping = reference_notice(backends.resolved_reference(settings, mapping))
    mapping = segment_picker(mapping)
    window = day_window("Window (UTC days)", 14, key="drift_window")
    if window is None:
        return
    _daily_heatmap(settings, mapping, window)
    _multivariate(settings, mapping, window)
    st.subheader("Every feature over the whole window")
    reference = reference_picker(mapping, window)
    if reference is None:
        return  # incomplete, or refused (the picker says why): nothing is computed against it
    with st.spinner("Computing the window against the reference in the warehouse…"):
        report = backends.window_report(settings, mapping, reference, *window)
    table = drift_table(report)
    if table.empty:
        st.info(f"{mapping.name} has no features mapped in tower.yaml (`features: numerical/categorical`).")
        return
    st.caption(f"{report.rows_current:,} rows against {report.rows_reference:,} reference rows of "
               f"{literal(reference_text(mapping, reference))}. Most drifting first; verdict as Evidently 0.7 "
               "chooses; PSI bands 0.1 / 0.25 beside. Click a row to see its feature's distributions. "
               + verdict_text(report) + _multivariate_text(report.multivariate) + _quality_text(report))
    small = too_small_text(report)  # issue 15: the window cannot tell drift of the size that decides
    if small:
        st.warning(literal(small))
    ranked = list(table["column"])
    key = table_key(mapping.name, ranked)
    event = st.dataframe(table_view(table), key=key, on_select="rerun", selection_mode="single-row",
                         hide_index=True, column_config=table_columns(), placeholder=MISSING)
    column = feature_picker(mapping.name, ranked, key, event.selection.rows)
    dist = backends.feature_distributions(settings, mapping, reference, column, *window)
    st.subheader(f"Distribution of {literal(column)}")
    st.plotly_chart(overlay_figure(dist, column))


def _quality_text(report: WindowReport) -> str:
    """The window's data quality in one sentence (services/monitoring/data_quality.py)."""
    over = [q.column for q in report.data_quality if q.alert]
    if not over:
        return ""
    return f" Data quality over its limits: {literal(', '.join(over))} (see the Data quality column)."


def _multivariate_text(result: MultivariateResult | None) -> str:
    """The window's multivariate drift in one sentence, after the table's caption."""
    if result is None or result.value is None:
        return ""
    if result.upper is None:
        return f" Multivariate: reconstruction error {result.value:.4g} over the window (no reference band)."
    band = f"{result.lower:.4g} – {result.upper:.4g}" if result.lower is not None else f"below {result.upper:.4g}"
    verdict = "outside" if result.drifted else "inside"
    return f" Multivariate: reconstruction error {result.value:.4g} over the window, {verdict} the band ({band})."


if __name__ == "__main__":
    page(render, "Drift explorer")
