"""The producers' partitioning rule (config/partitioning.py) and its kafka-python adapter."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner import DefaultPartitioner

from config.city import load_city
from config.partitioning import CityPartitioner, CityPartitions, kind_loads, spread


class Cluster:
    """The two calls a kafka-python partitioner makes of the producer's metadata."""

    def __init__(self, n: int) -> None:
        self.parts = set(range(n))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.parts

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.parts


@pytest.fixture(scope="module")
def city():
    return load_city()


def test_kind_rule_puts_every_gateway_of_a_kind_on_one_partition(city):
    rule = CityPartitions(city, "kind")
    for n in (1, 2, 3, 4, 7, 8, 16):
        placed: dict[str, set[int]] = defaultdict(set)
        for g in city.gateways:
            placed[g.kind].add(rule.index(g.id.encode(), n))
        assert all(len(p) == 1 for p in placed.values()), placed
        assert {next(iter(p)) for p in placed.values()} <= set(range(n))
        # as many partitions carry data as there can be (kinds are never split)
        assert len({next(iter(p)) for p in placed.values()}) == min(n, len(placed))


def test_kinds_spread_by_load_largest_first(city):
    loads = kind_loads(city)
    assert loads["loop"] == pytest.approx(100.0)  # 3,000 loops every 30 s
    got = spread(loads, 4)
    # largest first onto the emptiest partition: loop, power, water_pressure alone, then the
    # next largest (noise) onto the emptiest, ...
    assert got["loop"] == 0 and got["power"] == 1 and got["water_pressure"] == 2
    assert got["noise"] == 3
    total = defaultdict(float)
    for k, p in got.items():
        total[p] += loads[k]
    assert max(total.values()) == pytest.approx(loads["loop"])
    assert spread(loads, 4) == got  # deterministic


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0.01, 1e4), min_size=1,
                       max_size=20), st.integers(1, 12))
def test_spread_is_the_greedy_bound(loads, n):
    """Every kind placed; no partition holds more than the emptiest one before its last kind
    plus that kind (the greedy rule), so the largest partition is within one kind of the mean."""
    got = spread(loads, n)
    assert got.keys() == loads.keys() and set(got.values()) <= set(range(n))
    total = [0.0] * n
    for k, p in got.items():
        total[p] += loads[k]
    assert max(total) <= sum(loads.values()) / n + max(loads.values()) + 1e-6


def test_gateway_rule_and_unknown_keys_are_kafkas_default(city):
    default = DefaultPartitioner()
    for by in ("kind", "gateway"):
        part = CityPartitioner(city, by)
        for n in (1, 4, 5):
            c = Cluster(n)
            for key in [b"no-such-gateway", b"S-0001", b"__city__"]:
                assert part.partition("t", key, key, b"", b"", c) == default.partition(
                    "t", key, key, b"", b"", c)
            if by == "gateway":
                for g in city.gateways[:50]:
                    k = g.id.encode()
                    assert part.partition("t", k, k, b"", b"", c) == default.partition(
                        "t", k, k, b"", b"", c)


def test_partitioner_uses_the_topics_real_partition_count(city):
    part = CityPartitioner(city, "kind")
    rule = CityPartitions(city, "kind")
    loop = next(g for g in city.gateways if g.kind == "loop").id.encode()
    water = next(g for g in city.gateways if g.kind == "water_flow").id.encode()
    for n in (1, 2, 4, 8):
        c = Cluster(n)
        assert part.partition("t", loop, loop, b"", b"", c) == rule.kinds(n)["loop"]
        assert part.partition("t", water, water, b"", b"", c) == rule.kinds(n)["water_flow"]
    with pytest.raises(ValueError, match="not found"):
        part.partition("t", loop, loop, b"", b"", Cluster(0))


def test_unknown_rule_is_refused(city):
    with pytest.raises(ValueError, match="kind, gateway"):
        CityPartitions(city, "sensor")  # type: ignore[arg-type]
