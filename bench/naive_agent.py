"""The naive baseline of ``citybrain bench pipeline``: a Faust agent, one reading per message.

Each message is one JSON reading ``{"sensor_id", "ts", "seq", "metrics": {name: value}}``.
Per event the agent decodes it and updates a per-sensor rolling mean over the last
``NAIVE_WINDOW_S`` seconds of event time for every metric (deque + running sums, the same
``<metric>_mean`` indicator the real worker computes per window). It is run as a subprocess
worker (``python -m bench.naive_agent``) and configured by environment variables:

``NAIVE_BOOTSTRAP``, ``NAIVE_TOPIC``, ``NAIVE_GROUP``, ``NAIVE_EXPECTED`` (readings to process),
``NAIVE_RESULT`` (file to write ``{"readings", "seconds", "first", "last"}`` to when done),
``NAIVE_WINDOW_S`` (default 300).
"""

from __future__ import annotations

import collections
import os
import sys
import time
from pathlib import Path
from typing import Any

import faust
import orjson

BOOTSTRAP = os.environ.get("NAIVE_BOOTSTRAP", "127.0.0.1:39092")
TOPIC = os.environ.get("NAIVE_TOPIC", "naive.readings")
GROUP = os.environ.get("NAIVE_GROUP", "naive-agent")
EXPECTED = int(os.environ.get("NAIVE_EXPECTED", "0"))
RESULT = os.environ.get("NAIVE_RESULT", "")
WINDOW_S = float(os.environ.get("NAIVE_WINDOW_S", "300"))

app = faust.App(
    GROUP,
    broker=f"kafka://{BOOTSTRAP}",
    store="memory://",
    value_serializer="raw",
    key_serializer="raw",
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    datadir=os.environ.get("NAIVE_DATADIR", f"/tmp/{GROUP}-data"),
)
topic = app.topic(TOPIC, value_type=bytes, value_serializer="raw")


class Rolling:
    """Rolling mean per metric over the last ``WINDOW_S`` seconds of one sensor."""

    __slots__ = ("events", "sums")

    def __init__(self) -> None:
        self.events: collections.deque[tuple[float, dict[str, float]]] = collections.deque()
        self.sums: dict[str, float] = collections.defaultdict(float)

    def update(self, ts: float, metrics: dict[str, float]) -> dict[str, float]:
        self.events.append((ts, metrics))
        for k, v in metrics.items():
            self.sums[k] += v
        while self.events and self.events[0][0] <= ts - WINDOW_S:
            _, old = self.events.popleft()
            for k, v in old.items():
                self.sums[k] -= v
        n = len(self.events)
        return {f"{k}_mean": s / n for k, s in self.sums.items()}


state: dict[str, Rolling] = collections.defaultdict(Rolling)
progress: dict[str, Any] = {"n": 0, "first": 0.0, "last": 0.0, "done": False}


@app.agent(topic)
async def naive(stream: Any) -> None:
    async for value in stream:
        r = orjson.loads(value)
        state[r["sensor_id"]].update(float(r["ts"]), r["metrics"])
        n = progress["n"] = progress["n"] + 1
        if n == 1:
            progress["first"] = time.time()
        if EXPECTED and n >= EXPECTED and not progress["done"]:
            progress["done"] = True
            progress["last"] = time.time()
            if RESULT:
                Path(RESULT).write_bytes(orjson.dumps({
                    "readings": n, "seconds": progress["last"] - progress["first"],
                    "first": progress["first"], "last": progress["last"]}))


def main() -> None:
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
