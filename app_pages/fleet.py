"""Fleet overview: every registered model, its stage holders, traffic and latency against its SLO."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from services.catalog import fleet
from services.settings import Settings
from ui import backends
from ui.notices import literal, show_error
from ui.page import page

WINDOW_DAYS = 7
HEALTH_LABELS = {"alert": "🔴 alert", "warning": "🟠 warning", "ok": "🟢 ok", "unknown": "⚪ no results"}


def _table(rows: tuple[fleet.FleetRow, ...]) -> pd.DataFrame:
    return pd.DataFrame([{
        "Model": r.model,
        "Health": HEALTH_LABELS.get(r.health, r.health),
        "Status": r.status,
        "Production": r.production or "—",
        "Staging": r.staging or "—",
        "Owner": r.owner or "—",
        "Last change": r.last_change,
        "Requests (7 d)": r.requests_7d,
        "Traffic per day": list(r.traffic_by_day),
        "p95 (ms)": r.p95_ms,
        "SLO p95 (ms)": r.slo_p95_ms,
        "Error rate": r.error_rate,
        "SLO error rate": r.slo_error_rate,
        "Why": " ".join(r.health_reasons),
        "Problem": r.problem or "",
    } for r in rows])


def render(settings: Settings) -> None:
    st.title("Fleet overview")
    # Complete UTC days only: a partial current day would read as a traffic drop on every model.
    end = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=WINDOW_DAYS)
    with st.spinner("Reading the registry and the prediction logs…"):
        overview = fleet.fleet_overview(
            settings,
            load_models=lambda: backends.list_models(settings),
            load_summary=lambda m: backends.window_summary(settings, m, start, end),
            load_daily_requests=lambda m: fleet.requests_per_day(
                backends.traffic_by_day(settings, m, start, end), start, WINDOW_DAYS),
            load_health=lambda name: backends.latest_health(settings, name),
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
    owners = middle.multiselect("Owner", sorted({o for o in table["Owner"] if o != "—"}))
    problems_only = right.toggle("Problems only", help="SLO breaches, missing logs and no traffic")
    keep = pd.Series(True, index=table.index)
    if query:
        text = table["Model"] + " " + pd.Series([r.description for r in overview.rows])
        keep &= text.str.contains(query, case=False, regex=False)
    if owners:
        keep &= table["Owner"].isin(owners)
    if problems_only:
        keep &= (table["Status"] != fleet.OK) | (table["Health"] != HEALTH_LABELS["ok"])
    shown = table[keep].reset_index(drop=True)

    breaches = int((table["Status"] == fleet.BREACH).sum())
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Models", len(table))
    c2.metric("With open alerts", int((table["Health"] == HEALTH_LABELS["alert"]).sum()))
    c3.metric("Over their SLO", breaches)
    c4.metric("Requests (7 d)", f"{int(table['Requests (7 d)'].fillna(0).sum()):,}")

    event = st.dataframe(
        shown, hide_index=True, on_select="rerun", selection_mode="single-row", key="fleet_table",
        column_config={
            "Last change": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "Traffic per day": st.column_config.LineChartColumn(y_min=0),
            "p95 (ms)": st.column_config.NumberColumn(format="%.0f"),
            "SLO p95 (ms)": st.column_config.NumberColumn(format="%.0f"),
            "Error rate": st.column_config.NumberColumn(format="percent"),
            "SLO error rate": st.column_config.NumberColumn(format="percent"),
        },
    )
    st.caption("Click a row to open the model. Click a column header to sort.")
    selected = event.selection.rows if event is not None else []
    if selected:
        st.switch_page("app_pages/model.py", query_params={"model": shown.loc[selected[0], "Model"]})


if __name__ == "__main__":
    page(render)
