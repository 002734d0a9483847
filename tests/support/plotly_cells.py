"""Read a heat map the way a viewer sees it: the colour of each cell, from a figure's JSON."""

from __future__ import annotations

from typing import Any

from plotly.colors import sample_colorscale


def heatmap_trace(figure: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in figure["data"] if t.get("type") == "heatmap")


def cell_colour(figure: dict[str, Any], z: float) -> str:
    """The colour a heat-map value gets: its trace's scale and range, or its colour axis's (plotly express)."""
    trace = heatmap_trace(figure)
    axis = figure.get("layout", {}).get(trace.get("coloraxis", ""), {})
    scale = trace.get("colorscale") or axis["colorscale"]
    low = trace.get("zmin", axis.get("cmin"))
    high = trace.get("zmax", axis.get("cmax"))
    position = min(1.0, max(0.0, (z - low) / (high - low)))
    return sample_colorscale(scale, [position])[0]
