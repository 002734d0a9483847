"""Fleet overview: every registered model, its stage holders, traffic and latency against its SLO."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from services.catalog import fleet
from services.monitoring import health_chips
from services.settings import Settings
from ui import backends
from ui.navigation import BY_PATH
from ui.notices import literal, show_error
from ui.page import page
from ui.tables import MISSING, format_time, show
from ui.windows import complete_days

WINDOW_DAYS = 7
CHIP_COLUMNS = {"latency": "Latency", "errors": "Errors", "drift": "Drift", "multivariate": "Multivariate",
                "data_quality": "Data quality", "fairness": "Fairness", "performance": "Performance"}
# Each chip column's tooltip: what makes it red (the Why column says which finding did, per model).
CHIP_HELP = {
    "latency": "p95 latency over the model's SLO (last 7 days, or an open latency alert)",
    "errors": "Error rate over the model's SLO (last 7 days, or an open error-rate alert)",
    "drift": "A feature's drift verdict (Evidently's test per column), alert after the rule's consecutive days",
    "multivariate": "PCA reconstruction error outside its reference band: features that stop moving together",
    "data_quality": "Per feature: null share over the reference's, unseen categories, values outside the "
                    "reference's range",
    "fairness": "Demographic parity / equalized odds difference over the limit for a sensitive attribute",
    "performance": "Realised performance (labels) or, before labels arrive, the CBPE estimate dropped below the "
                   "reference",
}
WORDS = {"alert": "alert", "warning": "warning", "ok": "ok", "unknown": "no results"}
CRITICAL = "critical"  # an alert one of whose open episodes is critical (alert workflow, issue 14)
# Text and colour together: the word says it, the colour only repeats it.
COLOURS = {CRITICAL: "background-color: #a50e0e; color: #ffffff; font-weight: 700",
           "alert": "background-color: #fde0dc; color: #a50e0e; font-weight: 600",
           "warning": "background-color: #fff4d6; color: #7a4f01",
           "ok": "color: #137333", "no results": "color: #6b6b6b"}
# Fixed widths keep the model, its health and the chips on screen at 1440 px, ahead of the rest
# (and give the browser tests a cell's place on the canvas grid).
MODEL_WIDTH, CHIP_WIDTH = 150, 110


def _chip_text(chip: health_chips.Chip | None) -> str:
    if chip is None:
        return MISSING
    word = CRITICAL if chip.status == "alert" and chip.critical else WORDS.get(chip.status, chip.status)
    return word + (f" ×{chip.count}" if chip.count > 1 else "")


def _table(rows: tuple[fleet.FleetRow, ...]) -> pd.DataFrame:
    records = []
    for r in rows:
        chips = {c.dimension: c for c in r.chips}
        why = " ".join(r.health_reasons)
        records.append({
            "Model": r.model,
            "Health": CRITICAL if r.health == "alert" and any(c.critical for c in r.chips if c.status == "alert")
            else WORDS.get(r.health, r.health),
            **{label: _chip_text(chips.get(dim)) for dim, label in CHIP_COLUMNS.items()},
            "Why": why if len(why) <= 90 else why[:89] + "…",
            "Since last week": r.since_last_week or MISSING,
            "Production": r.production or MISSING,
            "Staging": r.staging or MISSING,
            "Owner": r.owner or MISSING,
            "Requests (7 d)": r.requests_7d,
            "Traffic per day": list(r.traffic_by_day),
            "p95 (ms)": r.p95_ms,
            "SLO p95 (ms)": r.slo_p95_ms,
            "Error rate": r.error_rate,
            "SLO error rate": r.slo_error_rate,
            "SLO (7 d)": r.status,
            "Last change": format_time(r.last_change),
            "Problem": r.problem or "",
        })
    return pd.DataFrame(records)


def _colour(value: object) -> str:
    word = str(value).split(" ×")[0]
    return COLOURS.get(word, "")


def _open(row: fleet.FleetRow, column: str) -> None:
    """A health chip opens the page that explains it; any other cell of the row opens the model."""
    dimension = next((d for d, label in CHIP_COLUMNS.items() if label == column), None)
    chip = next((c for c in row.chips if c.dimension == dimension), None)
    if chip is not None and chip.status in ("alert", "warning"):
        st.switch_page(BY_PATH[chip.page].file, query_params=dict(chip.params))
    st.switch_page(BY_PATH["model"].file, query_params={"model": row.model})


def render(settings: Settings) -> None:
    # Complete UTC days only: a partial current day would read as a traffic drop on every model.
    start, end = complete_days(WINDOW_DAYS)
    with st.spinner("Reading the registry and the prediction logs…"):
        overview = fleet.fleet_overview(
            settings,
            load_models=lambda: backends.list_models(settings),
            load_summary=lambda m: backends.window_summary(settings, m, start, end),
            load_daily_requests=lambda m: fleet.requests_per_day(
                backends.traffic_by_day(settings, m, start, end), start, WINDOW_DAYS),
            load_findings=lambda names: backends.fleet_findings(settings, names),
            window_start=start,
            load_changes=lambda names: backends.week_changes(settings, names, end),
            # One cached call for the whole fleet; the per-model loaders above read only what it lacks.
            load_traffic=lambda mappings: backends.fleet_traffic(settings, tuple(m.name for m in mappings),
                                                                 start, end),
        )
    if overview.registry_error:
        show_error(overview.registry_error)
        st.caption("Showing the models configured in tower.yaml from their prediction logs only.")
    if not overview.rows:
        st.info("No registered models yet. Register a model in MLflow, or map one in tower.yaml "
                f"(registry: {literal(settings.mlflow_tracking_uri)}).")
        return

    st.caption(f"Traffic, latency and errors over the {WINDOW_DAYS} complete days from {start:%Y-%m-%d} "
               f"to {end - timedelta(days=1):%Y-%m-%d} (UTC).")
    table = _table(overview.rows)
    left, middle, right = st.columns([2, 2, 1])
    query = left.text_input("Filter by name or description", placeholder="e.g. credit")
    owners = middle.multiselect("Owner", sorted({o for o in table["Owner"] if o != MISSING}))
    problems_only = right.toggle("Problems only", help="SLO breaches, missing logs and no traffic")
    keep = pd.Series(True, index=table.index)
    if query:
        text = table["Model"] + " " + pd.Series([r.description for r in overview.rows])
        keep &= text.str.contains(query, case=False, regex=False)
    if owners:
        keep &= table["Owner"].isin(owners)
    if problems_only:
        keep &= (table["SLO (7 d)"] != fleet.OK) | (table["Health"] != WORDS["ok"])  # critical counts too
    shown = table[keep].reset_index(drop=True)

    breaches = int((table["SLO (7 d)"] == fleet.BREACH).sum())
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Models", len(table))
    c2.metric("With open alerts", int(table["Health"].isin([WORDS["alert"], CRITICAL]).sum()))
    c3.metric("Over their SLO", breaches)
    c4.metric("Requests (7 d)", f"{int(table['Requests (7 d)'].fillna(0).sum()):,}")

    styled = shown.style.map(_colour, subset=["Health", *CHIP_COLUMNS.values()])
    event = show(
        styled, on_select="rerun", selection_mode="single-cell", key="fleet_table",
        column_config={
            "Model": st.column_config.TextColumn(width=MODEL_WIDTH),
            "Health": st.column_config.TextColumn(width=CHIP_WIDTH, help="The worst of the chips to its right"),
            **{label: st.column_config.TextColumn(width=CHIP_WIDTH, help=CHIP_HELP[dim] + ". Status in words: "
                                                  "alert, warning, ok, no results.")
               for dim, label in CHIP_COLUMNS.items()},
            "Why": st.column_config.TextColumn(width="large", help="The findings behind the worst chip"),
            "Since last week": st.column_config.TextColumn(
                help="Alerts whose onset is in the last 7 days; mean daily p95 latency and drift share against "
                     "the 7 days before (stored monitoring results)"),
            "Traffic per day": st.column_config.LineChartColumn(y_min=0),
            "p95 (ms)": st.column_config.NumberColumn(format="%.0f"),
            "SLO p95 (ms)": st.column_config.NumberColumn(format="%.0f"),
            "Error rate": st.column_config.NumberColumn(format="percent"),
            "SLO error rate": st.column_config.NumberColumn(format="percent"),
        },
    )
    st.caption("Click a health cell (critical, alert, warning) to open the page that explains it, at the model, "
               "feature or group and the day it started; click any other cell of a row to open the model.")
    cells = event.selection.cells if event is not None else []
    if cells:
        position, column = cells[0]
        by_name = {r.model: r for r in overview.rows}
        _open(by_name[shown.iloc[position]["Model"]], column)

if __name__ == "__main__":
    page(render, "Fleet overview")
