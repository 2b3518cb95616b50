"""Recordings: a simulated run on disk (zstandard-compressed), replayable into Kafka at any speed.

The file is a zstd stream of lines, each starting with a one-letter type::

    H{"format": "citybrain-recording", "version": 1, "scenario": ..., "seed": ..., ...}
    L{label JSON}                      one per ground-truth label
    T1767571200.0                      a tick: frames below were delivered at this event time
    F<domain>\\t<gateway>\\t<readings>\\t<frame JSON>   the JSON: exactly the bytes published
    E{"ticks": ..., "frames": ..., "readings": ...}

The same scenario and seed give a byte-identical file. The labels are also written beside the
file as JSON lines (``<file>.labels.jsonl``). Replay sends each frame's bytes unchanged, keeps a
checkpoint (``<file>.replay.json``: ticks published and flushed) and can resume from it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import zstandard

from models.frame import Frame, decode, encode
from sensors_sim.clock import Clock, RealClock
from sensors_sim.errors import RecordingError
from sensors_sim.labels import Label
from sensors_sim.progress import Progress
from sensors_sim.publisher import Publisher, PublishStats, _paced

FORMAT = "citybrain-recording"
VERSION = 1


def labels_path(path: str | Path) -> Path:
    return Path(f"{path}.labels.jsonl")


def checkpoint_path(path: str | Path) -> Path:
    return Path(f"{path}.replay.json")


@dataclass
class RecordStats:
    ticks: int = 0
    frames: int = 0
    readings: int = 0
    raw_bytes: int = 0
    file_bytes: int = 0


def record(
    sim: Any,
    path: str | Path,
    *,
    level: int = 6,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> RecordStats:
    """Write ``sim``'s run to ``path``; returns counts (``file_bytes``: compressed size)."""
    if not 1 <= level <= 22:
        raise ValueError(f"level must be in [1, 22], got {level!r}")
    path = Path(path)
    stats = RecordStats()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "city": sim.city.name,
        "city_source": str(sim.city.source),
        "sensors": sim.sensors,
        "scenario": sim.scenario.name,
        "scenario_source": sim.scenario.source,
        "seed": sim.seed,
        "start": sim.start,
        "end": sim.end,
        "tick_s": sim.tick_s,
    }
    total = (sim.end - sim.start) / sim.tick_s
    tmp = path.with_name(path.name + ".part")
    cctx = zstandard.ZstdCompressor(level=level)
    try:
        with open(tmp, "wb") as fh, cctx.stream_writer(fh, closefd=False) as out:
            w = io.BufferedWriter(out, buffer_size=1 << 20)  # type: ignore[arg-type,type-var]
            w.write(b"H" + orjson.dumps(header) + b"\n")
            for lab in sim.labels:
                w.write(b"L" + lab.to_json() + b"\n")
            for t, frames in sim.ticks():
                if stop is not None and stop.is_set():
                    break
                parts = [b"T" + repr(float(t)).encode()]
                for f in frames:
                    if "\t" in f.gateway or "\n" in f.gateway:
                        raise RecordingError(f"gateway id {f.gateway!r} holds a tab or newline")
                    value = encode(f)
                    parts.append(
                        b"F%s\t%s\t%d\t%s" % (f.domain.encode(), f.gateway.encode(), len(f), value)
                    )
                    stats.frames += 1
                    stats.readings += len(f)
                    stats.raw_bytes += len(value)
                w.write(b"\n".join(parts) + b"\n")
                stats.ticks += 1
                if progress is not None:
                    progress.update(
                        stats.ticks if stats.ticks <= total else total, readings=stats.readings
                    )
            trailer = {"ticks": stats.ticks, "frames": stats.frames, "readings": stats.readings}
            w.write(b"E" + orjson.dumps(trailer) + b"\n")
            w.flush()
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    with open(labels_path(path), "wb") as fh:
        for lab in sim.labels:
            fh.write(lab.to_json() + b"\n")
    if progress is not None:
        progress.close()
    stats.file_bytes = path.stat().st_size
    return stats


@dataclass
class Tick:
    t: float
    #: (domain, gateway, readings, frame bytes)
    frames: list[tuple[str, str, int, bytes]]


