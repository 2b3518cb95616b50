"""Noise indicators: equivalent continuous level Leq and the day-evening-night level Lden.

``Leq = 10 log10(mean(10^(L/10)))`` (energy average of dB(A) readings).
``Lden = 10 log10((12·10^(Ld/10) + 4·10^((Le+5)/10) + 8·10^((Ln+10)/10)) / 24)`` with day
07-19, evening 19-23, night 23-07 local time (EU Environmental Noise Directive 2002/49/EC).

>>> round(float(leq([60.0, 60.0])[0]), 6)
60.0
>>> round(float(lden(60.0, 60.0, 60.0)), 2)
66.4
"""

from __future__ import annotations

from typing import Any

import numpy as np


def leq(levels_dba: Any, *, groups: Any = None, n_groups: int | None = None) -> np.ndarray:
    """Energy-average level overall (1-element array) or per integer group code."""
    x = np.asarray(levels_dba, dtype=np.float64)
    ok = ~np.isnan(x)
    e = 10.0 ** (x[ok] / 10.0)
    if groups is None:
        return np.array([10.0 * np.log10(e.mean())]) if e.size else np.array([np.nan])
    g = np.asarray(groups, dtype=np.int64)[ok]
    n = int(n_groups if n_groups is not None else (g.max() + 1 if g.size else 0))
    s = np.bincount(g, weights=e, minlength=n)
    c = np.bincount(g, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c > 0, 10.0 * np.log10(s / np.maximum(c, 1)), np.nan)


def period_of(ts: Any, *, utc_offset_h: float = 0.0) -> np.ndarray:
    """0 = day (07-19), 1 = evening (19-23), 2 = night (23-07), local time."""
    t = np.asarray(ts, dtype=np.float64) + utc_offset_h * 3600.0
    h = np.mod(t, 86400.0) / 3600.0
    return np.where((h >= 7) & (h < 19), 0, np.where((h >= 19) & (h < 23), 1, 2))


def lden(l_day: Any, l_evening: Any, l_night: Any) -> np.ndarray:
    d = np.asarray(l_day, dtype=np.float64)
    e = np.asarray(l_evening, dtype=np.float64)
    n = np.asarray(l_night, dtype=np.float64)
    return 10.0 * np.log10(
        (12 * 10 ** (d / 10) + 4 * 10 ** ((e + 5) / 10) + 8 * 10 ** ((n + 10) / 10)) / 24
    )
