"""The drift page's multivariate chart: the daily PCA reconstruction error inside its reference band.

Presentation only: the values, bands and verdicts are stored by `monitor run`
(``services.monitoring.multivariate``) and read by ``tower_reads.reconstruction_over_time``.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

BAND_COLOUR = "rgba(66, 133, 244, 0.15)"
LINE_COLOUR = "#1a73e8"
DRIFT_COLOUR = "#c5221f"


def reconstruction_figure(frame: pd.DataFrame) -> go.Figure:
    """Line of the daily reconstruction error, the band (lower, or 0 where the band has none, to
    upper) shaded behind it, and the days outside the band marked in red (hover: value and band)."""
    lower = frame["lower"].fillna(0.0)
    drifted = frame["drifted"].fillna(False).astype(bool)
    fig = go.Figure([
        go.Scatter(x=frame["day"], y=frame["upper"], mode="lines", line={"width": 0}, name="band (upper)",
                   hoverinfo="skip", showlegend=False),
        go.Scatter(x=frame["day"], y=lower, mode="lines", line={"width": 0}, fill="tonexty", fillcolor=BAND_COLOUR,
                   name="reference band (mean ± 3σ)", hoverinfo="skip"),
        go.Scatter(x=frame["day"], y=frame["value"], mode="lines+markers", name="reconstruction error",
                   line={"color": LINE_COLOUR}, customdata=frame[["lower", "upper"]].to_numpy(),
                   hovertemplate="%{x|%Y-%m-%d}: %{y:.4g}<br>band %{customdata[0]:.4g} – %{customdata[1]:.4g}"
                                 "<extra></extra>"),
        go.Scatter(x=frame["day"][drifted], y=frame["value"][drifted], mode="markers", name="outside the band",
                   marker={"color": DRIFT_COLOUR, "size": 10, "symbol": "x"}, hoverinfo="skip"),
    ])
    fig.update_layout(height=300, margin={"t": 20}, xaxis_title="day (UTC)", yaxis_title="mean reconstruction error",
                      legend={"orientation": "h", "y": -0.3})
    return fig
