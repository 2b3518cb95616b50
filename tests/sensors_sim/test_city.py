from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from config.city import load_city, parse_city
from config.domains import KIND_DOMAIN
from config.errors import ConfigError


def test_default_city_is_big_enough_and_has_every_kind() -> None:
    city = load_city()
    assert len(city.sensors) >= 5000
    assert len(city.districts) >= 10
    kinds = Counter(s.kind for s in city.sensors)
    assert set(kinds) == set(KIND_DOMAIN)
    sizes = np.array([len(g.sensors) for g in city.gateways])
    assert 10 <= np.median(sizes) <= 50 and sizes.max() <= 50
    for g in city.gateways:
        assert {s.kind for s in g.sensors} == {g.kind}
    loops = [s for s in city.sensors if s.kind == "loop"]
    assert all(s.segment in city.segment_index for s in loops)
    # water pressure nodes and inflow meters share DMA zones; feeders have a substation
    zones_p = {s.zone for s in city.sensors if s.kind == "water_pressure"}
    zones_f = {s.zone for s in city.sensors if s.kind == "water_flow"}
    assert zones_f <= zones_p and None not in zones_p
    assert all(s.zone for s in city.sensors if s.kind == "power")


def test_sensors_are_inside_their_district() -> None:
    from config.city import _in_polygon

    city = load_city()
    for d in city.districts:
        pts = [s for s in city.sensors if s.district == d.id and s.kind != "loop"]
        xs, ys = np.array([s.x for s in pts]), np.array([s.y for s in pts])
        assert _in_polygon(xs, ys, d.polygon).all(), d.id


def test_generation_is_deterministic_and_scales() -> None:
    a, b = load_city(sensors=20_000), load_city(sensors=20_000)
    assert [s.id for s in a.sensors] == [s.id for s in b.sensors]
    assert [(s.x, s.y) for s in a.sensors] == [(s.x, s.y) for s in b.sensors]
    assert len(a.sensors) == 20_000
    big = load_city(sensors=100_000)
    assert len(big.sensors) == 100_000
    assert len(big.sensor_index) == 100_000


def test_road_graph_has_upstream_links() -> None:
    city = load_city()
    ends = {s.to_node for s in city.segments}
    assert sum(s.from_node in ends for s in city.segments) > 0.9 * len(city.segments)
    for s in city.segments[:50]:
        assert s.capacity_vph == pytest.approx(s.lanes * s.capacity_vph / s.lanes)
        assert s.length_km > 0 and s.free_speed_kmh in (40.0, 50.0, 60.0)


def test_lonlat_is_near_the_origin() -> None:
    city = load_city()
    lon, lat = city.lonlat(0.0, 0.0)
    assert (float(lon), float(lat)) == (city.extra["geo"]["lon"], city.extra["geo"]["lat"])
    lon2, lat2 = city.lonlat(12.0, 9.0)
    assert 0.1 < float(lon2) - float(lon) < 0.2 and 0.05 < float(lat2) - float(lat) < 0.1


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"sensors": 0}, "generate.sensors=0"),
        ({"sensors": 200_000}, "generate.sensors=200000"),
        ({"mix": {"loops": 1.0}}, "generate.mix.loops=1.0: unknown kind"),
        ({"intervals": {"loop": -5}}, "generate.intervals.loop=-5"),
        ({"colour": "red"}, "generate.colour='red': unknown key"),
    ],
)
def test_bad_generate_block_names_key_and_value(change: dict, needle: str) -> None:
    import yaml

    from config.settings import DEFAULT_CITY

    doc = yaml.safe_load(DEFAULT_CITY.read_text())
    doc["generate"].update(change)
    with pytest.raises(ConfigError, match=r"city\.yaml") as exc:
        parse_city(doc, source="config/city.yaml")
    assert needle in str(exc.value)


def test_explicit_city_without_generate_still_loads() -> None:
    doc = {
        "name": "tiny",
        "districts": [{"id": "D1", "name": "One", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        "gateways": [
            {
                "id": "G1",
                "kind": "power",
                "district": "D1",
                "interval_s": 15,
                "sensors": [{"id": "S1", "x": 0.5, "y": 0.5, "zone": "SUB1"}],
            }
        ],
    }
    city = parse_city(doc)
    assert city.sensors[0].zone == "SUB1"
    with pytest.raises(ConfigError, match="no generate"):
        parse_city(doc, sensors=10)
