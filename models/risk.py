"""District risk 0-100 from domain sub-scores, with explainable contributions.

Per district and domain the sub-score is the mean of the ``top_k`` largest fresh anomaly
scores of *healthy* sensors (scores older than ``stale_s`` do not count), mapped by
``g(s) = clip((s - 0.5) / 0.5, 0, 1) ** 2`` (0.5 is an ordinary reading under the arctan
calibration, 1 an extreme one), optionally raised by an indicator sub-score (AQI, congestion)
the caller passes. Risk is ``100 * sum_d w_d g_d / max_d w_d``, capped at 100: one domain at
full alarm with the largest weight gives 100; lighter weights count proportionally, several
domains add up. Each district reports its domain contributions and the sensors behind them,
and a colour from China's four-level warning scale (blue < yellow < orange < red; ``none``
below the blue cut-off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from config.domains import DOMAINS
from models.base import PerSensorState, check_int, check_positive, sweep_length

COLOURS = ("none", "blue", "yellow", "orange", "red")


@dataclass(frozen=True, slots=True)
class RiskResult:
    districts: tuple[str, ...]
    risk: np.ndarray  # (n_districts,) 0..100
    colour: np.ndarray  # object
    contributions: dict[str, np.ndarray]  # domain -> (n_districts,) points of risk
    top_sensors: list[dict[str, list[tuple[str, float]]]]  # per district: domain -> [(id, score)]

    def to_records(self, ts: float) -> list[dict[str, Any]]:
        """JSON-ready rows (``city.risk``)."""
        return [
            {
                "ts": ts,
                "district": d,
                "risk": float(self.risk[i]),
                "colour": str(self.colour[i]),
                "contributions": {k: float(v[i]) for k, v in self.contributions.items()},
                "top_sensors": {
                    k: [[s, sc] for s, sc in v] for k, v in self.top_sensors[i].items()
                },
            }
            for i, d in enumerate(self.districts)
        ]


def colour_of(risk: np.ndarray, cutoffs: dict[str, float]) -> np.ndarray:
    edges = [cutoffs["blue"], cutoffs["yellow"], cutoffs["orange"], cutoffs["red"]]
    return np.asarray(COLOURS, dtype=object)[np.searchsorted(edges, risk, side="right")]


class DistrictRisk(PerSensorState):
    """Holds the latest score per sensor (global index of a :class:`~models.sensors.SensorTable`)."""

    _state_arrays: ClassVar[tuple[str, ...]] = ("score", "score_ts", "first_ts")

    def __init__(
        self,
        table: Any,
        *,
        weights: dict[str, float],
        cutoffs: dict[str, float],
        top_k: int = 3,
        stale_s: float = 300.0,
    ) -> None:
        self.table = table
        self.weights = {d: float(weights.get(d, 0.0)) for d in DOMAINS}
        self.cutoffs = dict(cutoffs)
        self.top_k = check_int("top_k", top_k, 1)
        self.stale_s = check_positive("stale_s", stale_s)
        self._init_ids(table.ids)
        n = len(self.ids)
        self.score = np.full(n, np.nan)
        self.score_ts = np.full(n, np.nan)
        self.first_ts = np.full(n, np.nan)  # first reading seen (warm-up gating)
        dom = np.array(
            [{"traffic": 0, "environment": 1, "utility": 2}[_dom(k)] for k in table.kind.tolist()]
        )
        self._domain = dom.astype(np.int64)

    def params(self) -> dict[str, Any]:
        return {"top_k": self.top_k, "stale_s": self.stale_s}

    def observe(self, sensor: np.ndarray, ts: np.ndarray, score: np.ndarray) -> None:
        """Record scores (global indices); NaN scores are ignored, later readings win.
        Every reading, scored or not, starts its sensor's warm-up clock (``first_ts``)."""
        new = np.isnan(self.first_ts[sensor])
        if new.any():
            np.fmin.at(self.first_ts, sensor[new], ts[new])
        ok = ~np.isnan(score)
        if not ok.any():
            return
        k = sweep_length(sensor) if ok.all() else None
        t2 = None if k is None else ts.reshape(-1, k)
        if k is not None and t2 is not None and bool((t2[1:] >= t2[:-1]).all()):
            # sweeps of the same sensors, each sensor's times non-decreasing: the last sweep
            # holds every sensor's latest reading (ties: the later one, as the sort below)
            s, t, v = sensor[-k:], ts[-k:], score[-k:]
        else:
            s, t, v = sensor[ok], ts[ok], score[ok]
            order = np.lexsort((t, s))  # last per sensor = latest event time
            s, t, v = s[order], t[order], v[order]
            last = np.append(s[1:] != s[:-1], True)
            s, t, v = s[last], t[last], v[last]
        newer = ~(self.score_ts[s] > t)
        self.score[s[newer]] = v[newer]
        self.score_ts[s[newer]] = t[newer]

    def assess(
        self,
        now: float,
        *,
        unhealthy: np.ndarray | None = None,
        indicators: dict[str, np.ndarray] | None = None,
    ) -> RiskResult:
        """Risk per district at event time ``now``. ``unhealthy``: bool per sensor (global);
        ``indicators``: domain -> (n_districts,) sub-scores in [0, 1] from indicators."""
        nd = len(self.table.districts)
        dcode = self.table.district_code
        fresh = (now - self.score_ts <= self.stale_s) & ~np.isnan(self.score)
        if unhealthy is not None:
            fresh &= ~unhealthy
        g_all = np.clip((self.score - 0.5) / 0.5, 0.0, 1.0) ** 2
        wmax = max(self.weights.values())
        contributions: dict[str, np.ndarray] = {}
        tops: list[dict[str, list[tuple[str, float]]]] = [{} for _ in range(nd)]
        for di, dom in enumerate(DOMAINS):
            sel = np.flatnonzero(fresh & (self._domain == di))
            sub = np.zeros(nd)
            if sel.size:
                order = sel[np.lexsort((-self.score[sel], dcode[sel]))]
                dc = dcode[order]
                start = np.searchsorted(dc, dc, side="left")
                rank = np.arange(order.size) - start
                top = rank < self.top_k
                sums = np.bincount(dc[top], weights=g_all[order[top]], minlength=nd)
                cnts = np.bincount(dc[top], minlength=nd)
                sub = np.where(cnts > 0, sums / np.maximum(cnts, 1), 0.0)
                for j in np.flatnonzero(top):
                    if g_all[order[j]] > 0:
                        tops[dc[j]].setdefault(dom, []).append(
                            (str(self.ids[order[j]]), float(self.score[order[j]]))
                        )
            if indicators and dom in indicators:
                sub = np.maximum(sub, np.clip(np.nan_to_num(indicators[dom]), 0.0, 1.0))
            contributions[dom] = 100.0 * self.weights[dom] * sub / wmax
        risk = np.minimum(sum(contributions.values()), 100.0)
        return RiskResult(
            districts=tuple(self.table.districts),
            risk=risk,
            colour=colour_of(risk, self.cutoffs),
            contributions=contributions,
            top_sensors=tops,
        )


def _dom(kind: str) -> str:
    from config.domains import KIND_DOMAIN

    return KIND_DOMAIN[kind]
