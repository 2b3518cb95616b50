"""The Dash screen: one live overview of the city, district and sensor pages, time travel.

``create_app(store, settings)`` builds it (``citybrain hub`` / ``citybrain dashboard`` serve it).
Callbacks are thin: ask :mod:`dashboards.data` for the city at a moment (one shared, cached
snapshot per refresh), hand it to :mod:`dashboards.figures`, return the result. Every asset is
served by Dash itself (``serve_locally``): the page loads nothing from the internet.

Routes: ``/`` overview, ``/district/<id>``, ``/sensor/<id>``. The view's moment is ``asof``
(``None`` = live); the time slider picks minutes before the newest data, Play steps forward a
minute per refresh, Live returns to now.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

import dash
import numpy as np
import pandas as pd
from dash import ALL, Input, Output, State, ctx, dcc, html

from config.city import load_city
from config.domains import KIND_DOMAIN, KINDS
from config.settings import Settings
from dashboards import auth, figures
from dashboards.actions import ActionPublisher, ActionPublishError, failure_text
from dashboards.data import (
    MAIN_METRIC,
    FreshnessCache,
    Geometry,
    QueryPool,
    ResultCache,
    Snapshot,
    SnapshotCache,
    TrendCache,
    WindowCache,
    snapshot,
)
from dashboards.i18n import AQI_COLOURS, POLLUTANT_NAMES, aqi_level_name, t
from store import queries
from store.base import Store, StoreError

log = logging.getLogger("citybrain.dashboard")

S: dict[str, dict[str, Any]] = {
    "page": {"background": figures.BG, "color": figures.TEXT, "fontFamily": figures.FONT,
             "height": "100vh", "overflow": "hidden", "display": "flex",
             "flexDirection": "column", "margin": 0},
    "header": {"display": "flex", "alignItems": "center", "gap": "14px", "padding": "8px 14px",
               "background": figures.PANEL, "borderBottom": f"1px solid {figures.GRID}",
               "height": "44px", "flex": "0 0 auto"},
    "btn": {"background": "#1e293b", "color": figures.TEXT, "border": "1px solid #334155",
            "borderRadius": "6px", "padding": "4px 10px", "cursor": "pointer",
            "fontSize": "13px"},
    "tile": {"background": figures.PANEL, "borderRadius": "8px", "padding": "8px 12px 2px",
             "display": "flex", "flexDirection": "column", "minWidth": 0,
             "borderTop": "3px solid #334155"},
    "tile_label": {"fontSize": "12px", "color": figures.MUTED, "textTransform": "uppercase",
                   "letterSpacing": "0.04em"},
    "tile_value": {"fontSize": "30px", "fontWeight": 700, "lineHeight": "36px"},
    "tile_sub": {"fontSize": "12px", "color": figures.MUTED, "whiteSpace": "nowrap",
                 "overflow": "hidden", "textOverflow": "ellipsis"},
}
#: connections to a ClickHouse server the refresh's queries run on at once
QUERY_CONNECTIONS = 4
#: what an alert of the feed shows (alert_item)
FEED_COLUMNS = ("alert_id", "district", "type", "state", "severity", "peak", "opened_at",
                "acked_by")
KPIS = ("congestion", "aqi", "water", "grid", "alerts", "avail")
KPI_LABEL = {"congestion": "kpi_congestion", "aqi": "kpi_aqi", "water": "kpi_water",
             "grid": "kpi_grid", "alerts": "kpi_alerts", "avail": "kpi_avail"}
KPI_COLOUR = {"congestion": "#f97316", "aqi": "#22d3ee", "water": "#38bdf8", "grid": "#facc15",
              "alerts": "#f43f5e", "avail": "#22c55e"}
SEV_COLOURS = {1: "#eab308", 2: "#f97316", 3: "#ef4444"}
GRAPH_CONFIG: Any = {"displaylogo": False, "displayModeBar": False}
MAP_CONFIG: Any = {"displaylogo": False, "displayModeBar": True, "scrollZoom": True,
                   "modeBarButtonsToRemove": ["select2d", "lasso2d", "toImage"]}


def fmt_time(epoch: int | float, *, seconds: bool = True) -> str:
    if not epoch:
        return "—"
    f = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC).strftime(f) + " UTC"


def fmt_num(x: float, spec: str) -> str:
    return "—" if x is None or not np.isfinite(x) else format(x, spec)


def fmt_age(seconds: float, lang: str) -> str:
    if not np.isfinite(seconds):
        return "—"
    s = int(seconds)
    txt = f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h"
    return f"{txt}{t('ago', lang)}" if lang == "zh" else f"{txt} {t('ago', lang)}"


# --- layout -------------------------------------------------------------------------------------
def header(lang: str, user: tuple[str, str], demo: bool) -> list:
    name, role = user
    who: list = []
    if not demo:
        who = [html.Span(f"{t('signed_in', lang)} {name} ({role})",
                         style={"fontSize": "12px", "color": figures.MUTED}),
               html.A(t("logout", lang), href="/logout", style={"color": "#93c5fd",
                                                                "fontSize": "12px"})]
    return [
        dcc.Link(t("title", lang), href="/", id="home-link",
                 style={"fontWeight": 700, "fontSize": "18px", "color": figures.TEXT,
                        "textDecoration": "none", "whiteSpace": "nowrap"}),
        html.Div(id="fresh", style={"fontSize": "13px", "whiteSpace": "nowrap"}),
        html.Div(style={"flex": "1 1 auto"}),
        html.Span(id="view-label", style={"fontSize": "13px", "whiteSpace": "nowrap"}),
        html.Div(dcc.Slider(id="time-back", min=0, max=60, step=1, value=0, marks=None,
                            included=False, updatemode="mouseup", reverse=True,
                            allow_direct_input=False,
                            tooltip={"placement": "bottom", "always_visible": False}),
                 style={"width": "320px"}, title="minutes before the newest data"),
        html.Button(t("play", lang), id="play-btn", n_clicks=0, style=S["btn"]),
        html.Button(t("live", lang), id="live-btn", n_clicks=0,
                    style={**S["btn"], "background": "#166534"}),
        html.Button(t("lang_switch", lang), id="lang-btn", n_clicks=0, style=S["btn"]),
        *who,
    ]


def kpi_tile(key: str, lang: str) -> html.Div:
    return html.Div(id=f"tile-{key}", style=S["tile"], children=[
        html.Div(t(KPI_LABEL[key], lang), style=S["tile_label"]),
        html.Div("…", id=f"kpi-{key}", style=S["tile_value"]),
        html.Div("", id=f"kpi-{key}-sub", style=S["tile_sub"]),
        dcc.Graph(id=f"spark-{key}", config=GRAPH_CONFIG,
                  style={"height": "46px"}, figure=figures.sparkline(pd.DataFrame())),
    ])


def overview_layout(lang: str) -> html.Div:
    return html.Div(style={"display": "grid", "gridTemplateColumns": "1fr 640px", "gap": "10px",
                           "padding": "10px", "flex": "1 1 auto", "minHeight": 0}, children=[
        html.Div(style={"background": figures.BG, "borderRadius": "8px", "minHeight": 0,
                        "border": f"1px solid {figures.GRID}"}, children=[
            dcc.Graph(id={"type": "navmap", "page": "overview"}, config=MAP_CONFIG,
                style={"height": "100%"}, figure=figures.sparkline(pd.DataFrame())),
        ]),
        html.Div(style={"display": "flex", "flexDirection": "column", "gap": "10px",
                        "minHeight": 0}, children=[
            html.Div(style={"display": "grid", "gridTemplateColumns": "1fr 1fr",
                            "gap": "10px"}, children=[kpi_tile(k, lang) for k in KPIS]),
            html.Div(style={**S["tile"], "flex": "1 1 auto", "minHeight": 0,
                            "borderTop": "3px solid #f43f5e"}, children=[
                html.Div(t("alert_feed", lang), style=S["tile_label"]),
                html.Div(id="alert-feed", style={"overflowY": "auto", "flex": "1 1 auto",
                                                 "minHeight": 0, "marginTop": "6px"}),
            ]),
        ]),
    ])


def page_layout(lang: str) -> html.Div:
    """District and sensor pages: filled by the page refresh callback."""
    return html.Div(id="page-body", style={"padding": "10px 16px", "flex": "1 1 auto",
                                           "minHeight": 0, "overflowY": "auto"})


# --- pieces -------------------------------------------------------------------------------------
def alert_item(a: Any, lang: str, geo: Geometry, *, can_act: bool, live: bool) -> html.Div:
    sev = int(a.severity)
    state = str(a.state)
    buttons: list = []
    if can_act and live and state != "resolved":
        if state == "open":
            buttons.append(html.Button(t("ack", lang), id={"type": "ack", "id": a.alert_id},
                                       n_clicks=0, className="ack-btn", style=S["btn"]))
        buttons.append(html.Button(t("resolve", lang), id={"type": "resolve", "id": a.alert_id},
                                   n_clicks=0, className="resolve-btn", style=S["btn"]))
    who = f" · {t('by', lang)} {a.acked_by}" if a.acked_by and state != "open" else ""
    return html.Div(className=f"alert alert-{state}", id=f"alert-{a.alert_id}", style={
        "display": "flex", "alignItems": "center", "gap": "8px", "padding": "6px 8px",
        "borderLeft": f"4px solid {SEV_COLOURS.get(sev, '#64748b')}",
        "background": "#0f172a" if state != "resolved" else "transparent",
        "opacity": 1 if state != "resolved" else 0.55, "marginBottom": "4px",
        "borderRadius": "4px"}, children=[
        html.Div(style={"flex": "1 1 auto", "minWidth": 0}, children=[
            html.Div([
                html.B(f"{t('type_' + str(a.type), lang)} · "),
                dcc.Link(geo.district_name(str(a.district), lang), href=f"/district/{a.district}",
                         style={"color": "#93c5fd"}),
                html.Span(f" · {t('sev_' + str(sev), lang)}",
                          style={"color": SEV_COLOURS.get(sev, figures.MUTED)}),
            ], style={"fontSize": "13px"}),
            html.Div(f"{fmt_time(a.opened_at, seconds=False)} · "
                     f"{t('state_' + state, lang)}{who} · peak {float(a.peak):.2f}",
                     className="alert-state", style={"fontSize": "11px", "color": figures.MUTED}),
        ]),
        *buttons,
    ])


def kpi_values(snap: Snapshot, lang: str, standard: str) -> dict[str, tuple[Any, Any, str]]:
    """Per KPI tile: (value, sub-line, accent colour)."""
    by = snap.active_by_severity
    n_active = sum(by.values())
    level = snap.aqi_level
    primary = ", ".join(POLLUTANT_NAMES.get(p, p) for p in snap.aqi_primary.split(",") if p)
    water_alerts = snap.active_alerts
    water_alerts = water_alerts[water_alerts["type"] == "water"] if len(water_alerts) else water_alerts
    water_state = (f"{t('alert', lang)} ({len(water_alerts)})" if len(water_alerts)
                   else t("normal", lang))
    power_alerts = snap.active_alerts
    power_alerts = power_alerts[power_alerts["type"] == "power"] if len(power_alerts) else power_alerts
    return {
        "congestion": (fmt_num(snap.ci, ".2f"),
                       " · ".join(f"{d} {v:.2f}" for d, v in sorted(
                           snap.ci_district.items(), key=lambda kv: -kv[1])[:3] if v == v),
                       "#f97316"),
        "aqi": (html.Span([fmt_num(snap.aqi, ".0f"), html.Span(
                    f" {aqi_level_name(level, standard, lang)}",
                    style={"fontSize": "15px", "color": AQI_COLOURS[level]})]),
                f"{t('primary', lang)}: {primary or '—'} · {standard.upper()}",
                AQI_COLOURS[level]),
        "water": (water_state,
                  f"{t('inflow', lang)} {fmt_num(snap.water_inflow, ',.0f')} m³/h · "
                  f"{t('pressure', lang)} {fmt_num(snap.water_pressure, '.2f')} bar",
                  "#ef4444" if len(water_alerts) else "#38bdf8"),
        "grid": (f"{fmt_num(snap.grid_load, ',.0f')} MW",
                 f"{t('voltage', lang)} {fmt_num(snap.grid_voltage_min, '.2f')} kV"
                 + (f" · {t('alert', lang)} ({len(power_alerts)})" if len(power_alerts) else ""),
                 "#ef4444" if len(power_alerts) else "#facc15"),
        "alerts": (html.Span([str(n_active)] + [html.Span(
                        f" {by.get(s, 0)} {t('sev_' + str(s), lang)}",
                        style={"fontSize": "14px", "color": SEV_COLOURS[s]}) for s in (3, 2, 1)]),
                   "", "#f43f5e" if n_active else "#22c55e"),
        "avail": (f"{snap.availability:.1f} %",
                  f"{t('reporting', lang)} {snap.reporting:,}/{snap.total_sensors:,} · "
                  f"{t('faulty', lang)} {snap.faulty}",
                  "#22c55e" if snap.availability >= 95 else "#f97316"),
    }


# --- the app ------------------------------------------------------------------------------------
def create_app(store: Store, settings: Settings) -> dash.Dash:
    city = load_city(settings.city_file)
    geo = Geometry.from_city(city)
    from models.params import load_params

    standard = load_params().aqi.standard
    users = auth.load_users(settings.dashboard_users_file) if settings.dashboard_users_file else None
    demo = not users
    refresh_s = settings.dashboard_refresh_s
    cache = SnapshotCache(ttl_s=max(0.2, refresh_s * 0.5))
    trends = TrendCache()
    windows = WindowCache()
    fresh = FreshnessCache()
    results = ResultCache()
    pool = QueryPool.for_store(store, QUERY_CONNECTIONS)

    app = dash.Dash(
        __name__, title="citybrain", serve_locally=True, update_title=None,  # type: ignore[arg-type]
        suppress_callback_exceptions=True,
    )
    app.scripts.config.serve_locally = True
    app.css.config.serve_locally = True
    secret = settings.dashboard_secret_key.get_secret_value() if settings.dashboard_secret_key \
        else None
    auth.install(app.server, users, secret)
    app.server.config["CITYBRAIN_CACHE"] = cache
    app.server.config["CITYBRAIN_RESULTS"] = results  # the bench clears it: every query asked

    def get_snapshot(asof: int | None) -> Snapshot:
        key = ("live",) if asof is None else ("at", int(asof))
        return cache.get(key, lambda: snapshot(
            store, geo, at=asof, standard=standard, stale_s=settings.dashboard_stale_s,
            trends=trends, pool=pool, windows=windows, fresh_cache=fresh, results=results))

    app.server.config["CITYBRAIN_SNAPSHOT"] = get_snapshot

    app.layout = html.Div(style=S["page"], children=[
        dcc.Location(id="url"),
        dcc.Store(id="lang", storage_type="local", data=settings.dashboard_lang),
        dcc.Store(id="asof", data=None),
        dcc.Store(id="playing", data=False),
        dcc.Store(id="alert-rev", data=0),
        dcc.Interval(id="tick", interval=int(refresh_s * 1000)),
        html.Div(id="banner"),
        html.Div(id="header", style=S["header"], children=header(
            settings.dashboard_lang, auth.DEMO_USER, demo)),
        html.Div(id="stale", style={"flex": "0 0 auto"}),
        html.Div(id="page", style={"flex": "1 1 auto", "minHeight": 0, "display": "flex",
                                   "flexDirection": "column"}),
        html.Div(id="action-msg", style={"position": "fixed", "bottom": "8px", "left": "12px",
                                         "color": "#fca5a5", "fontSize": "13px"}),
    ])

    # --- page and header ------------------------------------------------------------------
    @app.callback(
        Output("page", "children"), Output("header", "children"), Output("banner", "children"),
        Input("url", "pathname"), Input("lang", "data"),
    )
    def render(pathname: str | None, lang: str | None) -> tuple:
        lang = lang if lang in ("en", "zh") else "en"
        user = auth.current_user()
        banner: Any = None
        if demo:
            banner = html.Div(t("demo_banner", lang), id="demo-banner", style={
                "background": "#854d0e", "color": "#fef9c3", "padding": "3px 14px",
                "fontSize": "13px", "textAlign": "center"})
        elif user[1] != "operator":
            banner = html.Div(t("viewer_banner", lang), id="viewer-banner", style={
                "background": "#1e3a8a", "color": "#dbeafe", "padding": "3px 14px",
                "fontSize": "13px", "textAlign": "center"})
        path = pathname or "/"
        page = overview_layout(lang) if path in ("/", "") else page_layout(lang)
        return page, header(lang, user, demo), banner

    @app.callback(Output("lang", "data"), Input("lang-btn", "n_clicks"), State("lang", "data"),
                  prevent_initial_call=True)
    def switch_lang(n: int | None, lang: str | None) -> str:
        if not n:
            return dash.no_update  # type: ignore[return-value]
        return "en" if lang == "zh" else "zh"

    # --- time control ---------------------------------------------------------------------
    @app.callback(
        Output("asof", "data"), Output("playing", "data"), Output("time-back", "value"),
        Output("play-btn", "children"),
        Input("time-back", "value"), Input("live-btn", "n_clicks"), Input("play-btn", "n_clicks"),
        Input("tick", "n_intervals"),
        State("asof", "data"), State("playing", "data"), State("lang", "data"),
        prevent_initial_call=True,
    )
    def time_control(back: int | None, _live: int, _play: int, _tick: int, asof: int | None,
                     playing: bool, lang: str | None) -> tuple:
        lang = lang or "en"
        trig = ctx.triggered_id
        nu = dash.no_update
        if trig == "live-btn":
            return None, False, 0, t("play", lang)
        newest = max(queries.newest_ts(store).values() or [0])
        if trig == "time-back":
            if not back:
                return None, False, nu, t("play", lang)
            return int(newest - int(back) * 60), playing, nu, nu
        if trig == "play-btn":
            if playing:
                return nu, False, nu, t("play", lang)
            start = asof if asof is not None else newest - 3600
            return int(start), True, nu, t("pause", lang)
        if trig == "tick" and playing and asof is not None:
            nxt = int(asof) + 60
            if nxt >= newest:
                return None, False, 0, t("play", lang)
            return nxt, True, max(0, (newest - nxt) // 60), nu
        return nu, nu, nu, nu

    # --- overview refresh -----------------------------------------------------------------
    @app.callback(
        Output({"type": "navmap", "page": "overview"}, "figure"),
        *[Output(f"kpi-{k}", "children") for k in KPIS],
        *[Output(f"kpi-{k}-sub", "children") for k in KPIS],
        *[Output(f"tile-{k}", "style") for k in KPIS],
        *[Output(f"spark-{k}", "figure") for k in KPIS],
        Output("alert-feed", "children"),
        Input("tick", "n_intervals"), Input("asof", "data"), Input("lang", "data"),
        Input("alert-rev", "data"), Input("url", "pathname"),
    )
    def refresh_overview(_n: int | None, asof: int | None, lang: str | None, _rev: int,
                         pathname: str | None) -> tuple:
        if (pathname or "/") not in ("/", ""):
            raise dash.exceptions.PreventUpdate
        return overview_outputs(get_snapshot(asof), lang or "en")

    outputs: dict[tuple, tuple[Snapshot, tuple]] = {}
    feeds: dict[tuple, list] = {}
    outputs_lock = threading.Lock()

    def overview_outputs(snap: Snapshot, lang: str) -> tuple:
        """The overview's outputs for a snapshot, built once per snapshot, language and role
        (every browser showing the same moment gets the same figures)."""
        key = (id(snap), lang, auth.may_act())
        with outputs_lock:
            hit = outputs.get(key)
        if hit is not None and hit[0] is snap:
            return hit[1]
        out = build_overview(snap, lang)
        with outputs_lock:
            outputs[key] = (snap, out)
            while len(outputs) > 8:
                outputs.pop(next(iter(outputs)))
        return out

    def build_overview(snap: Snapshot, lang: str) -> tuple:
        vals = kpi_values(snap, lang, standard)
        sparks = {
            "congestion": figures.sparkline(snap.ci_trend, colour=KPI_COLOUR["congestion"]),
            "aqi": figures.sparkline(snap.aqi_trend, colour=KPI_COLOUR["aqi"], fmt=".0f"),
            "water": figures.sparkline(snap.water_trend, colour=KPI_COLOUR["water"], fmt=",.0f"),
            "grid": figures.sparkline(snap.grid_trend, colour=KPI_COLOUR["grid"], fmt=",.0f"),
            "alerts": figures.sparkline(snap.alerts_trend, colour=KPI_COLOUR["alerts"], fmt=".0f"),
            "avail": figures.sparkline(snap.avail_trend, colour=KPI_COLOUR["avail"], fmt=".1f",
                                       y_range=(0, 105)),
        }
        can_act = auth.may_act()
        head = snap.alerts.head(60)
        # the feed changes when an alert does, not at every refresh: built once per content
        fkey = (lang, can_act, snap.live, *(tuple(head[c].to_numpy(dtype=object).tolist())
                                            for c in FEED_COLUMNS if c in head.columns))
        with outputs_lock:
            feed = feeds.get(fkey)
        if feed is None:
            feed = [alert_item(a, lang, geo, can_act=can_act, live=snap.live)
                    for a in head.itertuples()]
            if not feed:
                feed = [html.Div(t("no_alerts", lang), style={"color": figures.MUTED})]
            with outputs_lock:
                feeds[fkey] = feed
                while len(feeds) > 8:
                    feeds.pop(next(iter(feeds)))
        return (
            figures.city_map(geo, snap, lang=lang),
            *[vals[k][0] for k in KPIS],
            *[vals[k][1] for k in KPIS],
            *[{**S["tile"], "borderTop": f"3px solid {vals[k][2]}"} for k in KPIS],
            *[sparks[k] for k in KPIS],
            feed,
        )

    app.server.config["CITYBRAIN_OVERVIEW"] = lambda asof=None, lang="en": overview_outputs(
        get_snapshot(asof), lang)

    # --- freshness clock (every page) -----------------------------------------------------
    @app.callback(
        Output("fresh", "children"), Output("stale", "children"), Output("view-label", "children"),
        Output("time-back", "max"),
        Input("tick", "n_intervals"), Input("asof", "data"), Input("lang", "data"),
        Input("header", "children"),
    )
    def refresh_clock(_n: int | None, asof: int | None, lang: str | None, _h: Any) -> tuple:
        lang = lang or "en"
        try:
            snap = get_snapshot(asof)
        except StoreError as exc:
            return "", _stale_box(f"{t('store_error', lang)}: {exc}"), "", dash.no_update
        if not snap.newest:
            return t("no_data", lang), None, "", dash.no_update
        fresh = html.Span([
            f"{t('newest', lang)}: ", html.B(fmt_time(snap.newest), id="newest-ts"),
            f" · {t('arrived', lang)} {fmt_age(snap.lag_s, lang)}",
        ], style={"color": "#f87171" if snap.stale else figures.MUTED})
        stale = _stale_box(f"{t('stale', lang)} {fmt_age(snap.lag_s, lang).replace(t('ago', lang), '').strip()}") \
            if snap.stale and snap.live else None
        view = html.Span(f"{t('history', lang)}: {fmt_time(snap.t, seconds=False)}",
                         id="view-history", style={"color": "#fde047", "fontWeight": 600}) \
            if not snap.live else html.Span(f"● {t('live', lang)}", id="view-live",
                                            style={"color": "#4ade80", "fontWeight": 600})
        span = max(60, int((snap.newest - _oldest(store, snap.newest)) // 60))
        return fresh, stale, view, span

    # --- navigation from maps -------------------------------------------------------------
    @app.callback(
        Output("url", "pathname"),
        Input({"type": "navmap", "page": ALL}, "clickData"),
        prevent_initial_call=True,
    )
    def navigate(clicks: list) -> str:
        trig = ctx.triggered_id
        if not trig:
            raise dash.exceptions.PreventUpdate
        data = ctx.triggered[0]["value"] if ctx.triggered else None
        if not data or not data.get("points"):
            raise dash.exceptions.PreventUpdate
        cd = data["points"][0].get("customdata")
        if isinstance(cd, list):
            cd = cd[0] if cd else None
        if not isinstance(cd, str):
            raise dash.exceptions.PreventUpdate
        if cd.startswith("district:"):
            return f"/district/{cd.split(':', 1)[1]}"
        if cd in geo.sensor_pos:
            return f"/sensor/{cd}"
        raise dash.exceptions.PreventUpdate

    # --- acknowledge / resolve ------------------------------------------------------------
    # every action also goes to the workers' alert state machines (dashboards/actions.py)
    publisher = ActionPublisher(settings)

    @app.callback(
        Output("alert-rev", "data"), Output("action-msg", "children"),
        Input({"type": "ack", "id": ALL}, "n_clicks"),
        Input({"type": "resolve", "id": ALL}, "n_clicks"),
        State("alert-rev", "data"), State("lang", "data"),
        prevent_initial_call=True,
    )
    def act(_acks: list, _res: list, rev: int | None, lang: str | None) -> tuple:
        trig = ctx.triggered_id
        if not trig or not ctx.triggered or not ctx.triggered[0]["value"]:
            raise dash.exceptions.PreventUpdate
        if not auth.may_act():
            return dash.no_update, t("no_permission", lang or "en")
        event = "acknowledged" if trig["type"] == "ack" else "resolved"
        try:
            record_action(store, str(trig["id"]), event, auth.current_user()[0], publisher)
        except ActionPublishError as exc:  # the row is written: the screen shows the action
            cache.clear()
            return (rev or 0) + 1, failure_text(exc, lang or "en")
        except (StoreError, ValueError) as exc:
            return dash.no_update, f"{t('store_error', lang or 'en')}: {exc}"
        cache.clear()
        return (rev or 0) + 1, ""

    # --- district and sensor pages --------------------------------------------------------
    @app.callback(
        Output("page-body", "children"),
        Input("tick", "n_intervals"), Input("asof", "data"), Input("lang", "data"),
        Input("url", "pathname"), Input("alert-rev", "data"),
    )
    def refresh_page(_n: int | None, asof: int | None, lang: str | None,
                     pathname: str | None, _rev: int) -> Any:
        lang = lang or "en"
        parts = (pathname or "/").strip("/").split("/")
        snap = get_snapshot(asof)
        if len(parts) == 2 and parts[0] == "district":
            return district_page(parts[1], snap, lang)
        if len(parts) == 2 and parts[0] == "sensor":
            return sensor_page(parts[1], snap, lang)
        return html.Div([html.H3(t("not_found", lang)), dcc.Link(t("back", lang), href="/")])

    def district_page(district: str, snap: Snapshot, lang: str) -> Any:
        if district not in set(geo.districts["district"]):
            return html.Div([html.H3(f"{t('not_found', lang)}: {district}"),
                             dcc.Link(t("back", lang), href="/")])
        name = geo.district_name(district, lang)
        lo, hi = snap.t - 3 * 3600, snap.t
        risk = queries.risk_trend(store, lo, hi, district=district)
        ci = queries.congestion_trend(store, snap.t - 3600, hi, district=district)
        members = geo.sensors[geo.sensors["district"] == district]
        util_ids = members[members["domain"] == "utility"]["sensor_id"].tolist()
        air_ids = members[members["kind"] == "air"]["sensor_id"].tolist()
        ut = queries.utility_trend(store, snap.t - 3600, hi, sensors=util_ids) if util_ids \
            else pd.DataFrame()
        env = queries.environment_trend(store, snap.t - 3600, hi, sensors=air_ids) if air_ids \
            else pd.DataFrame()
        if len(env):
            env = env.assign(minute=env["bucket"],
                             pm25=env["pm25_sum"] / env["pm25_n"].where(env["pm25_n"] > 0))
        r = snap.risk[snap.risk["district"] == district] if len(snap.risk) else snap.risk
        rv = float(r["risk"].iloc[0]) if len(r) else float("nan")
        colour = str(r["colour"].iloc[0]) if len(r) else "none"
        status = snap.status[members.index.to_numpy()]
        summary = (members.assign(status=np.array(["ok", "anomalous", "faulty", "silent"])[status])
                   .groupby(["kind", "status"]).size().unstack(fill_value=0))
        al = snap.alerts[snap.alerts["district"] == district] if len(snap.alerts) else snap.alerts
        worst = members.assign(score=snap.score[members.index.to_numpy()]).sort_values(
            "score", ascending=False).head(12)
        can_act = auth.may_act()
        return html.Div(id="district-page", children=[
            html.Div(style={"display": "flex", "alignItems": "baseline", "gap": "16px"}, children=[
                dcc.Link(t("back", lang), href="/", id="back-link", style={"color": "#93c5fd"}),
                html.H2(f"{name} ({district})", id="district-title", style={"margin": "4px 0"}),
                html.Span(f"{t('risk', lang)} {fmt_num(rv, '.0f')} · {t('risk_' + colour, lang)}",
                          style={"color": figures.RISK_COLOURS.get(colour, figures.MUTED),
                                 "fontSize": "18px", "fontWeight": 600}),
                html.Span(f"{t('kpi_congestion', lang)} "
                          f"{fmt_num(snap.ci_district.get(district, float('nan')), '.2f')} · AQI "
                          f"{fmt_num(snap.aqi_district.get(district, float('nan')), '.0f')}",
                          style={"color": figures.MUTED}),
            ]),
            html.Div(style={"display": "grid", "gridTemplateColumns": "560px 1fr 1fr",
                            "gap": "10px"}, children=[
                dcc.Graph(id={"type": "navmap", "page": "district"},
                          figure=figures.city_map(geo, snap, lang=lang, districts=[district],
                                                  height=420), config=GRAPH_CONFIG),
                html.Div([
                    dcc.Graph(figure=figures.risk_area(risk, lang=lang, height=210),
                              config=GRAPH_CONFIG),
                    dcc.Graph(figure=figures.time_series(
                        [(t("kpi_congestion", lang), ci, "ci", "#f97316")],
                        title=t("kpi_congestion", lang), height=200), config=GRAPH_CONFIG),
                ]),
                html.Div([
                    dcc.Graph(figure=figures.time_series(
                        [("PM2.5 µg/m³", env, "pm25", "#22d3ee")] if len(env) else [],
                        title="PM2.5", height=205), config=GRAPH_CONFIG),
                    dcc.Graph(figure=figures.time_series(
                        [("load MW", ut, "load_mw", "#facc15"),
                         ("pressure bar", ut, "pressure_bar", "#38bdf8")] if len(ut) else [],
                        title=f"{t('kpi_grid', lang)} / {t('pressure', lang)}", height=205),
                        config=GRAPH_CONFIG),
                ]),
            ]),
            html.Div(style={"display": "grid", "gridTemplateColumns": "1fr 1fr 1fr",
                            "gap": "10px"}, children=[
                html.Div([html.H4(t("sensors", lang)), _table(summary.reset_index())]),
                html.Div([html.H4(t("score", lang)), html.Ul([
                    html.Li(dcc.Link(f"{row.sensor_id} ({row.kind}) "
                                     f"{float(row.score):.2f}",  # type: ignore[arg-type]
                                     href=f"/sensor/{row.sensor_id}",
                                     style={"color": "#93c5fd"}))
                    for row in worst.itertuples() if np.isfinite(float(row.score))  # type: ignore[arg-type]
                ], id="district-sensors")]),
                html.Div([html.H4(t("alerts", lang)), html.Div(
                    [alert_item(a, lang, geo, can_act=can_act, live=snap.live)
                     for a in al.itertuples()] or t("no_alerts", lang))]),
            ]),
        ])

    def sensor_page(sensor_id: str, snap: Snapshot, lang: str) -> Any:
        pos = geo.sensor_pos.get(sensor_id)
        if pos is None:
            return html.Div([html.H3(f"{t('not_found', lang)}: {sensor_id}"),
                             dcc.Link(t("back", lang), href="/")])
        row = geo.sensors.iloc[pos]
        kind = str(row["kind"])
        domain = KIND_DOMAIN[kind]
        metrics = KINDS[domain][kind]
        series = queries.sensor_series(store, sensor_id, domain, metrics, snap.t, minutes=240)
        an = queries.sensor_anomalies(store, sensor_id, snap.t, minutes=240)
        hh = queries.sensor_health_history(store, sensor_id, snap.t, minutes=240)
        main = MAIN_METRIC.get(kind, metrics[0])
        band = _baseline_band(series, main)
        fault_marks = _fault_markers(an, hh, series, main)
        from models.health import flag_names

        graphs = [dcc.Graph(id="sensor-main", figure=figures.time_series(
            [(main, series, main, "#38bdf8")], title=f"{sensor_id} · {main}", height=330,
            band=(band, t("baseline", lang)),
            y2=(t("score", lang), an, "score"), threshold=0.9,
            markers=(t("fault_flags", lang), fault_marks)), config=GRAPH_CONFIG)]
        for m in metrics:
            if m != main and len(series) and series[m].notna().any():
                graphs.append(dcc.Graph(figure=figures.time_series(
                    [(m, series, m, "#a78bfa")], title=m, height=170), config=GRAPH_CONFIG))
        flags_now = int(snap.flags[pos])
        return html.Div(id="sensor-page", children=[
            html.Div(style={"display": "flex", "alignItems": "baseline", "gap": "16px"}, children=[
                dcc.Link(t("back", lang), href="/", id="back-link", style={"color": "#93c5fd"}),
                html.H2(f"{t('sensor', lang)} {sensor_id}", id="sensor-title",
                        style={"margin": "4px 0"}),
                dcc.Link(f"{geo.district_name(str(row['district']), lang)} ({row['district']})",
                         href=f"/district/{row['district']}", style={"color": "#93c5fd"}),
                html.Span(f"{t('kind', lang)}: {kind} · {t('status', lang)}: "
                          f"{t('status_' + ('ok', 'anomalous', 'faulty', 'silent')[int(snap.status[pos])], lang)}"
                          + (f" · {', '.join(flag_names(flags_now))}" if flags_now else ""),
                          style={"color": figures.MUTED}),
            ]),
            html.Div(graphs, style={"display": "grid", "gridTemplateColumns": "1fr",
                                    "gap": "6px"}),
        ])

    return app


def _stale_box(text: str) -> html.Div:
    return html.Div(text, id="stale-warning", style={
        "background": "#7f1d1d", "color": "#fee2e2", "padding": "4px 14px",
        "fontWeight": 700, "textAlign": "center"})


_OLDEST: dict[int, tuple[float, int]] = {}


def _oldest(store: Store, newest: int) -> int:
    """The oldest event time (cached for a minute: it only moves when data is dropped)."""
    key = id(store)
    hit = _OLDEST.get(key)
    if hit is None or time.monotonic() - hit[0] > 60:
        lo, _ = queries.data_span(store)
        hit = (time.monotonic(), lo or newest)
        _OLDEST[key] = hit
    return hit[1]


def _table(df: pd.DataFrame) -> html.Table:
    cell = {"padding": "2px 8px", "borderBottom": f"1px solid {figures.GRID}",
            "fontSize": "12px"}
    return html.Table([
        html.Thead(html.Tr([html.Th(str(c), style=cell) for c in df.columns])),
        html.Tbody([html.Tr([html.Td(str(v), style=cell) for v in r])
                    for r in df.itertuples(index=False)]),
    ])


def _baseline_band(series: pd.DataFrame, col: str, window: int = 30) -> pd.DataFrame:
    """A causal rolling median ± 3 scaled MADs of the series (what 'normal' looked like)."""
    if not len(series) or col not in series or series[col].isna().all():
        return pd.DataFrame({"ts": [], "lo": [], "hi": []})
    x = series[col].astype(float)
    med = x.rolling(window, min_periods=5).median()
    mad = (x - med).abs().rolling(window, min_periods=5).median() * 1.4826
    return pd.DataFrame({"ts": series["ts"], "lo": med - 3 * mad, "hi": med + 3 * mad})


def _fault_markers(an: pd.DataFrame, hh: pd.DataFrame, series: pd.DataFrame,
                   col: str) -> pd.DataFrame:
    from models.health import flag_names

    rows = []
    for df in (an, hh):
        if not len(df):
            continue
        for r in df[df["flags"] != 0].itertuples():
            rows.append((int(r.ts), ", ".join(flag_names(int(r.flags)))))  # type: ignore[arg-type]
    if not rows or not len(series):
        return pd.DataFrame({"ts": [], "y": [], "text": []})
    m = pd.DataFrame(rows, columns=["ts", "text"]).sort_values("ts")
    s = series[["ts", col]].sort_values("ts")
    m = pd.merge_asof(m, s, on="ts", direction="nearest")
    return m.rename(columns={col: "y"})


def record_action(store: Store, alert_id: str, event: str, actor: str,
                  publisher: ActionPublisher | None = None) -> int:
    """Persist an operator's acknowledge/resolve as an ``alert_events`` row, then (with
    ``publisher``) send it to the workers on the ``actions`` topic. Returns its event time.

    Event time: just after the alert's latest event (and at least the newest data), so the
    action is the alert's latest event in event time as well; ``ingested_at`` holds wall time.
    The row comes first (it is what the screen shows at once); a failed send raises
    :class:`ActionPublishError` after the row was written (the worker then keeps the alert's
    old state: the operator is told to retry). The workers record no event of their own for
    the action (docs/streams.md), so the row is the action's only ``alert_events`` row.
    """
    if event not in ("acknowledged", "resolved"):
        raise ValueError(f"event must be acknowledged or resolved, got {event!r}")
    last = queries.last_alert_event(store, alert_id)
    if not len(last):
        raise ValueError(f"unknown alert {alert_id!r}")
    r = last.iloc[0]
    newest = max(queries.newest_ts(store).values() or [0])
    ts = max(int(r["ts"]) + 1, newest)  # type: ignore[arg-type]
    sensors = np.empty(1, dtype=object)
    raw = r["sensors"]
    sensors[0] = list(raw) if not isinstance(raw, str) else [x for x in raw.split(",") if x]
    queries.insert_rows(store, "alert_events", {
        "ts": np.array([ts], dtype="datetime64[s]"),
        "alert_id": np.array([alert_id], dtype=object),
        "district": np.array([str(r["district"])], dtype=object),
        "type": np.array([str(r["type"])], dtype=object),
        "event": np.array([event], dtype=object),
        "state": np.array([event], dtype=object),
        "severity": np.array([int(r["severity"])], dtype=np.uint8),
        "peak": np.array([float(r["peak"])], dtype=np.float64),
        "sensors": sensors,
        "actor": np.array([actor], dtype=object),
    })
    log.info("alert %s %s by %s", alert_id, event, actor)
    if publisher is not None:
        publisher.publish(alert_id, event, actor, ts)
    return ts
