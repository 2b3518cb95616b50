"""Which partition of a readings topic a gateway's frames go to: the producers' side of the
contract between the simulator (or a real gateway bridge) and the stream workers.

Frames are keyed by gateway id (one gateway, one key, one partition, in order). Two rules:

``kind`` (the default)
    every gateway of one sensor kind goes to the same partition; the kinds are spread over the
    partitions by their expected readings per second (largest first, each onto the partition
    with the least load so far; ties to the lowest number). A kind's model state is kind-wide
    (a sensor is compared with its nearest neighbours *of its kind*, one IsolationForest learns
    from every sensor of the kind), so with this rule every worker of a group sees whole kinds
    and scores every reading exactly as one worker would, whatever the number of workers.
    The price: a kind is never split, so the largest kind bounds the scale-out (the default
    city's induction loops are 62 % of its readings: two workers are at most ~1.6x one).

``gateway``
    Kafka's default partitioner (murmur2 of the key, as kafka-python and the Java client):
    the load spreads evenly over any number of workers, but a worker holds only some
    sensors of a kind, so a per-reading spatial score sees only the neighbours on its own
    worker and each worker's forest learns from its own sensors (the stored readings,
    indicators and the city tick stay exact; see docs/streams.md).

The workers do not depend on the rule: a gateway's state is checkpointed to the changelog
partition numbered like the readings partition its frames *arrived* on. Gateways the city does
not know (and keys other than a gateway's) fall back to the default partitioner.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Final, Literal, get_args

from kafka.partitioner import Partitioner
from kafka.partitioner.default import murmur2

from config.city import City

PartitionBy = Literal["kind", "gateway"]
PARTITION_BY: Final[tuple[str, ...]] = get_args(PartitionBy)
#: the most a fetch returns of one partition (worker and sink; their clients' default is 1 MiB):
#: with the rule ``kind`` most of the data can sit in one partition
FETCH_PARTITION_BYTES: Final = 8 * 1024 * 1024


def default_partition(key: bytes, n: int) -> int:
    """Kafka's default partitioner for a non-empty key (murmur2, positive, modulo ``n``)."""
    return (murmur2(key) & 0x7FFFFFFF) % n


def kind_loads(city: City) -> dict[str, float]:
    """Expected readings per second of each kind of ``city``."""
    loads: dict[str, float] = {}
    for g in city.gateways:
        loads[g.kind] = loads.get(g.kind, 0.0) + sum(1.0 / s.interval_s for s in g.sensors)
    return loads


def spread(loads: Mapping[str, float], n: int) -> dict[str, int]:
    """Kinds onto ``n`` partitions, largest load first, each onto the least loaded partition
    so far (lowest number on a tie): deterministic for a given city and count."""
    if n < 1:
        raise ValueError(f"a topic has at least one partition, got {n!r}")
    total = [0.0] * n
    out: dict[str, int] = {}
    for kind in sorted(loads, key=lambda k: (-loads[k], k)):
        p = min(range(n), key=lambda i: (total[i], i))
        out[kind] = p
        total[p] += loads[kind]
    return out


class CityPartitions:
    """The partition of a frame's key (a gateway id) under ``by``; see the module docstring."""

    def __init__(self, city: City, by: PartitionBy = "kind") -> None:
        if by not in PARTITION_BY:
            raise ValueError(f"partition_by must be one of {', '.join(PARTITION_BY)}, got {by!r}")
        self.by = by
        self.kind_of = {g.id.encode(): g.kind for g in city.gateways}
        self.loads = kind_loads(city)
        self._spread: dict[int, dict[str, int]] = {}

    def kinds(self, n: int) -> dict[str, int]:
        """kind -> partition for a topic of ``n`` partitions (rule ``kind``)."""
        got = self._spread.get(n)
        if got is None:
            got = self._spread[n] = spread(self.loads, n)
        return got

    def index(self, key: bytes | None, n: int) -> int:
        """Index into the topic's ``n`` partitions (sorted by number) for ``key``."""
        if key is None:
            return random.randrange(n)
        kind = self.kind_of.get(key) if self.by == "kind" else None
        if kind is None:
            return default_partition(key, n)
        return self.kinds(n)[kind]


class CityPartitioner(Partitioner):
    """A kafka-python partitioner placing frames by :class:`CityPartitions` over the partitions
    the topic really has (from the producer's metadata)."""

    def __init__(self, city: City, by: PartitionBy = "kind") -> None:
        self.rule = CityPartitions(city, by)

    def partition(self, topic: str, key: object, serialized_key: bytes | None, value: object,
                  serialized_value: bytes | None, cluster: object) -> int:
        parts = cluster.partitions_for_topic(topic)  # type: ignore[attr-defined]
        if not parts:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        ordered = sorted(parts)
        return int(ordered[self.rule.index(serialized_key, len(ordered))])
