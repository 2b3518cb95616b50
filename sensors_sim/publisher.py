"""Publishing frames and ground truth to Kafka (kafka-python), live or from a recording.

Frames go to ``settings.topic("readings.<domain>")`` keyed by gateway id (so a sensor's
readings stay in one partition, in order), on the partition ``settings.kafka_partition_by``
picks (:mod:`config.partitioning`: by default every gateway of a kind on one partition, so
the workers' scores do not depend on how many there are); labels go to
``settings.topic("groundtruth")`` as JSON keyed by label id, when event time reaches their start. Topics are created by the caller
(``citybrain up``, ``scripts/``) or auto-created by the broker.

:func:`run_live` paces event time against an injected :class:`~sensors_sim.clock.Clock`:
``speed`` × real time, or as fast as the producer takes it with ``speed=0``. It stops at the
end of the run or when ``stop`` is set (the CLI sets it on SIGTERM/SIGINT), and always flushes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from config.city import City
from config.domains import DOMAINS
from config.partitioning import CityPartitioner
from models.frame import Frame, encode
from sensors_sim.clock import Clock, RealClock
from sensors_sim.errors import SimError
from sensors_sim.labels import Label

log = logging.getLogger(__name__)


class ProducerLike(Protocol):
    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


def producer_config(
    settings: Any,
    *,
    city: City | None = None,
    linger_ms: int = 20,
    batch_size: int = 512 * 1024,
    compression: str | None = None,
    acks: int | str = "all",
) -> dict[str, Any]:
    """kafka-python ``KafkaProducer`` options for publishing frames, from :class:`Settings`;
    frames are placed by ``settings.kafka_partition_by`` over the gateways of ``city`` (by
    default ``settings.city_file``)."""
    if linger_ms < 0:
        raise ValueError(f"linger_ms must be >= 0, got {linger_ms!r}")
    if batch_size < 1024:
        raise ValueError(f"batch_size must be >= 1024, got {batch_size!r}")
    if compression not in (None, "gzip", "snappy", "lz4", "zstd"):
        raise ValueError(
            f"compression must be None, gzip, snappy, lz4 or zstd, got {compression!r}"
        )
    opts: dict[str, Any] = dict(settings.kafka_common())
    ctx = settings.ssl_context()
    if ctx is not None:
        opts["ssl_context"] = ctx
    opts.update(
        client_id="citybrain-sim",
        acks=acks,
        linger_ms=linger_ms,
        batch_size=batch_size,
        compression_type=compression,
        max_request_size=max(int(settings.max_frame_bytes) + 65536, 1_048_576),
        retries=5,
    )
    by: Any = getattr(settings, "kafka_partition_by", "gateway")
    if by != "gateway":
        if city is None:
            from config.city import load_city

            city = load_city(settings.city_file)
        opts["partitioner"] = CityPartitioner(city, by)
    return opts


@dataclass
class PublishStats:
    frames: int = 0
    readings: int = 0
    bytes: int = 0
    labels: int = 0
    errors: int = 0


class Publisher:
    """Sends frames and labels; owns its producer unless one is given."""

    def __init__(
        self, settings: Any, *, producer: ProducerLike | None = None, city: City | None = None,
        **producer_opts: Any,
    ) -> None:
        if producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            try:
                producer = KafkaProducer(**producer_config(settings, city=city, **producer_opts))
            except KafkaError as exc:
                raise SimError(
                    f"cannot connect to Kafka at {settings.kafka_bootstrap}: {exc}"
                ) from exc
        self.producer = producer
        self.topics = {d: settings.topic(f"readings.{d}") for d in DOMAINS}
        self.groundtruth = settings.topic("groundtruth")
        self.stats = PublishStats()
        self._lock = threading.Lock()
        self.first_error: BaseException | None = None

    def _on_error(self, exc: BaseException) -> None:
        with self._lock:
            self.stats.errors += 1
            if self.first_error is None:
                self.first_error = exc
                log.error("publishing failed: %s", exc)

    def _send(self, topic: str, key: bytes, value: bytes) -> None:
        fut = self.producer.send(topic, value=value, key=key)
        if hasattr(fut, "add_errback"):
            fut.add_errback(self._on_error)

    def publish(self, frames: Iterable[Frame]) -> None:
        for f in frames:
            value = encode(f)
            self._send(self.topics[f.domain], f.gateway.encode(), value)
            self.stats.frames += 1
            self.stats.readings += len(f)
            self.stats.bytes += len(value)

    def publish_raw(self, domain: str, gateway: str, value: bytes, readings: int = 0) -> None:
        """An already encoded frame (from a recording)."""
        self._send(self.topics[domain], gateway.encode(), value)
        self.stats.frames += 1
        self.stats.readings += readings
        self.stats.bytes += len(value)

    def publish_label(self, label: Label) -> None:
        self._send(self.groundtruth, label.id.encode(), label.to_json())
        self.stats.labels += 1

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout)
        if self.first_error is not None:
            raise SimError(
                f"{self.stats.errors} message(s) could not be published: {self.first_error}"
            )

    def close(self, timeout: float | None = 10.0) -> None:
        try:
            self.producer.flush(timeout)
        finally:
            self.producer.close(timeout)


def merge_frames(frames: list[Frame]) -> Frame:
    """Frames of one gateway as one frame, readings in the given order."""
    if len(frames) == 1:
        return frames[0]
    f0 = frames[0]
    return Frame(
        f0.gateway, f0.domain,
        np.concatenate([f.ts for f in frames]),
        np.concatenate([np.asarray(f.sensor_id, dtype=object) for f in frames]),
        np.concatenate([f.seq for f in frames]),
        {m: np.concatenate([f.metrics[m] for f in frames]) for m in f0.metrics},
    )


def coalesce(
    ticks: Iterable[tuple[float, list[Frame]]], *, span_s: float, max_readings: int = 2000
) -> Iterator[tuple[float, list[Frame]]]:
    """Group ``span_s`` seconds of event time into one frame per gateway (for replays).

    A frame per gateway and tick holds ~20 readings here; every Kafka message costs the
    producer, the broker, the worker and the sink about the same whatever its size, so a replay
    at full speed (``speed=0``) sends fewer, larger frames. Per gateway the readings keep their
    order (one frame, one key, one partition); across gateways the event-time skew is at most
    ``span_s``, the frames of a group are yielded at the group's first tick time. A merged frame
    holds at most ``max_readings`` readings (it is split beyond). ``span_s=0`` passes the ticks
    through unchanged.
    """
    if span_s < 0:
        raise ValueError(f"span_s must be >= 0, got {span_s!r}")
    if max_readings < 1:
        raise ValueError(f"max_readings must be >= 1, got {max_readings!r}")
    if span_s == 0:
        yield from ticks
        return
    group: dict[str, list[Frame]] = {}
    start: float | None = None

    def flush(t: float) -> tuple[float, list[Frame]]:
        out: list[Frame] = []
        for parts in group.values():
            chunk: list[Frame] = []
            n = 0
            for f in parts:
                if chunk and n + len(f) > max_readings:
                    out.append(merge_frames(chunk))
                    chunk, n = [], 0
                chunk.append(f)
                n += len(f)
            if chunk:
                out.append(merge_frames(chunk))
        group.clear()
        return t, out

    for t, frames in ticks:
        if start is not None and t - start >= span_s:
            yield flush(start)
            start = None
        if start is None:
            start = t
        for f in frames:
            group.setdefault(f.gateway, []).append(f)
    if start is not None and group:
        yield flush(start)


def _paced(
    ticks: Iterable[tuple[float, Any]], *, speed: float, clock: Clock, stop: threading.Event
) -> Iterator[tuple[float, Any]]:
    """Release ``(event time, item)`` pairs no faster than ``speed`` × real time."""
    if speed < 0:
        raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed!r}")
    wall0: float | None = None
    t0 = 0.0
    for t, item in ticks:
        if stop.is_set():
            return
        if speed > 0:
            if wall0 is None:
                wall0, t0 = clock.monotonic(), t
            delay = wall0 + (t - t0) / speed - clock.monotonic()
            if delay > 0 and clock.sleep(delay, stop):
                return
        yield t, item


def run_live(
    sim: Any,
    publisher: Publisher,
    *,
    speed: float,
    clock: Clock | None = None,
    stop: threading.Event | None = None,
    on_tick: Any = None,
    coalesce_s: float = 0.0,
) -> PublishStats:
    """Publish a :class:`~sensors_sim.engine.Simulator` run; returns the counts.

    ``on_tick(t, ticks_done)`` is called after every tick (progress, metrics); with
    ``coalesce_s`` > 0 a "tick" is a group of that much event time, each gateway's readings of
    the group in one frame (:func:`coalesce`: far fewer, larger messages for a replay at full
    speed; a live run at ``speed`` 1 keeps one frame per tick).
    """
    clock = clock or RealClock()
    stop = stop or threading.Event()
    labels = sorted(sim.labels, key=lambda lab: lab.start)
    li = 0
    done = 0
    try:
        ticks = coalesce(sim.ticks(), span_s=coalesce_s)
        for t, frames in _paced(ticks, speed=speed, clock=clock, stop=stop):
            while li < len(labels) and labels[li].start <= t:
                publisher.publish_label(labels[li])
                li += 1
            publisher.publish(frames)
            done += 1
            if on_tick is not None:
                on_tick(t, done)
    finally:
        publisher.flush()
    return publisher.stats
