"""Air quality index by China HJ 633-2012 and by US EPA (breakpoints of May 2024).

Both are piecewise linear in the concentration between breakpoints; they differ in the tables,
averaging periods, units and rounding:

* **China (HJ 633-2012)**: concentrations in µg/m³ (CO in mg/m³). IAQI per pollutant by
  linear interpolation, rounded *up* to an integer; AQI = max IAQI; the primary pollutant is
  the one (or ones) with the largest IAQI when AQI > 50; six levels. ``period="1h"`` is the
  hourly real-time report (SO2, NO2, CO, O3 by their 1-hour breakpoints; PM10 and PM2.5 1-hour
  concentrations against the 24-hour breakpoints, which is how the national real-time release
  rates particles); ``period="24h"`` is the daily report (24-hour means, O3 by its 8-hour
  breakpoints). SO2 1-hour above 800 µg/m³ and O3 8-hour above 800 µg/m³ have no IAQI of their
  own: the standard reports the 24-hour SO2 / 1-hour O3 IAQI instead (pass ``so2_24h`` /
  ``o3_1h``; without it the other table is applied to the same concentration).
* **US EPA**: concentrations in ppm (O3, CO), ppb (SO2, NO2), µg/m³ (PM) -- :func:`to_us_units`
  converts from µg/m³ at 25 °C and 1 atm. Concentrations are truncated (O3 to 0.001 ppm,
  PM2.5 and CO to 0.1, PM10/SO2/NO2 to integers), AQI is rounded to the nearest integer.
  PM2.5 and PM10 are 24-hour means, O3 and CO 8-hour means, SO2 and NO2 1-hour means; O3
  8-hour above 0.200 ppm uses the 1-hour table, SO2 1-hour at or above 305 ppb uses 24-hour
  SO2 (``so2_24h``).

Concentrations above the top breakpoint are rated 500. NaN concentrations are ignored; an AQI
with no valid pollutant is NaN.

>>> aqi_china({"pm25": [75.0], "no2": [50.0]}).aqi.tolist()
[100.0]
>>> aqi_us({"pm25": [35.4]}).aqi.tolist()
[100.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

POLLUTANTS: Final = ("pm25", "pm10", "no2", "o3", "so2", "co")

CHINA_IAQI: Final = (0.0, 50.0, 100.0, 150.0, 200.0, 300.0, 400.0, 500.0)
#: (pollutant, averaging) -> concentration breakpoints, µg/m³ (CO mg/m³), HJ 633-2012 table 1
CHINA_BP: Final[dict[tuple[str, str], tuple[float, ...]]] = {
    ("so2", "24h"): (0, 50, 150, 475, 800, 1600, 2100, 2620),
    ("so2", "1h"): (0, 150, 500, 650, 800),
    ("no2", "24h"): (0, 40, 80, 180, 280, 565, 750, 940),
    ("no2", "1h"): (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    ("pm10", "24h"): (0, 50, 150, 250, 350, 420, 500, 600),
    ("co", "24h"): (0, 2, 4, 14, 24, 36, 48, 60),
    ("co", "1h"): (0, 5, 10, 35, 60, 90, 120, 150),
    ("o3", "1h"): (0, 160, 200, 300, 400, 800, 1000, 1200),
    ("o3", "8h"): (0, 100, 160, 215, 265, 800),
    ("pm25", "24h"): (0, 35, 75, 115, 150, 250, 350, 500),
}
CHINA_LEVELS: Final = (
    ("excellent", "优"),
    ("good", "良"),
    ("lightly polluted", "轻度污染"),
    ("moderately polluted", "中度污染"),
    ("heavily polluted", "重度污染"),
    ("severely polluted", "严重污染"),
)

US_IAQI: Final = ((0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, 500))
_N = None
#: pollutant table -> per category (lo, hi) in native units; None = no index in that category
US_BP: Final[dict[str, tuple[tuple[float, float] | None, ...]]] = {
    "pm25": ((0.0, 9.0), (9.1, 35.4), (35.5, 55.4), (55.5, 125.4), (125.5, 225.4), (225.5, 325.4)),
    "pm10": ((0, 54), (55, 154), (155, 254), (255, 354), (355, 424), (425, 604)),
    "o3_8h": ((0.0, 0.054), (0.055, 0.070), (0.071, 0.085), (0.086, 0.105), (0.106, 0.200), _N),
    "o3_1h": (_N, _N, (0.125, 0.164), (0.165, 0.204), (0.205, 0.404), (0.405, 0.604)),
    "co": ((0.0, 4.4), (4.5, 9.4), (9.5, 12.4), (12.5, 15.4), (15.5, 30.4), (30.5, 50.4)),
    "so2_1h": ((0, 35), (36, 75), (76, 185), (186, 304), _N, _N),
    "so2_24h": (_N, _N, _N, _N, (305, 604), (605, 1004)),
    "no2": ((0, 53), (54, 100), (101, 360), (361, 649), (650, 1249), (1250, 2049)),
}
#: decimals kept by truncation before the US lookup
US_TRUNCATE: Final = {
    "pm25": 1,
    "pm10": 0,
    "o3_8h": 3,
    "o3_1h": 3,
    "co": 1,
    "so2_1h": 0,
    "so2_24h": 0,
    "no2": 0,
}
US_LEVELS: Final = (
    "good",
    "moderate",
    "unhealthy for sensitive groups",
    "unhealthy",
    "very unhealthy",
    "hazardous",
)
#: molar masses (g/mol) for µg/m³ -> ppb at 25 °C, 1 atm (molar volume 24.45 L)
MOLAR_MASS: Final = {"no2": 46.0055, "o3": 47.9982, "so2": 64.066, "co": 28.010}
MOLAR_VOLUME_L: Final = 24.45


@dataclass(frozen=True, slots=True)
class AqiResult:
    """``aqi`` (float, integer-valued, NaN if nothing valid), ``level`` (1..6, 0 if NaN),
    ``primary`` (pollutant names joined by ``,``; empty when AQI <= 50 or NaN), ``iaqi`` per
    pollutant."""

    aqi: np.ndarray
    level: np.ndarray
    primary: np.ndarray
    iaqi: dict[str, np.ndarray]


def _arr(x: Any) -> np.ndarray:
    return np.atleast_1d(np.asarray(x, dtype=np.float64))


def iaqi_china(pollutant: str, conc: Any, period: str) -> np.ndarray:
    """IAQI of one pollutant by HJ 633-2012 (rounded up). NaN where the table has no value
    (SO2 1-hour above 800, O3 8-hour above 800) or the concentration is NaN/negative."""
    key = (pollutant, "24h" if pollutant in ("pm25", "pm10") else period)
    if key not in CHINA_BP:
        raise ValueError(f"no HJ 633-2012 breakpoints for {pollutant!r} averaged over {period!r}")
    bp = np.asarray(CHINA_BP[key], dtype=np.float64)
    iq = np.asarray(CHINA_IAQI[: len(bp)], dtype=np.float64)
    c = _arr(conc)
    j = np.clip(np.searchsorted(bp, c, side="left") - 1, 0, len(bp) - 2)
    raw = (iq[j + 1] - iq[j]) / (bp[j + 1] - bp[j]) * (c - bp[j]) + iq[j]
    # round up, but keep values that are integers up to float error (75.0 -> 100, not 101)
    out = np.ceil(raw - 1e-9)
    top = c > bp[-1]
    if key in (("so2", "1h"), ("o3", "8h")):
        out[top] = np.nan
    else:
        out[top] = 500.0
    out[~(c >= 0)] = np.nan
    return out


def aqi_china(
    conc: Mapping[str, Any],
    *,
    period: str = "1h",
    so2_24h: Any = None,
    o3_1h: Any = None,
) -> AqiResult:
    """AQI by HJ 633-2012 from concentrations per pollutant (any subset of :data:`POLLUTANTS`).

    ``period`` is ``"1h"`` (hourly real-time AQI) or ``"24h"`` (daily AQI, O3 as its 8-hour
    mean)."""
    if period not in ("1h", "24h"):
        raise ValueError(f"period must be '1h' or '24h', got {period!r}")
    iaqi: dict[str, np.ndarray] = {}
    for p, c in conc.items():
        if p not in POLLUTANTS:
            raise ValueError(f"unknown pollutant {p!r} (known: {', '.join(POLLUTANTS)})")
        per = "8h" if (p == "o3" and period == "24h") else period
        v = iaqi_china(p, c, per)
        if p == "so2" and per == "1h":
            alt = iaqi_china("so2", _arr(c) if so2_24h is None else so2_24h, "24h")
            v = np.where(np.isnan(v) & (_arr(c) > 800), alt, v)
        if p == "o3" and per == "8h":
            alt = iaqi_china("o3", _arr(c) if o3_1h is None else o3_1h, "1h")
            v = np.where(np.isnan(v) & (_arr(c) > 800), alt, v)
        iaqi[p] = v
    return _combine(iaqi, level_edges=(50, 100, 150, 200, 300))


def to_us_units(pollutant: str, ugm3: Any) -> np.ndarray:
    """µg/m³ (CO: mg/m³) -> EPA units: ppb for NO2 and SO2, ppm for O3 and CO, µg/m³ for PM."""
    c = _arr(ugm3)
    if pollutant in ("pm25", "pm10"):
        return c
    if pollutant in ("no2", "so2"):
        return c * MOLAR_VOLUME_L / MOLAR_MASS[pollutant]
    if pollutant == "o3":
        return c * MOLAR_VOLUME_L / MOLAR_MASS["o3"] / 1000.0
    if pollutant == "co":
        return c * MOLAR_VOLUME_L / MOLAR_MASS["co"]
    raise ValueError(f"unknown pollutant {pollutant!r}")


def _truncate(c: np.ndarray, decimals: int) -> np.ndarray:
    f = 10.0**decimals
    # the small epsilon keeps 0.07 * 1000 = 70.00000000000001 from truncating to 69
    return np.floor(c * f + 1e-7) / f


def iaqi_us(table: str, conc: Any) -> np.ndarray:
    """Sub-index of one EPA table (keys of :data:`US_BP`), concentrations in native units.
    NaN where the table defines no index for that concentration."""
    if table not in US_BP:
        raise ValueError(f"unknown EPA table {table!r} (known: {', '.join(US_BP)})")
    c = _truncate(_arr(conc), US_TRUNCATE[table])
    out = np.full(c.shape, np.nan)
    rows = US_BP[table]
    for (ilo, ihi), row in zip(US_IAQI, rows, strict=True):
        if row is None:
            continue
        lo, hi = row
        m = (c >= lo) & (c <= hi)
        val = (ihi - ilo) / (hi - lo) * (c[m] - lo) + ilo
        out[m] = np.floor(val + 0.5)
    last = max(i for i, r in enumerate(rows) if r is not None)
    top = rows[last]
    assert top is not None
    if last == len(rows) - 1:
        out[c > top[1]] = 500.0
    out[~(c >= 0)] = np.nan
    return out


def aqi_us(
    conc: Mapping[str, Any],
    *,
    units: str = "native",
    o3_1h: Any = None,
    so2_24h: Any = None,
) -> AqiResult:
    """US EPA AQI. ``conc``: pm25, pm10 (24-hour), o3, co (8-hour), so2, no2 (1-hour);
    ``units="ugm3"`` converts from µg/m³ (CO mg/m³) first."""
    if units not in ("native", "ugm3"):
        raise ValueError(f"units must be 'native' or 'ugm3', got {units!r}")

    def u(p: str, x: Any) -> np.ndarray:
        return to_us_units(p, x) if units == "ugm3" else _arr(x)

    iaqi: dict[str, np.ndarray] = {}
    for p, c in conc.items():
        if p not in POLLUTANTS:
            raise ValueError(f"unknown pollutant {p!r} (known: {', '.join(POLLUTANTS)})")
        x = u(p, c)
        if p == "o3":
            v = iaqi_us("o3_8h", x)
            high = _truncate(x, 3) > 0.200
            if high.any():
                alt = iaqi_us("o3_1h", x if o3_1h is None else u("o3", o3_1h))
                v = np.where(high, alt, v)
            if o3_1h is not None:  # the more precautionary of the two where both exist
                v = np.fmax(v, iaqi_us("o3_1h", u("o3", o3_1h)))
        elif p == "so2":
            v = iaqi_us("so2_1h", x)
            high = _truncate(x, 0) >= 305
            if high.any():
                alt = iaqi_us("so2_24h", x if so2_24h is None else u("so2", so2_24h))
                v = np.where(high, alt, v)
        else:
            v = iaqi_us(p, x)
        iaqi[p] = v
    return _combine(iaqi, level_edges=(50, 100, 150, 200, 300))


def _combine(iaqi: dict[str, np.ndarray], level_edges: tuple[float, ...]) -> AqiResult:
    if not iaqi:
        raise ValueError("no pollutant given")
    names = list(iaqi)
    stack = np.vstack(np.broadcast_arrays(*[iaqi[p] for p in names]))
    valid = ~np.isnan(stack)
    any_valid = valid.any(axis=0)
    aqi = np.where(any_valid, np.nanmax(np.where(valid, stack, -1.0), axis=0), np.nan)
    level = np.where(any_valid, np.searchsorted(level_edges, aqi, side="left") + 1, 0)
    is_max = valid & (stack == aqi) & (aqi > 50)
    primary = np.array(
        [",".join(p for p, hit in zip(names, col, strict=True) if hit) for col in is_max.T],
        dtype=object,
    )
    return AqiResult(aqi=aqi, level=level.astype(np.int64), primary=primary, iaqi=iaqi)


def aqi(conc: Mapping[str, Any], *, standard: str, units: str = "ugm3") -> AqiResult:
    """The configured standard's AQI from µg/m³ concentrations (``aqi.standard`` in
    ``config/models.yaml``): China's hourly real-time AQI or the US AQI."""
    if standard == "china":
        return aqi_china(conc, period="1h")
    if standard == "us":
        return aqi_us(conc, units=units)
    raise ValueError(f"standard must be 'china' or 'us', got {standard!r}")
