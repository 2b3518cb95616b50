"""Traffic indicators: travel-time index, level of service, congestion index.

Definitions (per loop detector, which stands for its road segment):

* **Travel-time index** ``TTI = free_speed / speed`` -- observed travel time over free-flow
  travel time (1 = free flow, 2 = twice as long). Speeds are floored at ``min_speed_kmh`` so a
  standstill gives a large finite TTI.
* **Level of service** A-F from the speed as a share of free-flow speed (HCM 2010 urban
  streets): A > 85 %, B > 67 %, C > 50 %, D > 40 %, E > 30 %, F otherwise.
* **Congestion index** ``CI = TTI - 1`` (0 = free flow; 1 = travel takes twice as long),
  aggregated over a district or the city as the ratio of total travel time to total
  free-flow travel time minus one. The weights are vehicle-kilometres (``flow x length``);
  without flows, segment length alone (every segment counts as one vehicle) -- i.e.
  ``CI = sum(w * L / v) / sum(w * L / v_free) - 1``.

>>> congestion_index([25.0], [50.0], [1.0]).tolist()
[1.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOS_EDGES = (0.30, 0.40, 0.50, 0.67, 0.85)  # speed / free speed, ascending
LOS_NAMES = np.array(["F", "E", "D", "C", "B", "A"], dtype=object)


def travel_time_index(
    speed_kmh: Any, free_speed_kmh: Any, *, min_speed_kmh: float = 1.0
) -> np.ndarray:
    v = np.maximum(np.asarray(speed_kmh, dtype=np.float64), min_speed_kmh)
    return np.asarray(free_speed_kmh, dtype=np.float64) / v


def level_of_service(speed_kmh: Any, free_speed_kmh: Any) -> np.ndarray:
    """LOS letters A-F (object array); NaN speeds give ``""``."""
    ratio = np.asarray(speed_kmh, dtype=np.float64) / np.asarray(free_speed_kmh, dtype=np.float64)
    # ratios exactly on an edge belong to the worse level ("more than 85 %" is A)
    out = LOS_NAMES[np.searchsorted(LOS_EDGES, ratio, side="left")]
    out = np.where(np.isnan(ratio), "", out)
    return np.asarray(out, dtype=object)


def congestion_index(
    speed_kmh: Any,
    free_speed_kmh: Any,
    length_km: Any,
    flow_vph: Any = None,
    *,
    groups: Any = None,
    n_groups: int | None = None,
    min_speed_kmh: float = 1.0,
) -> np.ndarray:
    """Congestion index ``sum(w L / v) / sum(w L / v_free) - 1`` per group (or overall).

    ``groups`` are integer codes (district index, ...); without them one value for all rows
    is returned as a 1-element array. Rows with NaN speed are left out; a group without
    valid rows is NaN.
    """
    v = np.maximum(np.asarray(speed_kmh, dtype=np.float64), min_speed_kmh)
    vf = np.asarray(free_speed_kmh, dtype=np.float64)
    length = np.asarray(length_km, dtype=np.float64)
    w = length if flow_vph is None else length * np.asarray(flow_vph, dtype=np.float64)
    v, vf, w = np.broadcast_arrays(v, vf, w)
    ok = ~(np.isnan(v) | np.isnan(w) | np.isnan(vf))
    if groups is None:
        g = np.zeros(v.shape[0], dtype=np.int64)
        n = 1
    else:
        g = np.asarray(groups, dtype=np.int64)
        n = int(n_groups if n_groups is not None else (g.max() + 1 if g.size else 0))
    a, b = w / v, w / vf
    if not ok.all():  # (boolean selection is skipped when every row is valid)
        g, a, b = g[ok], a[ok], b[ok]
    tt = np.bincount(g, weights=a, minlength=n)
    tt0 = np.bincount(g, weights=b, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        ci = tt / tt0 - 1.0
    ci[tt0 <= 0] = np.nan
    return ci
