"""Pure figure builders: DataFrame in, ``go.Figure`` out. Nothing here reads a store."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def speed_trend(df: pd.DataFrame, *, title: str = "City mean speed (km/h)") -> go.Figure:
    fig = go.Figure()
    if len(df):
        fig.add_trace(
            go.Scatter(x=df["minute"], y=df["speed_kmh"], mode="lines", name="speed",
                       line={"color": "#38bdf8", "width": 2})
        )
    fig.update_layout(
        title=title,
        template="plotly_dark",
        margin={"l": 40, "r": 10, "t": 40, "b": 30},
        height=320,
        paper_bgcolor="#0f172a",
        plot_bgcolor="#0f172a",
        xaxis_title="event time (UTC)",
        uirevision="keep",
    )
    return fig
