"""The worker's logic, free of Faust: raw messages in, encoded outputs out.

The Faust agent (:mod:`streams.app`) is a thin adapter around :class:`Processor`, which also
runs in tests and benchmarks without a broker. It validates each frame against the city (unknown
gateway, sensor or metric set → dead letter), feeds the per-gateway event-time windows and emits
rolling-mean indicators for the windows the watermark closed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from config.city import City
from config.domains import KINDS
from models.frame import Frame, FrameError, decode, encode
from streams.codecs import IndicatorBatch, encode_deadletter, encode_indicators
from streams.windows import GatewayWindows

STEP_S = 60


@dataclass(frozen=True, slots=True)
class Message:
    """A consumed Kafka message, as much of it as the processor needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class Outputs:
    indicators: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value)
    deadletters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    readings: int = 0
    indicator_rows: int = 0


def validate_frame(city: City, frame: Frame) -> None:
    """Check a decoded frame against the city: known gateway, its sensors, its kind's metrics."""
    g = city.gateway_index.get(frame.gateway)
    if g is None:
        raise FrameError("unknown_gateway", f"unknown gateway {frame.gateway!r}")
    if frame.domain != g.domain or set(frame.metrics) != set(KINDS[g.domain][g.kind]):
        raise FrameError(
            "unknown_metrics",
            f"gateway {g.id} is a {g.kind} gateway; frame has {frame.domain} "
            f"metrics {sorted(frame.metrics)}",
        )
    local = {s.id for s in g.sensors}
    unknown = [s for s in frame.sensor_id if s not in local]
    if unknown:
        raise FrameError(
            "unknown_sensor", f"gateway {g.id}: unknown sensor(s) {sorted(set(unknown))[:5]}"
        )


class Processor:
    def __init__(
        self,
        city: City,
        *,
        window_s: int = 300,
        lateness_s: int = 120,
        max_frame_bytes: int = 4_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.city = city
        self.window_s, self.lateness_s = window_s, lateness_s
        self.max_frame_bytes = max_frame_bytes
        self.clock = clock
        self.windows: dict[str, GatewayWindows] = {}
        self.dead_by_reason: Counter[str] = Counter()
        self._local: dict[str, dict[str, int]] = {}

    def _gateway_state(self, gateway: str) -> tuple[GatewayWindows, dict[str, int]]:
        w = self.windows.get(gateway)
        if w is None:
            g = self.city.gateway_index[gateway]
            w = GatewayWindows(
                n_sensors=len(g.sensors),
                n_metrics=len(KINDS[g.domain][g.kind]),
                window_s=self.window_s,
                step_s=STEP_S,
                lateness_s=self.lateness_s,
            )
            self.windows[gateway] = w
            self._local[gateway] = {s.id: i for i, s in enumerate(g.sensors)}
        return w, self._local[gateway]

    def _dead(self, out: Outputs, msg: Message, reason: str, error: str, raw: bytes | None = None) -> None:
        self.dead_by_reason[reason] += 1
        out.deadletters.append(
            (
                msg.key,
                encode_deadletter(
                    raw=msg.value if raw is None else raw,
                    reason=reason,
                    error=error,
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    at=self.clock(),
                ),
            )
        )

    def validate(self, frame: Frame) -> None:
        validate_frame(self.city, frame)

    def process(self, messages: Iterable[Message]) -> Outputs:
        out = Outputs()
        touched: set[str] = set()
        for msg in messages:
            try:
                frame = decode(msg.value, max_bytes=self.max_frame_bytes)
                self.validate(frame)
            except FrameError as exc:
                self._dead(out, msg, exc.reason, str(exc))
                continue
            g = self.city.gateway_index[frame.gateway]
            w, local = self._gateway_state(frame.gateway)
            idx = np.fromiter((local[s] for s in frame.sensor_id), dtype=np.int64, count=len(frame))
            metrics = KINDS[g.domain][g.kind]
            values = np.column_stack([frame.metrics[m] for m in metrics])
            late = w.add(idx, frame.ts, frame.seq, values)
            out.readings += len(frame)
            if late.any():
                late_frame = Frame(
                    frame.gateway, frame.domain, frame.ts[late], frame.sensor_id[late],
                    frame.seq[late], {m: v[late] for m, v in frame.metrics.items()},
                )
                self._dead(
                    out, msg, "late",
                    f"gateway {g.id}: {int(late.sum())} reading(s) older than the closed "
                    f"window end {w.closed_until}",
                    raw=encode(late_frame),
                )
            touched.add(frame.gateway)
        for gateway in sorted(touched):
            batch = self._emit(gateway)
            if batch is not None:
                out.indicators.append((gateway.encode(), encode_indicators(batch)))
                out.indicator_rows += len(batch)
        return out

    def _emit(self, gateway: str) -> IndicatorBatch | None:
        w = self.windows[gateway]
        ends, idx, means = w.emit()
        if not len(ends):
            return None
        g = self.city.gateway_index[gateway]
        metrics = KINDS[g.domain][g.kind]
        sensor_ids = np.array([s.id for s in g.sensors], dtype=object)
        k, m = means.shape
        return IndicatorBatch(
            ts=np.repeat(ends, m),
            entity_type=np.full(k * m, "sensor", dtype=object),
            entity_id=np.repeat(sensor_ids[idx], m),
            name=np.tile(np.array([f"{x}_mean" for x in metrics], dtype=object), k),
            value=means.ravel(),
            window_s=self.window_s,
        )
