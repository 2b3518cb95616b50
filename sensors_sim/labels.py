"""Ground truth: one :class:`Label` per injected incident or sensor fault.

A label says *what* happened (``type``), *when* (event time, ``start`` <= ts <= ``end``,
epoch seconds), *where* (``district``) and *which sensors* show it. The simulator guarantees
that a labelled effect is visible in the data exactly at those sensors inside that window, and
nowhere else. Labels are JSON on the wire (``city.groundtruth``) and beside a recording.

>>> lab = Label("crash-1", "crash", 100.0, 700.0, ("TR-S000001",), "D01")
>>> Label.from_json(lab.to_json()) == lab
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

INCIDENT_TYPES: Final[tuple[str, ...]] = ("crash", "pollution", "burst", "heatwave", "event")
VALUE_FAULTS: Final[tuple[str, ...]] = ("stuck", "dropout", "spike", "drift", "out_of_range")
DELIVERY_FAULTS: Final[tuple[str, ...]] = ("duplicate", "out_of_order", "late")
FAULT_TYPES: Final[tuple[str, ...]] = VALUE_FAULTS + DELIVERY_FAULTS
LABEL_TYPES: Final[tuple[str, ...]] = INCIDENT_TYPES + FAULT_TYPES


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    type: str
    start: float
    end: float
    sensors: tuple[str, ...]
    district: str
    #: type-specific facts (segment, zone, venue, metric, delay_s, ...), JSON-safe values
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def category(self) -> str:
        """``"incident"`` or ``"fault"``."""
        return "incident" if self.type in INCIDENT_TYPES else "fault"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "category": self.category,
            "start": self.start,
            "end": self.end,
            "district": self.district,
            "sensors": list(self.sensors),
            "detail": self.detail,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Label:
        return cls(
            id=str(d["id"]),
            type=str(d["type"]),
            start=float(d["start"]),
            end=float(d["end"]),
            sensors=tuple(str(s) for s in d["sensors"]),
            district=str(d["district"]),
            detail=dict(d.get("detail") or {}),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Label:
        return cls.from_dict(orjson.loads(raw))
