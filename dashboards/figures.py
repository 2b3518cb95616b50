"""Pure figure builders: data in, ``go.Figure`` out. Nothing here reads a store.

The map is drawn from the city's own geometry in km (no tiles, nothing from the internet):
districts as filled polygons coloured by risk, road segments as lines coloured by the ratio of
speed to free-flow speed, sensors as WebGL points (``Scattergl``: 10,000+ points stay smooth)
coloured by status, active incidents as markers at their sensors' centre.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboards.i18n import t

BG = "#0b1220"
PANEL = "#111a2e"
GRID = "#1f2a44"
TEXT = "#e2e8f0"
MUTED = "#94a3b8"
RISK_COLOURS = {
    "none": "#334155", "blue": "#3b82f6", "yellow": "#eab308", "orange": "#f97316",
    "red": "#ef4444",
}
STATUS_COLOURS = ("#22c55e", "#f43f5e", "#a855f7", "#64748b")  # ok, anomalous, faulty, silent
#: speed / free-flow speed bins (level of service edges) and their colours, worst last
SPEED_BINS = (0.30, 0.50, 0.67, 0.85)
SPEED_COLOURS = ("#dc2626", "#f97316", "#facc15", "#84cc16", "#16a34a")
NO_DATA = "#475569"
FONT = "system-ui, -apple-system, 'Segoe UI', 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif"


def _base_layout(fig: go.Figure, **kw: Any) -> go.Figure:
    fig.update_layout(
        paper_bgcolor=BG, plot_bgcolor=BG, font={"color": TEXT, "family": FONT, "size": 12},
        margin={"l": 0, "r": 0, "t": 0, "b": 0}, **kw,
    )
    return fig


def city_map(
    geo: Any, snap: Any, *, lang: str = "en", districts: list[str] | None = None,
    height: int | None = None,
) -> dict[str, Any]:
    """The city map at a snapshot; ``districts`` limits it to those districts (drill-down).

    Returned as a plain figure dict (what ``go.Figure.to_dict()`` gives): the screen rebuilds
    the map on every refresh, and plotly's property validation of 5,000+ points would cost
    more than all the refresh's queries together.
    """
    traces: list[dict[str, Any]] = []
    d = geo.districts
    risk = _by_district(snap.risk, ("risk", "colour", "contrib_traffic", "contrib_environment",
                                    "contrib_utility"))
    name_col = "name_zh" if lang == "zh" else "name"
    keep_d = set(districts) if districts else None
    rows = [r for r in geo.district_rows() if not keep_d or r.district in keep_d]
    for row in rows:
        r = risk.get(row.district)
        level = str(r["colour"]) if r is not None else "none"
        colour = RISK_COLOURS.get(level, "#334155")
        rv = float(r["risk"]) if r is not None else float("nan")
        hover = (f"<b>{getattr(row, name_col)}</b> ({row.district})<br>"
                 f"{t('risk', lang)}: {rv:.0f} ({t('risk_' + level, lang)})")
        if r is not None:
            hover += (
                f"<br>{t('traffic', lang)} {float(r['contrib_traffic']):.0f} · "
                f"{t('environment', lang)} {float(r['contrib_environment']):.0f} · "
                f"{t('utility', lang)} {float(r['contrib_utility']):.0f}"
            )
        ci = snap.ci_district.get(row.district)
        if ci is not None and np.isfinite(ci):
            hover += f"<br>{t('kpi_congestion', lang)}: {ci:.2f}"
        aq = snap.aqi_district.get(row.district)
        if aq is not None:
            hover += f"<br>AQI: {aq:.0f}"
        traces.append({
            "type": "scatter", "x": row.x, "y": row.y, "mode": "lines",
            "fill": "toself", "fillcolor": _alpha(colour, 0.28),
            "line": {"color": colour, "width": 1.5}, "hoveron": "fills", "hoverinfo": "text",
            "text": hover, "name": row.district, "showlegend": False,
        })
    # road segments by speed ratio, one WebGL trace per bin (NaN separates the lines)
    ratio = snap.seg_ratio
    bins = np.where(np.isnan(ratio), -1, np.searchsorted(SPEED_BINS, np.nan_to_num(ratio)))
    sx, sy, _ = geo.seg_xy
    point_bin = bins[geo.seg_of_point]  # every point (and NaN separator) of every segment
    if keep_d:
        seg_keep = geo.segments["district"].isin(keep_d).to_numpy()
        point_bin = np.where(seg_keep[geo.seg_of_point], point_bin, -2)
    for b in (-1, 4, 3, 2, 1, 0):
        take = np.flatnonzero(point_bin == b)
        if not take.size:
            continue
        traces.append({
            "type": "scattergl", "x": sx[take], "y": sy[take], "mode": "lines",
            "hoverinfo": "skip", "showlegend": False, "connectgaps": False,
            "line": {"color": NO_DATA if b < 0 else SPEED_COLOURS[b],
                     "width": 1 if b < 0 else 2},
            "opacity": 0.55 if b < 0 else 0.9,
        })
    # sensors, one trace per status so the legend explains the colours
    s = geo.sensors
    mask = np.ones(len(s), dtype=bool) if not keep_d else s["district"].isin(keep_d).to_numpy()
    x_all, y_all, ids_all = geo.sensor_x, geo.sensor_y, geo.sensor_ids
    values_all = _SENSOR_TEXT.get(snap.value, snap.score, lang)
    for code, name in enumerate(("status_ok", "status_anomalous", "status_faulty",
                                 "status_silent")):
        idx = np.flatnonzero(mask & (snap.status == code))
        if not idx.size:
            continue
        traces.append({
            "type": "scattergl", "x": x_all[idx], "y": y_all[idx], "mode": "markers",
            "marker": {"size": 4 if code == 0 else 7, "color": STATUS_COLOURS[code],
                       "opacity": 0.75 if code == 0 else 1.0},
            "customdata": ids_all[idx], "hovertext": geo.sensor_hover[idx],
            "text": values_all[idx],
            "hovertemplate": "<b>%{customdata}</b> %{hovertext}<br>%{text}<extra></extra>",
            "name": f"{t(name, lang)} ({idx.size:,})",
        })
    # active incidents at their sensors' centre
    act = snap.active_alerts
    if len(act):
        xs2, ys2, txt, ids = [], [], [], []
        pos = geo.sensor_pos
        for a in act.itertuples():
            if keep_d and a.district not in keep_d:
                continue
            members = [pos[x] for x in str(a.sensors).split(",") if x in pos]
            if members:
                xs2.append(float(x_all[members].mean()))
                ys2.append(float(y_all[members].mean()))
            else:
                c = d[d["district"] == a.district]
                if not len(c):
                    continue
                xs2.append(float(c["cx"].iloc[0]))
                ys2.append(float(c["cy"].iloc[0]))
            txt.append(f"<b>{t('type_' + str(a.type), lang)}</b> · {a.district}<br>"
                       f"{t('sev_' + str(int(a.severity)), lang)} · "
                       f"{t('state_' + str(a.state), lang)}")
            ids.append(str(a.alert_id))
        if xs2:
            traces.append({
                "type": "scatter", "x": xs2, "y": ys2, "mode": "markers", "hovertext": txt,
                "hoverinfo": "text", "name": t("incident", lang), "customdata": ids,
                "marker": {"symbol": "star", "size": 20, "color": "#fde047",
                           "line": {"color": "#7f1d1d", "width": 2}},
            })
    # district labels: click one to open its page
    labels = []
    for row in rows:
        r = risk.get(row.district)
        labels.append(f"{getattr(row, name_col)}<br>{t('risk', lang)} "
                      f"{(float(r['risk']) if r is not None else 0):.0f}")
    traces.append({  # a little below the centre: incidents sit on the centre
        "type": "scatter", "x": [r.cx for r in rows], "y": [r.cy - 0.45 for r in rows],
        "mode": "text+markers", "text": labels, "textfont": {"color": TEXT, "size": 11},
        "marker": {"size": 18, "opacity": 0}, "hoverinfo": "skip", "showlegend": False,
        "customdata": ["district:" + r.district for r in rows],
    })
    layout: dict[str, Any] = {
        **_layout(), "showlegend": True, "hovermode": "closest", "uirevision": "map",
        "dragmode": "pan", "clickmode": "event",
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "top",
                   "bgcolor": "rgba(0,0,0,0.4)", "font": {"size": 11}},
        "xaxis": {"visible": False, "constrain": "domain"},
        "yaxis": {"visible": False, "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"},
    }
    if height:
        layout["height"] = height
    return {"data": traces, "layout": layout}


def _by_district(df: pd.DataFrame, cols: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Rows of a small per-district frame as ``{district: {column: value}}`` (plain Python
    values: cheaper than ``loc`` or ``to_dict`` on string columns backed by Arrow)."""
    if not len(df):
        return {}
    values = {c: df[c].to_numpy(dtype=object).tolist() for c in cols}
    return {str(k): {c: values[c][i] for c in cols}
            for i, k in enumerate(df["district"].to_numpy(dtype=object).tolist())}


