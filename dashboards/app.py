"""The Dash screen. Callbacks are thin: query the store, build a figure, return it."""

from __future__ import annotations

import datetime as dt

import dash
from dash import Input, Output, dcc, html

from config.settings import Settings
from dashboards import figures
from store import queries
from store.base import Store, StoreError


def _fmt_ts(epoch: int) -> str:
    if not epoch:
        return "no data yet"
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def create_app(store: Store, settings: Settings) -> dash.Dash:
    app = dash.Dash(
        __name__,
        title="citybrain",
        serve_locally=True,
        update_title=None,
    )
    tile = {"background": "#1e293b", "padding": "16px", "borderRadius": "8px", "minWidth": "220px"}
    app.layout = html.Div(
        style={"background": "#0f172a", "color": "#e2e8f0", "fontFamily": "sans-serif",
               "minHeight": "100vh", "padding": "16px"},
        children=[
            html.H2("citybrain: the city, live"),
            html.Div(
                style={"display": "flex", "gap": "16px", "marginBottom": "16px"},
                children=[
                    html.Div(style=tile, children=[html.Div("Readings stored"),
                                                   html.H1("…", id="kpi-readings")]),
                    html.Div(style=tile, children=[html.Div("Sensors reporting"),
                                                   html.H1("…", id="kpi-sensors")]),
                    html.Div(style=tile, children=[html.Div("Indicators"),
                                                   html.H1("…", id="kpi-indicators")]),
                    html.Div(style=tile, children=[html.Div("Newest data (event time)"),
                                                   html.H3("…", id="kpi-newest")]),
                ],
            ),
            dcc.Graph(id="speed-trend", config={"displaylogo": False}),
            html.Div(id="status", style={"color": "#f87171"}),
            dcc.Interval(id="tick", interval=int(settings.dashboard_refresh_s * 1000)),
        ],
    )

    @app.callback(
        Output("kpi-readings", "children"),
        Output("kpi-sensors", "children"),
        Output("kpi-indicators", "children"),
        Output("kpi-newest", "children"),
        Output("speed-trend", "figure"),
        Output("status", "children"),
        Input("tick", "n_intervals"),
    )
    def refresh(_n: int | None) -> tuple:
        try:
            counts = queries.overview_counts(store)
            trend = queries.city_speed_trend(store)
            n_ind = queries.indicator_count(store)
        except StoreError as exc:
            return dash.no_update, dash.no_update, dash.no_update, dash.no_update, \
                dash.no_update, f"store error: {exc}"
        return (
            f"{counts['readings']:,}",
            f"{counts['sensors']:,}",
            f"{n_ind:,}",
            _fmt_ts(counts["newest"]),
            figures.speed_trend(trend),
            "",
        )

    return app
