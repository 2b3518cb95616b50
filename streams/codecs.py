"""Wire codecs of the derived topics (indicators, dead letters).

Readings frames are in :mod:`models.frame`. Derived messages are columnar JSON too::

    {"v": 1, "kind": "indicators", "window_s": 300,
     "ts": [...], "entity_type": [...], "entity_id": [...], "name": [...], "value": [...]}
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from models.frame import FrameError

OPT = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True, eq=False)
class IndicatorBatch:
    ts: np.ndarray  # float64 epoch s (window end)
    entity_type: np.ndarray  # object
    entity_id: np.ndarray  # object
    name: np.ndarray  # object
    value: np.ndarray  # float64
    window_s: int

    def __len__(self) -> int:
        return int(self.ts.shape[0])


def encode_indicators(b: IndicatorBatch) -> bytes:
    return orjson.dumps(
        {
            "v": 1,
            "kind": "indicators",
            "window_s": int(b.window_s),
            "ts": np.ascontiguousarray(b.ts, dtype=np.float64),
            "entity_type": b.entity_type.tolist(),
            "entity_id": b.entity_id.tolist(),
            "name": b.name.tolist(),
            "value": np.ascontiguousarray(b.value, dtype=np.float64),
        },
        option=OPT,
    )


def decode_indicators(raw: bytes) -> IndicatorBatch:
    try:
        d = orjson.loads(raw)
        n = len(d["ts"])
        batch = IndicatorBatch(
            ts=np.asarray(d["ts"], dtype=np.float64),
            entity_type=np.asarray(d["entity_type"], dtype=object),
            entity_id=np.asarray(d["entity_id"], dtype=object),
            name=np.asarray(d["name"], dtype=object),
            value=np.asarray(d["value"], dtype=np.float64),
            window_s=int(d["window_s"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FrameError("malformed_indicators", f"bad indicator message: {exc}") from None
    if d.get("v") != 1 or d.get("kind") != "indicators":
        raise FrameError("unknown_version", "not an indicators v1 message")
    for col in (batch.entity_type, batch.entity_id, batch.name, batch.value):
        if len(col) != n:
            raise FrameError("ragged", "indicator columns differ in length")
    return batch


def encode_deadletter(
    *, raw: bytes, reason: str, error: str, topic: str, partition: int, offset: int, at: float
) -> bytes:
    """A dead letter keeps the original bytes (base64), the reason and where it came from."""
    body: dict[str, Any] = {
        "v": 1,
        "reason": reason,
        "error": error[:2000],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "at": at,
        "raw_b64": base64.b64encode(raw).decode(),
    }
    return orjson.dumps(body)


def decode_deadletter(raw: bytes) -> dict[str, Any]:
    d: dict[str, Any] = orjson.loads(raw)
    d["raw"] = base64.b64decode(d.pop("raw_b64"))
    return d
