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


# --- US EPA: checked against the published table ------------------------------------------
# Table 6 "Breakpoints for the AQI" of the EPA's Technical Assistance Document for the Reporting
# of Daily Air Quality (EPA-454/B-24-002, May 2024), typed in by hand (not derived from the
# module): PM2.5 24-h µg/m³, PM10 24-h µg/m³, O3 8-h and 1-h ppm, CO 8-h ppm, SO2 1-h and
# 24-h ppb, NO2 1-h ppb; one "hazardous" row 301-500. None = blank in the table.
PUBLISHED_US = {
    "pm25": ((0.0, 9.0), (9.1, 35.4), (35.5, 55.4), (55.5, 125.4), (125.5, 225.4), (225.5, 325.4)),
    "pm10": ((0, 54), (55, 154), (155, 254), (255, 354), (355, 424), (425, 604)),
    "o3_8h": ((0.000, 0.054), (0.055, 0.070), (0.071, 0.085), (0.086, 0.105), (0.106, 0.200), None),
    "o3_1h": (None, None, (0.125, 0.164), (0.165, 0.204), (0.205, 0.404), (0.405, 0.604)),
    "co": ((0.0, 4.4), (4.5, 9.4), (9.5, 12.4), (12.5, 15.4), (15.5, 30.4), (30.5, 50.4)),
    "so2_1h": ((0, 35), (36, 75), (76, 185), (186, 304), None, None),
    "so2_24h": (None, None, None, None, (305, 604), (605, 1004)),
    "no2": ((0, 53), (54, 100), (101, 360), (361, 649), (650, 1249), (1250, 2049)),
}
PUBLISHED_INDEX = ((0, 50), (51, 100), (101, 150), (151, 200), (201, 300), (301, 500))


def test_us_table_is_the_published_2024_table() -> None:
    assert US_IAQI == PUBLISHED_INDEX
    assert set(US_BP) == set(PUBLISHED_US)
    for table, rows in PUBLISHED_US.items():
        assert tuple(US_BP[table]) == rows, table


