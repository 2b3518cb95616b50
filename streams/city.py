"""The city-wide tick of a group of stream workers: one owner, the whole city's sensors.

District risk, alerts, sensor-health reports and the city indicators (congestion, AQI) read
*every* sensor of the city: a district's risk is the top scores of its sensors, a collective
alert compares a district with the rest of the city, the AQI alert compares a station with the
city's median. A worker holds only the sensors of its partitions, so a tick per worker would
describe a part of the city (and with two workers, two different risks of one district would
race for the same row). The tick therefore runs once, in one place:

1. every worker, when its event-time watermark passes a tick boundary, sends the tick's inputs
   of the sensors it changed since its last send (:meth:`models.stack.CityModels.tick_state`:
   latest scores, health clocks, window means; a few hundred kB for the default city) to
   partition 0 of the ``tickstate`` topic, with the boundary and the readings partitions it
   owns;
2. the worker that owns that partition (Faust assigns it with the readings partitions of the
   same number) merges them into a :class:`CityTicker`, which holds the whole city's tick
   inputs, and ticks at a boundary once *every* readings partition has reported it; a
   partition that stays behind for ``wait_s`` of wall time (its worker died, it has no data)
   stops holding the tick back until it reports again;
3. the ticker's state (alerts, the merged inputs, the partitions' boundaries, and the offset of
   the last tick-state message it holds) is the ``__city__`` record of the state changelog,
   checkpointed with the rest of the owner's state and restored by the next owner, so a
   redelivered tick-state message is recognised by its offset.

One worker is a group of one: it sends to itself and ticks as before, with the same inputs at
the same boundaries (``tests/streams/test_city.py`` compares the outputs with the one-process
tick, also for two workers).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from streams.codecs import decode_snapshot, encode_snapshot
from streams.processor import Outputs, Processor

log = logging.getLogger("citybrain.city")

#: the partition of the tick-state topic that carries the messages (its other partitions stay
#: empty: the topic has as many as the readings topics, so Faust's assignor co-partitions it)
TICK_PARTITION = 0
#: sensors per message (tick states, city snapshot chunks): ~60 bytes each after zstd, so a
#: message stays far below the broker's default limit of 1 MB whatever the city's size
MAX_SENSORS_PER_MESSAGE = 4000


def split_tick_state(state: dict[str, Any], max_sensors: int) -> list[dict[str, Any]]:
    """:meth:`models.stack.CityModels.tick_state` cut into parts of at most ``max_sensors``
    sensors (by ranges of the sensor index; applying the parts in any order applies the
    whole)."""
    idx = np.asarray(state["idx"], dtype=np.int64)
    if idx.size <= max_sensors:
        return [state]
    cuts = idx[::max_sensors].tolist()[1:]
    bounds = list(zip([-1, *cuts], [*cuts, int(idx.max()) + 1], strict=True))
    out = []
    for lo, hi in bounds:
        sel = (idx >= lo) & (idx < hi)
        part: dict[str, Any] = {
            "watermark": state.get("watermark"),
            **{k: np.asarray(state[k])[sel] for k in ("idx", "score", "score_ts", "first_ts")},
            "kinds": {},
        }
        for kind, ks in state["kinds"].items():
            g = np.asarray(ks["idx"], dtype=np.int64)
            ksel = (g >= lo) & (g < hi)
            if ksel.any():
                part["kinds"][kind] = {k: np.asarray(v)[ksel] for k, v in ks.items()}
        out.append(part)
    return out


def encode_tick_state(boundary: float, parts: Iterable[str], state: dict[str, Any],
                      max_sensors: int = MAX_SENSORS_PER_MESSAGE) -> list[bytes]:
    """A worker's tick-state messages: the boundary its watermark passed, the tick inputs of
    its changed sensors (in messages of at most ``max_sensors``) and, in the last message only,
    the readings partitions (``"topic:partition"``) it owns, so the owner ticks only once it
    has them all (a worker's messages are sent in order to one partition)."""
    chunks = split_tick_state(state, max_sensors)
    return [encode_snapshot({"v": 1, "boundary": float(boundary),
                             "parts": sorted(parts) if i == len(chunks) - 1 else [],
                             "state": c})
            for i, c in enumerate(chunks)]


class CityTicker:
    """Merges the workers' tick states and ticks for the whole city (see the module docstring).

    ``processor``: a :class:`~streams.processor.Processor` with models that ticks itself (not
    ``publish_ticks``); its models score nothing here, they only hold the merged inputs.
    ``expected``: every readings partition (``"topic:partition"``); one that never reported
    holds the first ticks back for ``wait_s`` at most.
    """

    def __init__(self, processor: Processor, *, expected: Iterable[str] = (),
                 wait_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        if processor.models is None or processor.publish_ticks:
            raise ValueError("the city ticker needs a processor with models that ticks itself")
        self.proc = processor
        self.models = processor.models
        self.wait_s = float(wait_s)
        self.clock = clock
        self.expected = set(expected)
        self.parts: dict[str, float] = {}  # partition -> last boundary reported
        self.behind_since: dict[str, float] = {}  # partition -> when it began to hold a tick
        self.given_up: set[str] = set()  # partitions not waited for (logged once)
        self.last_tick: float | None = None
        self.position = -1  # offset of the last tick-state message applied
        self.heard = np.zeros(len(self.models.table), dtype=bool)
        self.dirty = False  # changed since the last snapshot
        self.applied = 0
        self.skipped = 0
        self.ticks = 0

    # -- input -------------------------------------------------------------------------------
    def apply(self, offset: int, value: bytes) -> Outputs:
        """Merge one tick-state message (at ``offset`` of the tick partition) and tick if every
        partition has passed a new boundary. A message at or below :attr:`position` is already
        in this state (redelivered after a restart) and changes nothing."""
        out = Outputs()
        if offset <= self.position:
            self.skipped += 1
            return out
        body = decode_snapshot(value)
        state = body["state"]
        self.models.apply_tick_state(state)
        self.heard[np.asarray(state["idx"], dtype=np.int64)] = True
        b = float(body["boundary"])
        for p in body["parts"]:
            self.parts[p] = max(self.parts.get(p, -np.inf), b)
            self.behind_since.pop(p, None)
            if p in self.given_up:
                self.given_up.discard(p)
                log.info("partition %s reports again (boundary %.0f)", p, b)
        self.position = offset
        self.applied += 1
        self.dirty = True
        self._maybe_tick(out)
        return out

    def poll(self) -> Outputs:
        """Tick if a partition that held the tick back has now been waited for long enough
        (called by a timer: no message may come)."""
        out = Outputs()
        if self.parts:
            self._maybe_tick(out)
        return out

    def ready(self) -> float | None:
        """The boundary every partition still waited for has reported (None: none yet)."""
        if not self.parts:
            return None
        top = max(self.parts.values())
        now = self.clock()
        live = []
        for p in sorted(self.expected | self.parts.keys()):
            b = self.parts.get(p, -np.inf)
            if b >= top:
                live.append(b)
                continue
            since = self.behind_since.setdefault(p, now)
            if now - since > self.wait_s:
                if p not in self.given_up:
                    self.given_up.add(p)
                    log.warning("readings partition %s has not reported tick %.0f for %.0f s; "
                                "ticking without it until it does", p, top, now - since)
                continue
            live.append(b)
        return min(live) if live else None

    def _maybe_tick(self, out: Outputs) -> None:
        r = self.ready()
        if r is None or not np.isfinite(r) or (self.last_tick is not None and r <= self.last_tick):
            return
        self.last_tick = r
        self.models.watermark = max(self.models.watermark, r)
        self.proc.tick(r, out)
        self.ticks += 1
        self.dirty = True

    # -- state -------------------------------------------------------------------------------
    def snapshot(self, max_sensors: int = MAX_SENSORS_PER_MESSAGE) -> list[bytes]:
        """The ``__city__`` records: first the main one (alerts, health reported, tick clock,
        the partitions' boundaries, the position), then the merged inputs of every sensor heard
        of in chunks of at most ``max_sensors``. Every record carries the same ``version`` (the
        position and a random tag), so a restore never mixes chunks of two snapshots."""
        version = f"{self.position}:{secrets.token_hex(8)}"
        chunks = split_tick_state(self.models.tick_state(np.flatnonzero(self.heard)),
                                  max_sensors)
        main = self.proc.snapshot_city({
            "v": 2,
            "version": version,
            "chunks": len(chunks),
            "last_tick": self.last_tick,
            "position": self.position,
            "parts": self.parts,
        })
        return [main, *(encode_snapshot({"version": version, "tick_state": c})
                        for c in chunks)]

    def restore(self, blob: bytes, chunks: Iterable[bytes] = ()) -> None:
        """Restore :meth:`snapshot` (its main record and its chunks, in any order; chunks of
        another version are ignored). Inputs missing from the chunks come again with the next
        tick states (logged); a record of an older format restores its alerts only."""
        body = self.proc.restore_city(blob)
        self.last_tick = body.get("last_tick")
        self.position = int(body.get("position", -1))
        self.parts = {str(k): float(v) for k, v in (body.get("parts") or {}).items()}
        version, want, got = body.get("version"), int(body.get("chunks") or 0), 0
        for c in chunks:
            cb = decode_snapshot(c)
            if version is None or cb.get("version") != version:
                continue
            ts = cb["tick_state"]
            self.models.apply_tick_state(ts)
            self.heard[np.asarray(ts["idx"], dtype=np.int64)] = True
            got += 1
        if got < want:
            log.warning("city state: %d of %d chunks of its sensors' inputs found; the rest "
                        "come with the next tick states", got, want)
        self.behind_since.clear()
        self.given_up.clear()
        self.dirty = False

    @property
    def sensors(self) -> int:
        """Sensors whose tick inputs this state holds."""
        return int(self.heard.sum())
