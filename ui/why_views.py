"""The "Why" panel's reads, waterfall, tables and links (services/monitoring/root_cause.py does the work).

The cached reads live here rather than in ui/backends.py so the panel's hook into shared files stays
small; they follow the same rules (keyed on the settings' stores, a minute of caching, through the
outage board).
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from services.mapping import ModelMapping
from services.monitoring import root_cause
from services.outages import REGISTRY, TOWER, WAREHOUSE
from services.settings import Settings
from services.stats.decomposition import Decomposition
from services.stores.warehouse import logs
from services.stores.warehouse.rows import Rows
from ui import backends
from ui.navigation import BY_PATH
from ui.notices import literal
from ui.tables import MISSING, RULE_LABELS, label

WHY_DAYS = 7  # the default window without ?start=
MAX_LABEL = 40  # characters of a segment's name on the figure
BASELINE_REFERENCE = "The model's reference"
BASELINE_BEFORE = "The same number of days just before"


# ------------------------------------------------------------------ cached reads
@st.cache_data(hash_funcs=backends.HASH_FUNCS, ttl=backends.TTL_S, max_entries=64, show_spinner=False)
def segment_explanation(s: Settings, mapping: ModelMapping, metric: str, baseline: Rows,
                        window: Rows) -> root_cause.SegmentExplanation:
    calibration = backends.guarded(s, TOWER, lambda: root_cause.calibration_of(
        backends.tower(s), backends.engine(s), mapping.for_segment(None)))  # CBPE: a window without labels
    return backends.guarded(s, WAREHOUSE, lambda: root_cause.explain_segments(
        backends.engine(s), mapping, metric, baseline, window, calibration=calibration))


@st.cache_data(hash_funcs=backends.HASH_FUNCS, ttl=backends.TTL_S, max_entries=64, show_spinner=False)
def feature_heatmaps(s: Settings, mapping: ModelMapping, start: datetime, end: datetime) -> dict[str, pd.DataFrame]:
    return backends.guarded(s, TOWER, lambda: root_cause.feature_heatmaps(backends.tower(s), mapping, start, end))


@st.cache_data(hash_funcs=backends.HASH_FUNCS, ttl=backends.TTL_S, max_entries=64, show_spinner=False)
def serving_version(s: Settings, mapping: ModelMapping, start: datetime, end: datetime) -> str | None:
    return backends.guarded(s, WAREHOUSE, lambda: root_cause.serving_version(
        logs.latency_by_version(backends.engine(s), mapping, start, end)))


def importances(s: Settings, mapping: ModelMapping, version: str | None) -> dict[str, float] | None:
    if version is None:
        return None
    run = backends.guarded(s, REGISTRY, lambda: backends.lineage(s, mapping.name, version))
    return root_cause.feature_importances(run.metrics, mapping.features)


# ------------------------------------------------------------------ the window from the link
def _day(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw or "")
    except ValueError:  # absent, hostile or oddly spelled: the default stands
        return None


def linked_days(start: str | None, end: str | None, today: date) -> tuple[date, date]:
    """First and last day (both included) of ``?start=&end=``: complete days before today, else the
    last ``WHY_DAYS`` complete days; an end before the start, or missing, is the start's own day
    range to yesterday."""
    yesterday = today - timedelta(days=1)
    first = _day(start)
    if first is None or first > yesterday:
        first = today - timedelta(days=WHY_DAYS)
    last = _day(end)
    if last is None or last > yesterday or last < first:
        last = yesterday
    return first, last


def window_picker() -> tuple[datetime, datetime] | None:
    today = datetime.now(UTC).date()
    first, last = linked_days(st.query_params.get("start"), st.query_params.get("end"), today)
    picked = st.date_input("Alert window (UTC days)", (first, last), max_value=today - timedelta(days=1),
                           key="why_window")
    if not isinstance(picked, tuple) or len(picked) != 2:
        st.info("Pick the last day of the window.")
        return None
    return root_cause.days_window(picked[0], picked[1])


# ------------------------------------------------------------------ figures and tables
def _short(text: str) -> str:
    """A segment name as a figure label: inert (plotly reads some HTML in labels) and short."""
    shown = text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "…"
    return html.escape(shown)


def waterfall_figure(d: Decomposition, metric: str, column: str) -> go.Figure:
    """One bar per segment (largest first) and the total bar: the change of the metric."""
    names = [_short(c.group) for c in d.contributions]
    values = [c.contribution for c in d.contributions]
    fig = go.Figure(go.Waterfall(
        orientation="v", measure=["relative"] * len(values) + ["total"], x=[*names, "total change"],
        y=[*values, 0.0], text=[f"{v:+.4f}" for v in values] + [f"{d.change:+.4f}"], textposition="outside",
        decreasing={"marker": {"color": "#c5221f"}}, increasing={"marker": {"color": "#137333"}},
        totals={"marker": {"color": "#5f6368"}}, connector={"line": {"color": "#bdbdbd"}}))
    fig.update_layout(height=380, margin={"t": 40}, showlegend=False,
                      title={"text": html.escape(f"{label(metric)} change by {column}")},
                      yaxis_title=f"contribution to the {label(metric)} change")
    return fig


def relative_link(page: str, params: dict[str, str]) -> str:
    """A link to another page relative to this one, so it works under any base URL path."""
    return f"./{page}?{urlencode(params)}"


def bars_table(d: Decomposition, segments: dict[str, str | None], mapping: ModelMapping, column: str,
               start: date) -> pd.DataFrame:
    rows = []
    for c in d.contributions:
        segment = segments.get(c.group)
        rows.append({"Segment": c.group, "Declared segment": segment or MISSING,
                     "Rows (baseline)": int(c.rows_before), "Rows (window)": int(c.rows_after),
                     "Weight (baseline)": c.weight_before, "Weight (window)": c.weight_after,
                     "Metric (baseline)": c.rate_before, "Metric (window)": c.rate_after,
                     "Contribution": c.contribution, "Mix part": c.mix, "Rate part": c.rate,
                     "Drift explorer": relative_link("drift", root_cause.drift_params(mapping.name, column, segment,
                                                                                       start))})
    return pd.DataFrame(rows)


def features_table(ranked: tuple[root_cause.FeatureDrift, ...], mapping: ModelMapping, start: date) -> pd.DataFrame:
    return pd.DataFrame([{
        "Feature": f.feature, "Segment": f.segment or "all", "× threshold (mean)": f.ratio,
        "Days drifted": f"{f.drifted_days} of {f.days}", "Importance": f.importance, "Weighted drift": f.weighted,
        "Drift explorer": relative_link("drift", root_cause.drift_params(mapping.name, f.feature, f.segment or None,
                                                                          start)),
    } for f in ranked], columns=["Feature", "Segment", "× threshold (mean)", "Days drifted", "Importance",
                                 "Weighted drift", "Drift explorer"])


def number_columns(names: list[str], fmt: str = "%.4f") -> dict[str, object]:
    config: dict[str, object] = {n: st.column_config.NumberColumn(format=fmt) for n in names}
    config["Drift explorer"] = st.column_config.LinkColumn(display_text="open", help="The drift explorer on "
                                                           "this feature and segment, from the window's first day")
    return config


def drift_link(mapping: ModelMapping, feature: str, segment: str | None, start: date, text: str) -> None:
    st.page_link(BY_PATH["drift"].file, label=literal(text), icon=":material/ssid_chart:",
                 query_params=root_cause.drift_params(mapping.name, feature, segment, start))


# ------------------------------------------------------------------ links to the panel
def why_links(episodes: pd.DataFrame, limit: int = 10) -> None:
    """A "Why?" link per open episode the panel explains (drift or performance), at most ``limit``."""
    shown = 0
    for _, episode in episodes.iterrows():
        params = root_cause.why_params(str(episode["model"]), str(episode["rule"]), episode["opened_window"],
                                       episode["last_window"], str(episode.get("metric") or ""))
        if params is None or shown >= limit:
            continue
        rule, subject = str(episode["rule"]), str(episode.get("subject") or "")
        if rule in ("performance", "estimated_performance_drop"):  # the subject is a metric: its label
            subject = label(subject.removeprefix("estimated_"))
        text = f"Why? {episode['model']}: {RULE_LABELS.get(rule, rule)}" + (f" {subject}" if subject else "")
        st.page_link(BY_PATH["why"].file, label=literal(text),
                     icon=":material/help:", query_params=params)
        shown += 1
