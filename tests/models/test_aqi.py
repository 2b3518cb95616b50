"""AQI at and around every breakpoint of HJ 633-2012 and US EPA, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.indicators.aqi import (
    CHINA_BP,
    CHINA_IAQI,
    US_BP,
    US_IAQI,
    aqi_china,
    aqi_us,
    iaqi_china,
    iaqi_us,
    to_us_units,
)

CHINA_CASES = [(key, j) for key, bp in CHINA_BP.items() for j in range(len(bp))]


@pytest.mark.parametrize(("key", "j"), CHINA_CASES)
def test_china_iaqi_at_every_breakpoint(key: tuple[str, str], j: int) -> None:
    pol, period = key
    if pol in ("pm25", "pm10") and period == "24h":
        period = "24h"
    bp = CHINA_BP[key][j]
    assert iaqi_china(pol, [bp], period)[0] == CHINA_IAQI[j]


@pytest.mark.parametrize(("key", "j"), [(k, j) for k, j in CHINA_CASES if j < len(CHINA_BP[k]) - 1])
def test_china_iaqi_just_above_and_mid_segment(key: tuple[str, str], j: int) -> None:
    pol, period = key
    lo, hi = CHINA_BP[key][j], CHINA_BP[key][j + 1]
    ilo, ihi = CHINA_IAQI[j], CHINA_IAQI[j + 1]
    # just above a breakpoint: rounded *up* to the next integer
    eps = (hi - lo) * 1e-3
    assert iaqi_china(pol, [lo + eps], period)[0] == math.ceil(ilo + (ihi - ilo) * 1e-3)
    # just below the next one: still inside the segment, rounded up to its top
    assert iaqi_china(pol, [hi - eps], period)[0] == ihi
    mid = (lo + hi) / 2
    assert iaqi_china(pol, [mid], period)[0] == math.ceil((ilo + ihi) / 2)


def test_china_hand_values() -> None:
    # PM2.5 24h 35.1: 50 + (100-50)/(75-35) * 0.1 = 50.125 -> 51
    assert iaqi_china("pm25", [35.1], "24h")[0] == 51
    # PM2.5 80: 100 + 50/40 * 5 = 106.25 -> 107
    assert iaqi_china("pm25", [80.0], "24h")[0] == 107
    # NO2 1h 250: 100 + 50/500 * 50 = 105
    assert iaqi_china("no2", [250.0], "1h")[0] == 105
    # CO 1h 7 mg/m3: 50 + 50/5 * 2 = 70
    assert iaqi_china("co", [7.0], "1h")[0] == 70
    # O3 1h 180: 50 + 50/40 * 20 = 75
    assert iaqi_china("o3", [180.0], "1h")[0] == 75
    # above the top of a table: 500
    assert iaqi_china("pm10", [700.0], "24h")[0] == 500


def test_china_special_rules() -> None:
    # SO2 1h above 800 has no 1h IAQI; the 24h table applies (to the 24h mean when given)
    assert np.isnan(iaqi_china("so2", [900.0], "1h")[0])
    r = aqi_china({"so2": [900.0]}, period="1h", so2_24h=[160.0])
    # 24h SO2 160: 100 + 50/325 * 10 = 101.54 -> 102
    assert r.aqi[0] == 102
    # O3 8h above 800 -> 1h table
    assert np.isnan(iaqi_china("o3", [850.0], "8h")[0])
    r = aqi_china({"o3": [850.0]}, period="24h", o3_1h=[900.0])
    assert r.aqi[0] == 350  # 1h 900: 300 + 100/200 * 100


def test_china_aqi_primary_and_levels() -> None:
    r = aqi_china({"pm25": [30.0, 80.0, 75.0, 300.0], "no2": [50.0, 50.0, 300.0, 50.0]})
    assert r.aqi.tolist() == [43.0, 107.0, 110.0, 350.0]
    assert r.level.tolist() == [1, 3, 3, 6]
    assert r.primary.tolist() == ["", "pm25", "no2", "pm25"]
    # level edges: 50 -> 1, 51 -> 2, 100 -> 2, 101 -> 3, 300 -> 5, 301 -> 6
    edges = aqi_china({"pm25": [35.0, 35.1, 75.0, 75.1, 250.0, 250.1]})
    assert edges.level.tolist() == [1, 2, 2, 3, 5, 6]
    # ties name every pollutant
    tie = aqi_china({"pm25": [75.0], "pm10": [150.0]})
    assert tie.primary.tolist() == ["pm25,pm10"]
    # nothing valid -> NaN
    assert np.isnan(aqi_china({"pm25": [np.nan]}).aqi[0])


US_CASES = [(t, j) for t, rows in US_BP.items() for j, r in enumerate(rows) if r is not None]


@pytest.mark.parametrize(("table", "j"), US_CASES)
def test_us_at_every_breakpoint(table: str, j: int) -> None:
    lo, hi = US_BP[table][j]  # type: ignore[misc]
    ilo, ihi = US_IAQI[j]
    assert iaqi_us(table, [lo])[0] == ilo
    assert iaqi_us(table, [hi])[0] == ihi
    mid = (lo + hi) / 2
    dec = {"pm25": 1, "co": 1, "o3_8h": 3, "o3_1h": 3}.get(table, 0)
    c = math.floor(mid * 10**dec + 1e-7) / 10**dec
    expected = math.floor((ihi - ilo) / (hi - lo) * (c - lo) + ilo + 0.5)
    assert iaqi_us(table, [mid])[0] == expected


def test_us_truncation_and_hand_values() -> None:
    # PM2.5 9.05 truncates to 9.0 -> 50; 9.1 -> 51; 35.45 -> 35.4 -> 100
    assert iaqi_us("pm25", [9.05, 9.1, 35.45]).tolist() == [50, 51, 100]
    # PM2.5 12.0: 51 + 49/26.3 * 2.9 = 56.40 -> 56
    assert iaqi_us("pm25", [12.0])[0] == 56
    # PM10 54.9 truncates to 54 -> 50
    assert iaqi_us("pm10", [54.9])[0] == 50
    # O3 8h 0.0709 -> 0.070 -> 100; 0.071 -> 101
    assert iaqi_us("o3_8h", [0.0709, 0.071]).tolist() == [100, 101]
    # NO2 1h 150 ppb: 101 + 49/259 * 49 = 110.27 -> 110
    assert iaqi_us("no2", [150.0])[0] == 110
    # above the top -> 500
    assert iaqi_us("pm25", [400.0])[0] == 500
    # O3 8h > 0.200 uses 1h; 1h table has nothing below 0.125
    assert np.isnan(iaqi_us("o3_1h", [0.1])[0])
    assert aqi_us({"o3": [0.21]}, o3_1h=[0.30]).aqi[0] == math.floor(99 / 0.199 * 0.095 + 201 + 0.5)
    # SO2 1h >= 305 ppb -> 24h
    assert aqi_us({"so2": [400.0]}, so2_24h=[310.0]).aqi[0] == math.floor(99 / 299 * 5 + 201 + 0.5)


def test_unit_conversion() -> None:
    # 1 ppb NO2 = 46.0055 / 24.45 µg/m3
    assert to_us_units("no2", [46.0055 / 24.45 * 100])[0] == pytest.approx(100.0)
    assert to_us_units("o3", [2 * 47.9982 / 24.45 * 50])[0] == pytest.approx(0.1)
    r = aqi_us({"pm25": [35.4], "no2": [46.0055 / 24.45 * 100]}, units="ugm3")
    assert r.aqi[0] == 100 and r.primary[0] == "pm25,no2"