class Recording:
    """A recording opened for reading: ``header``, ``labels``, then :meth:`ticks` (streamed)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise RecordingError(f"{self.path}: no such recording")
        lines = self._lines()
        try:
            first = next(lines)
        except (StopIteration, zstandard.ZstdError) as exc:
            raise RecordingError(
                f"{self.path}: not a zstd-compressed citybrain recording ({exc})"
            ) from None
        if not first.startswith(b"H"):
            raise RecordingError(f"{self.path}: no recording header")
        try:
            self.header: dict[str, Any] = orjson.loads(first[1:])
        except orjson.JSONDecodeError as exc:
            raise RecordingError(f"{self.path}: bad header: {exc}") from None
        if self.header.get("format") != FORMAT or self.header.get("version") != VERSION:
            raise RecordingError(
                f"{self.path}: format={self.header.get('format')!r} version={self.header.get('version')!r}: "
                f"expected {FORMAT} version {VERSION}"
            )
        self.labels: list[Label] = []
        for line in lines:
            if not line.startswith(b"L"):
                break
            self.labels.append(Label.from_json(line[1:]))
        self.trailer: dict[str, Any] | None = None

    @property
    def total_ticks(self) -> int:
        """Ticks in the file: exact once :meth:`ticks` has run to the end, else the ticks of
        the simulated span (late deliveries can add a few after it)."""
        if self.trailer is not None:
            return int(self.trailer["ticks"])
        h = self.header
        return round((h["end"] - h["start"]) / h["tick_s"])

    def _lines(self) -> Iterator[bytes]:
        dctx = zstandard.ZstdDecompressor()
        with open(self.path, "rb") as fh, dctx.stream_reader(fh) as raw:
            reader = io.BufferedReader(raw, buffer_size=1 << 20)  # type: ignore[arg-type]
            for line in reader:
                yield line.rstrip(b"\n")

    def ticks(self) -> Iterator[Tick]:
        """The ticks in order, each with its frames' bytes."""
        current: Tick | None = None
        try:
            for line in self._lines():
                tag = line[:1]
                if tag == b"F":
                    if current is None:
                        raise RecordingError(f"{self.path}: a frame before the first tick")
                    domain, gateway, n, value = line[1:].split(b"\t", 3)
                    current.frames.append((domain.decode(), gateway.decode(), int(n), value))
                elif tag == b"T":
                    if current is not None:
                        yield current
                    current = Tick(float(line[1:]), [])
                elif tag == b"E":
                    self.trailer = orjson.loads(line[1:])
        except zstandard.ZstdError as exc:
            raise RecordingError(f"{self.path}: corrupt or truncated ({exc})") from None
        if current is not None:
            yield current

    def frames(self) -> Iterator[tuple[float, list[Frame]]]:
        """(tick time, decoded frames): for tests and analysis."""
        for tick in self.ticks():
            yield tick.t, [decode(v) for _, _, _, v in tick.frames]


def replay(
    path: str | Path,
    publisher: Publisher,
    *,
    speed: float,
    clock: Clock | None = None,
    stop: threading.Event | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    checkpoint_every_s: float = 2.0,
) -> tuple[PublishStats, int]:
    """Publish a recording; returns (counts, ticks done in total).

    With ``resume`` it skips the ticks a previous replay of this file published and flushed
    (the checkpoint beside the file); the checkpoint is updated every ``checkpoint_every_s``
    (after a flush) and at the end. Readings carry their ``seq``, so a tick published twice
    is harmless downstream.
    """
    clock = clock or RealClock()
    stop = stop or threading.Event()
    rec = Recording(path)
    ck = checkpoint_path(path)
    skip = 0
    if resume and ck.exists():
        try:
            skip = int(orjson.loads(ck.read_bytes())["ticks_done"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RecordingError(
                f"{ck}: unreadable checkpoint ({exc}); replay without --resume"
            ) from None
    labels = sorted(rec.labels, key=lambda lab: lab.start)
    done = 0
    last_ck = clock.monotonic()

    def save(n: int, t: float) -> None:
        tmp = ck.with_name(ck.name + ".tmp")
        tmp.write_bytes(orjson.dumps({"ticks_done": n, "t": t, "path": str(path)}))
        tmp.replace(ck)

    def stream() -> Iterator[tuple[float, Tick]]:
        nonlocal done
        for tick in rec.ticks():
            if done < skip:
                done += 1
                if progress is not None:
                    progress.update(done)
                continue
            yield tick.t, tick

    li = 0
    t_last = rec.header["start"]
    try:
        for t, tick in _paced(stream(), speed=speed, clock=clock, stop=stop):
            while li < len(labels) and labels[li].start <= t:
                if done >= skip:
                    publisher.publish_label(labels[li])
                li += 1
            for domain, gateway, n, value in tick.frames:
                publisher.publish_raw(domain, gateway, value, readings=n)
            done += 1
            t_last = t
            if progress is not None:
                progress.update(done, readings=publisher.stats.readings)
            if clock.monotonic() - last_ck >= checkpoint_every_s:
                publisher.flush()
                save(done, t)
                last_ck = clock.monotonic()
    finally:
        publisher.flush()
        save(done, t_last)
        if progress is not None:
            progress.close()
    return publisher.stats, done
