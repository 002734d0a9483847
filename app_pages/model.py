"""Model detail: versions, who holds which stage, lineage, and staging against production."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from services.catalog.comparison import compare_metrics
from services.catalog.lineage_graph import LineageGraph, build_lineage_graph
from services.monitoring import health_chips
from services.settings import Settings
from services.stores.registry_records import Lineage, VersionInfo
from ui import backends
from ui.navigation import BY_PATH
from ui.notices import literal
from ui.page import page
from ui.tables import MISSING, format_time, show
from ui.why_views import why_links
from ui.widgets import model_names, model_picker

STATUS_ICONS = {"alert": ":material/error:", "warning": ":material/warning:"}
KIND_COLOURS = {"dataset": "#4C78A8", "run": "#F58518", "version": "#54A24B", "alias": "#B279A2"}


def _versions_table(versions: list[VersionInfo]) -> pd.DataFrame:
    table = pd.DataFrame([{
        "Version": v.version, "Aliases": ", ".join(f"@{a}" for a in v.aliases) or MISSING, "Stage (legacy)": v.stage,
        "Created": format_time(v.created), "Status": v.status, "Run": v.run_id or MISSING,
        "Description": v.description or MISSING,
    } for v in versions])
    # MLflow reports the string 'None' for versions never given a legacy stage.
    if table.empty or table["Stage (legacy)"].eq("None").all():
        return table.drop(columns="Stage (legacy)", errors="ignore")
    table["Stage (legacy)"] = table["Stage (legacy)"].replace({"None": MISSING})
    return table


def _lineage_figure(graph: LineageGraph) -> go.Figure:
    sources, targets = zip(*graph.edges, strict=True) if graph.edges else ((), ())
    fig = go.Figure(go.Sankey(
        arrangement="snap",
        node={"label": [n.label for n in graph.nodes], "pad": 18, "thickness": 14,
              "color": [KIND_COLOURS[n.kind] for n in graph.nodes]},
        link={"source": list(sources), "target": list(targets), "value": [1] * len(sources),
              "color": "rgba(160, 160, 160, 0.25)"},
    ))
    fig.update_layout(height=max(260, 34 * len(graph.nodes)), margin={"l": 8, "r": 8, "t": 8, "b": 8})
    return fig


def _lineage_detail(lin: Lineage) -> None:
    st.markdown(f"**Run** `{lin.run_id}` ({literal(lin.run_name)}) · **git commit** `{lin.git_commit or '—'}`"
                f" · **model id** `{lin.model_id or '—'}` · **parent run** `{lin.parent_run_id or '—'}`")
    left, right = st.columns(2)
    with left:
        show(pd.DataFrame(sorted(lin.params.items()), columns=["Parameter", "Value"]))
    with right:
        show(pd.DataFrame(sorted(lin.metrics.items()), columns=["Metric", "Value"]))
    show(pd.DataFrame([{"Dataset": d.name, "Digest": d.digest, "Source": d.source, "Source type": d.source_type,
                        "Context": d.context} for d in lin.datasets],
                      columns=["Dataset", "Digest", "Source", "Source type", "Context"]))
    if lin.tags:
        show(pd.DataFrame(sorted(lin.tags.items()), columns=["Tag", "Value"]))


def _comparison(settings: Settings, name: str, holders: dict[str, VersionInfo | None]) -> None:
    prod, staging = holders.get("Production"), holders.get("Staging")
    st.subheader("Staging against production")
    if prod is None or staging is None:
        st.info("A comparison needs both a Production and a Staging holder; this model has "
                f"{'no Production' if prod is None else 'no Staging'} holder.")
        return
    table = compare_metrics(backends.lineage(settings, name, staging.version).metrics,
                            backends.lineage(settings, name, prod.version).metrics)
    table = table.rename(columns={"metric": "Metric", "candidate": f"Staging v{staging.version}",
                                  "incumbent": f"Production v{prod.version}", "difference": "Difference",
                                  "candidate is": "Staging is"})
    show(table)


def _health(settings: Settings, name: str) -> None:
    """The model's health per dimension and its open alerts, each linking to the page that explains it."""
    if settings.model(name) is None:
        st.info("Not monitored: map its prediction log under `models:` in tower.yaml to see its health.")
        return
    chips = backends.health_chips(settings, name, {})
    overall = health_chips.worst(c.status for c in chips)
    st.subheader(f"Health: {overall}")
    for chip in chips:
        word = "no results" if chip.status == "unknown" else chip.label
        text = f"{chip.title}: {word} · {chip.text}"
        if chip.status in ("alert", "warning"):
            st.page_link(BY_PATH[chip.page].file, label=literal(text), icon=STATUS_ICONS[chip.status],
                         query_params=dict(chip.params))
        else:
            st.caption(literal(text))
    active = backends.alerts(settings, name, True)
    why_links(active)  # root cause (issue 14): "Why?" per drift or performance episode
    if not active.empty:
        st.page_link(BY_PATH["alerts"].file, label=f"All {len(active)} open alert(s) of {literal(name)}",
                     icon=":material/notifications:", query_params={"model": name})


def render(settings: Settings) -> None:
    name = model_picker(model_names(settings))
    if name is None:
        st.info("No registered models yet. Register a model in MLflow, or run `make seed` for the demo.")
        return
    model = backends.get_model(settings, name)
    versions = backends.list_versions(settings, name)
    holders = backends.stage_holders(settings, name)

    st.markdown(literal(model.description) or "_No description._")
    cols = st.columns(2 + len(holders))
    cols[0].metric("Owner", model.owner or "—")
    cols[1].metric("Versions", model.version_count)
    for col, (stage, holder) in zip(cols[2:], holders.items(), strict=True):
        col.metric(stage, f"v{holder.version}" if holder else "—")

    _health(settings, name)

    st.subheader("Versions")
    show(_versions_table(versions))

    st.subheader("Lineage")
    lineages = [backends.lineage(settings, name, v.version) for v in versions]
    st.caption("Training dataset → run → version → alias. Colours: datasets blue, runs orange, "
               "versions green, aliases purple.")
    st.plotly_chart(_lineage_figure(build_lineage_graph(lineages)))
    chosen = st.selectbox("Version details", [v.version for v in versions], format_func=lambda v: f"v{v}")
    _lineage_detail(next(lin for lin in lineages if lin.version == chosen))
    _comparison(settings, name, holders)


if __name__ == "__main__":
    page(render, "Model detail")