def _layout() -> dict[str, Any]:
    return {"paper_bgcolor": BG, "plot_bgcolor": BG,
            "font": {"color": TEXT, "family": FONT, "size": 12},
            "margin": {"l": 0, "r": 0, "t": 0, "b": 0}}


def _sensor_values(value: np.ndarray, score: np.ndarray, lang: str) -> np.ndarray:
    """The changing part of each sensor's hover text: its value and score (plain text; the
    id, kind and district come from the trace's other per-point arrays).

    A numpy string array: plotly's JSON encoder takes it as one list (an object array is
    walked element by element)."""
    vl, sl = f"{t('value', lang)}: ", f"{t('score', lang)}: "
    out = [
        ("" if v != v else f"{vl}{v:.1f}") + ("" if s != s else
                                               f"{' · ' if v == v else ''}{sl}{s:.2f}")
        for v, s in zip(value.tolist(), score.tolist(), strict=True)
    ]
    return np.asarray(out, dtype=str)


class SensorText:
    """:func:`_sensor_values` of every sensor, formatted again only where a value or score
    changed since the last map of the same language (a sensor's window mean changes when one
    of its readings arrives: between two refreshes, for a fraction of the sensors)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def get(self, value: np.ndarray, score: np.ndarray, lang: str) -> np.ndarray:
        value = np.asarray(value, dtype=np.float64)
        score = np.asarray(score, dtype=np.float64)
        with self._lock:
            last = self._last.get(lang)
        if last is None or len(last[0]) != len(value):
            text = _sensor_values(value, score, lang)
        else:
            lv, ls, lt = last
            same = (((value == lv) | (np.isnan(value) & np.isnan(lv)))
                    & ((score == ls) | (np.isnan(score) & np.isnan(ls))))
            changed = np.flatnonzero(~same)
            if not changed.size:
                text = lt
            else:
                fresh = _sensor_values(value[changed], score[changed], lang)
                # a fixed-width string array: widen it before longer strings go in
                text = lt.astype(np.promote_types(lt.dtype, fresh.dtype))
                text[changed] = fresh
        with self._lock:
            self._last[lang] = (value.copy(), score.copy(), text)
        return text


_SENSOR_TEXT = SensorText()


def _alpha(hex_colour: str, a: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    return f"rgba({r},{g},{b},{a})"


def sparkline(df: pd.DataFrame, *, colour: str = "#38bdf8", fmt: str = ".2f",
              height: int = 46, y_range: tuple[float, float] | None = None) -> dict[str, Any]:
    """A tiny trend (a plain figure dict): ``minute`` (epoch s) and ``value`` columns."""
    data = []
    if len(df):
        # epoch milliseconds on a date axis: numbers encode at once, formatted strings do not
        x = df["minute"].to_numpy(dtype=np.float64) * 1000.0
        data.append({
            "type": "scatter", "x": x,
            "y": df["value"].to_numpy(dtype=np.float64), "mode": "lines",
            "line": {"color": colour, "width": 1.6}, "fill": "tozeroy",
            "fillcolor": _alpha(colour, 0.12),
            "hovertemplate": f"%{{x|%H:%M}} · %{{y:{fmt}}}<extra></extra>",
        })
    return {"data": data, "layout": {
        **_layout(), "height": height, "showlegend": False, "hovermode": "x",
        "xaxis": {"visible": False, "type": "date"},
        "yaxis": {"visible": False, **({"range": list(y_range)} if y_range else {})},
    }}


def time_series(
    frames: list[tuple[str, pd.DataFrame, str, str]], *, title: str = "", height: int = 260,
    band: tuple[pd.DataFrame, str] | None = None, y2: tuple[str, pd.DataFrame, str] | None = None,
    threshold: float | None = None, markers: tuple[str, pd.DataFrame] | None = None,
) -> go.Figure:
    """Lines of ``(name, df, column, colour)`` over ``ts``/``minute`` epoch seconds, with an
    optional band (``lo``/``hi`` columns), a second axis series and fault markers."""
    fig = go.Figure()

    def xs(df: pd.DataFrame) -> pd.Series:
        col = "ts" if "ts" in df.columns else "minute"
        return pd.to_datetime(df[col].astype("int64"), unit="s")

    if band is not None and len(band[0]):
        b, name = band
        fig.add_trace(go.Scatter(x=xs(b), y=b["hi"], mode="lines", line={"width": 0},
                                 showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=xs(b), y=b["lo"], mode="lines", line={"width": 0},
                                 fill="tonexty", fillcolor="rgba(148,163,184,0.18)", name=name,
                                 hoverinfo="skip"))
    for name, df, col, colour in frames:
        if len(df):
            fig.add_trace(go.Scatter(x=xs(df), y=df[col], mode="lines", name=name,
                                     line={"color": colour, "width": 1.6}))
    if markers is not None and len(markers[1]):
        name, m = markers
        fig.add_trace(go.Scatter(x=xs(m), y=m["y"], mode="markers", name=name,
                                 marker={"symbol": "x", "size": 9, "color": "#a855f7"},
                                 text=m["text"], hoverinfo="text+x"))
    if y2 is not None and len(y2[1]):
        name, df, col = y2
        fig.add_trace(go.Scatter(x=xs(df), y=df[col], mode="lines", name=name, yaxis="y2",
                                 line={"color": "#f43f5e", "width": 1.2}))
        fig.update_layout(yaxis2={"overlaying": "y", "side": "right", "range": [0, 1.05],
                                  "gridcolor": GRID, "title": name})
        if threshold is not None:
            fig.add_hline(y=threshold, line={"color": "#f43f5e", "dash": "dot", "width": 1},
                          yref="y2")
    fig = _base_layout(fig, height=height, hovermode="x unified",
                       title={"text": title, "font": {"size": 13}, "x": 0.01},
                       legend={"orientation": "h", "y": -0.18})
    fig.update_layout(margin={"l": 48, "r": 48, "t": 30 if title else 8, "b": 30})
    fig.update_xaxes(gridcolor=GRID)
    fig.update_yaxes(gridcolor=GRID)
    return fig


def risk_area(df: pd.DataFrame, *, lang: str = "en", height: int = 240) -> go.Figure:
    """One district's risk over time as stacked domain contributions."""
    fig = go.Figure()
    if len(df):
        x = pd.to_datetime(df["minute"].astype("int64"), unit="s")
        for col, colour in (("traffic", "#f97316"), ("environment", "#22d3ee"),
                            ("utility", "#a78bfa")):
            fig.add_trace(go.Scatter(x=x, y=df[col], mode="lines", stackgroup="risk",
                                     name=t(col, lang), line={"color": colour, "width": 0.5}))
    fig = _base_layout(fig, height=height, hovermode="x unified",
                       title={"text": t("risk_contrib", lang), "font": {"size": 13}, "x": 0.01},
                       legend={"orientation": "h", "y": -0.2})
    fig.update_layout(margin={"l": 40, "r": 10, "t": 30, "b": 30})
    fig.update_yaxes(range=[0, 100], gridcolor=GRID)
    fig.update_xaxes(gridcolor=GRID)
    return fig