# (table, concentration, AQI) worked by hand: I = (Ihi - Ilo) / (BPhi - BPlo) * (C - BPlo) + Ilo,
# C truncated first, I rounded to the nearest integer.
US_HAND = [
    # PM2.5: both ends of every row and the truncation between rows
    ("pm25", 0.0, 0), ("pm25", 9.0, 50), ("pm25", 9.09, 50), ("pm25", 9.1, 51),
    ("pm25", 35.4, 100), ("pm25", 35.49, 100), ("pm25", 35.5, 101), ("pm25", 55.4, 150),
    ("pm25", 55.5, 151), ("pm25", 125.4, 200), ("pm25", 125.5, 201), ("pm25", 225.4, 300),
    ("pm25", 225.5, 301), ("pm25", 325.4, 500), ("pm25", 325.5, 500), ("pm25", 600.0, 500),
    ("pm25", 5.0, 28),      # 50/9 * 5 = 27.78
    ("pm25", 20.0, 71),     # 51 + 49/26.3 * 10.9 = 71.31
    ("pm25", 45.0, 124),    # 101 + 49/19.9 * 9.5 = 124.39
    ("pm25", 100.0, 182),   # 151 + 49/69.9 * 44.5 = 182.19
    ("pm25", 175.0, 250),   # 201 + 99/99.9 * 49.5 = 250.05
    ("pm25", 275.0, 400),   # 301 + 199/99.9 * 49.5 = 399.60
    # PM10 (integers): 54.9 truncates to 54
    ("pm10", 54.0, 50), ("pm10", 54.9, 50), ("pm10", 55.0, 51), ("pm10", 154.0, 100),
    ("pm10", 155.0, 101), ("pm10", 254.0, 150), ("pm10", 255.0, 151), ("pm10", 354.0, 200),
    ("pm10", 355.0, 201), ("pm10", 424.0, 300), ("pm10", 425.0, 301), ("pm10", 604.0, 500),
    ("pm10", 100.0, 73),    # 51 + 49/99 * 45 = 73.27
    ("pm10", 390.0, 251),   # 201 + 99/69 * 35 = 251.22
    ("pm10", 500.0, 384),   # 301 + 199/179 * 75 = 384.38
    # O3 8-hour (0.001 ppm)
    ("o3_8h", 0.054, 50), ("o3_8h", 0.0549, 50), ("o3_8h", 0.055, 51), ("o3_8h", 0.070, 100),
    ("o3_8h", 0.071, 101), ("o3_8h", 0.085, 150), ("o3_8h", 0.086, 151), ("o3_8h", 0.105, 200),
    ("o3_8h", 0.106, 201), ("o3_8h", 0.200, 300),
    ("o3_8h", 0.060, 67),   # 51 + 49/0.015 * 0.005 = 67.33
    ("o3_8h", 0.150, 247),  # 201 + 99/0.094 * 0.044 = 247.34
    # O3 1-hour
    ("o3_1h", 0.125, 101), ("o3_1h", 0.164, 150), ("o3_1h", 0.165, 151), ("o3_1h", 0.204, 200),
    ("o3_1h", 0.205, 201), ("o3_1h", 0.404, 300), ("o3_1h", 0.405, 301), ("o3_1h", 0.604, 500),
    ("o3_1h", 0.180, 170),  # 151 + 49/0.039 * 0.015 = 169.85
    ("o3_1h", 0.500, 396),  # 301 + 199/0.199 * 0.095 = 396.00
    # CO 8-hour (0.1 ppm)
    ("co", 4.4, 50), ("co", 4.49, 50), ("co", 4.5, 51), ("co", 9.4, 100), ("co", 9.5, 101),
    ("co", 12.4, 150), ("co", 12.5, 151), ("co", 15.4, 200), ("co", 15.5, 201), ("co", 30.4, 300),
    ("co", 30.5, 301), ("co", 50.4, 500), ("co", 50.5, 500),
    ("co", 7.0, 76),        # 51 + 49/4.9 * 2.5 = 76.00
    ("co", 20.0, 231),      # 201 + 99/14.9 * 4.5 = 230.90
    # SO2 1-hour and 24-hour (ppb)
    ("so2_1h", 35.0, 50), ("so2_1h", 36.0, 51), ("so2_1h", 75.0, 100), ("so2_1h", 76.0, 101),
    ("so2_1h", 185.0, 150), ("so2_1h", 186.0, 151), ("so2_1h", 304.0, 200),
    ("so2_1h", 50.0, 69),   # 51 + 49/39 * 14 = 68.59
    ("so2_1h", 250.0, 178),  # 151 + 49/118 * 64 = 177.58
    ("so2_24h", 305.0, 201), ("so2_24h", 604.0, 300), ("so2_24h", 605.0, 301),
    ("so2_24h", 1004.0, 500), ("so2_24h", 1005.0, 500),
    ("so2_24h", 800.0, 398),  # 301 + 199/399 * 195 = 398.26
    # NO2 1-hour (ppb)
    ("no2", 53.0, 50), ("no2", 54.0, 51), ("no2", 100.0, 100), ("no2", 101.0, 101),
    ("no2", 360.0, 150), ("no2", 361.0, 151), ("no2", 649.0, 200), ("no2", 650.0, 201),
    ("no2", 1249.0, 300), ("no2", 1250.0, 301), ("no2", 2049.0, 500), ("no2", 2050.0, 500),
    ("no2", 80.0, 79),      # 51 + 49/46 * 26 = 78.70
    ("no2", 1000.0, 259),   # 201 + 99/599 * 350 = 258.85
    ("no2", 2000.0, 488),   # 301 + 199/799 * 750 = 487.80
]  # fmt: skip


@pytest.mark.parametrize(("table", "conc", "expected"), US_HAND)
def test_us_hand_computed_around_every_breakpoint(table: str, conc: float, expected: int) -> None:
    assert iaqi_us(table, [conc])[0] == expected


def test_us_blank_cells_have_no_index() -> None:
    # blanks of the published table: O3 1-h below 0.125, SO2 1-h from 305 (24-h SO2 instead)
    assert np.isnan(iaqi_us("o3_1h", [0.124])[0])
    assert np.isnan(iaqi_us("so2_1h", [305.0])[0])
    assert np.isnan(iaqi_us("so2_24h", [304.0])[0])
    # 8-h O3 above 0.200 ppm has no 8-h index: without a 1-h value the same concentration
    # goes through the 1-h table, 151 + 49/0.039 * 0.036 = 196.23
    assert aqi_us({"o3": [0.201]}).aqi[0] == 196
    # categories: 50 good, 51 moderate, 300 very unhealthy, 301 hazardous
    r = aqi_us({"pm25": [9.0, 9.1, 225.4, 225.5]})
    assert r.level.tolist() == [1, 2, 5, 6]
