"""The sensor table: the index space every model works in.

Models address sensors by integer index. :class:`SensorTable` maps sensor ids to a *global*
index (position in the table) and, per kind, to a *local* index (position among the sensors
of that kind, which is what a per-kind detector's arrays are sized by). It also carries what
indicators need per sensor: district, gateway, segment length/free speed/capacity, coordinates,
reporting interval. A worker can build a table of only the sensors it owns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from config.domains import KIND_DOMAIN, KINDS
from models.base import ModelsError


@dataclass(frozen=True, eq=False)
class SensorTable:
    ids: np.ndarray  # object (str)
    kind: np.ndarray  # object
    district: np.ndarray  # object
    gateway: np.ndarray  # object
    x: np.ndarray
    y: np.ndarray
    interval_s: np.ndarray
    segment: np.ndarray  # object, "" when none
    length_km: np.ndarray  # share of the segment's length, NaN when none
    free_speed_kmh: np.ndarray
    capacity_vph: np.ndarray
    districts: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = self.ids.shape[0]
        for name in ("kind", "district", "gateway", "x", "y", "interval_s", "segment"):
            if getattr(self, name).shape[0] != n:
                raise ModelsError(f"sensor table: column {name!r} has a different length")
        for k in set(self.kind.tolist()):
            if k not in KIND_DOMAIN:
                raise ModelsError(f"sensor table: unknown kind {k!r}")
        if len(set(self.ids.tolist())) != n:
            raise ModelsError("sensor table: duplicate sensor ids")
        if not self.districts:
            object.__setattr__(self, "districts", tuple(sorted(set(self.district.tolist()))))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def from_city(cls, city: Any, *, sensors: Iterable[str] | None = None) -> SensorTable:
        """From a :class:`config.city.City` (optionally only the listed sensors)."""
        wanted = None if sensors is None else set(sensors)
        rows = [s for s in city.sensors if wanted is None or s.id in wanted]
        segs = city.segment_index
        per_seg: dict[str, int] = {}
        for s in rows:
            if s.segment:
                per_seg[s.segment] = per_seg.get(s.segment, 0) + 1

        def seg_attr(s: Any, name: str) -> float:
            if not s.segment or s.segment not in segs:
                return float("nan")
            v = float(getattr(segs[s.segment], name))
            return v / per_seg[s.segment] if name == "length_km" else v

        return cls(
            ids=np.array([s.id for s in rows], dtype=object),
            kind=np.array([s.kind for s in rows], dtype=object),
            district=np.array([s.district for s in rows], dtype=object),
            gateway=np.array([s.gateway for s in rows], dtype=object),
            x=np.array([s.x for s in rows], dtype=np.float64),
            y=np.array([s.y for s in rows], dtype=np.float64),
            interval_s=np.array([s.interval_s for s in rows], dtype=np.float64),
            segment=np.array([s.segment or "" for s in rows], dtype=object),
            length_km=np.array([seg_attr(s, "length_km") for s in rows]),
            free_speed_kmh=np.array([seg_attr(s, "free_speed_kmh") for s in rows]),
            capacity_vph=np.array([seg_attr(s, "capacity_vph") for s in rows]),
            districts=tuple(d.id for d in city.districts),
        )

    @classmethod
    def of(
        cls,
        ids: Sequence[str],
        kind: str | Sequence[str],
        *,
        district: str | Sequence[str] = "D0",
        interval_s: float = 30.0,
        x: Sequence[float] | None = None,
        y: Sequence[float] | None = None,
    ) -> SensorTable:
        """A table without a city (tests, ``citybrain score``)."""
        n = len(ids)

        def col(v: Any) -> np.ndarray:
            return np.array([v] * n if isinstance(v, str) else list(v), dtype=object)

        return cls(
            ids=np.array(list(ids), dtype=object),
            kind=col(kind),
            district=col(district),
            gateway=np.array(["G0"] * n, dtype=object),
            x=np.arange(n, dtype=np.float64) if x is None else np.asarray(x, dtype=np.float64),
            y=np.zeros(n) if y is None else np.asarray(y, dtype=np.float64),
            interval_s=np.full(n, interval_s),
            segment=np.array([""] * n, dtype=object),
            length_km=np.full(n, np.nan),
            free_speed_kmh=np.full(n, np.nan),
            capacity_vph=np.full(n, np.nan),
        )

    # --- index maps ----------------------------------------------------------------------
    @cached_property
    def index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.ids.tolist())}

    @cached_property
    def kinds(self) -> tuple[str, ...]:
        present = set(self.kind.tolist())
        return tuple(k for d in KINDS for k in KINDS[d] if k in present)

    @cached_property
    def members(self) -> dict[str, np.ndarray]:
        """kind -> global indices of its sensors (ascending)."""
        return {k: np.flatnonzero(self.kind == k) for k in self.kinds}

    @cached_property
    def local(self) -> np.ndarray:
        """global index -> local index within its kind."""
        out = np.full(len(self), -1, dtype=np.int64)
        for idx in self.members.values():
            out[idx] = np.arange(idx.shape[0])
        return out

    @cached_property
    def district_code(self) -> np.ndarray:
        pos = {d: i for i, d in enumerate(self.districts)}
        return np.array([pos[d] for d in self.district.tolist()], dtype=np.int64)

    def lookup(self, sensor_ids: Iterable[str]) -> np.ndarray:
        """Global indices of sensor ids, -1 for unknown ones."""
        idx = self.index
        return np.fromiter((idx.get(s, -1) for s in sensor_ids), dtype=np.int64)

    def ids_of(self, kind: str) -> np.ndarray:
        return self.ids[self.members[kind]]

    def gateway_sensors(self, gateway: str) -> list[str]:
        return self.ids[self.gateway == gateway].tolist()

    def neighbours(self, kind: str, k: int, *, same_district: bool = False) -> np.ndarray:
        """``(n_kind, k)`` local indices of the k nearest other sensors of ``kind`` (-1 pads)."""
        from sklearn.neighbors import NearestNeighbors

        g = self.members[kind]
        n = g.shape[0]
        out = np.full((n, k), -1, dtype=np.int64)
        if n <= 1:
            return out
        xy = np.column_stack([self.x[g], self.y[g]])
        groups = self.district[g] if same_district else np.zeros(n, dtype=object)
        for grp in sorted(set(groups.tolist())):
            sel = np.flatnonzero(groups == grp)
            if sel.shape[0] <= 1:
                continue
            kk = min(k + 1, sel.shape[0])
            nn = NearestNeighbors(n_neighbors=kk).fit(xy[sel])
            _, ind = nn.kneighbors(xy[sel])
            for row, i in enumerate(sel):
                others = [sel[j] for j in ind[row] if sel[j] != i][:k]
                out[i, : len(others)] = others
        return out
