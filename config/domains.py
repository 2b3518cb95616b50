"""Sensor domains, kinds and metrics: the vocabulary shared by the wire format and the schema.

A *domain* is a Kafka topic (``city.readings.<domain>``) and a wide ClickHouse table
(``readings_<domain>``). A *kind* is a type of sensor; a gateway groups sensors of one kind, so
every frame carries exactly the metrics of one kind.
"""

from __future__ import annotations

from typing import Final

#: domain -> kind -> metric names (column names in frames and in ClickHouse)
KINDS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "traffic": {
        "loop": ("flow_vph", "speed_kmh", "occupancy_pct"),
    },
    "environment": {
        "air": ("pm25", "pm10", "no2", "o3", "so2", "co"),
        "noise": ("noise_dba",),
        "weather": ("temp_c", "humidity_pct", "wind_ms", "wind_dir_deg", "rain_mmh"),
    },
    "utility": {
        "water_flow": ("inflow_m3h",),
        "water_pressure": ("pressure_bar",),
        "power": ("load_mw", "voltage_kv"),
    },
}

DOMAINS: Final[tuple[str, ...]] = tuple(KINDS)

#: domain -> all metric names of the domain, in table column order
DOMAIN_METRICS: Final[dict[str, tuple[str, ...]]] = {
    d: tuple(m for kind in kinds.values() for m in kind) for d, kinds in KINDS.items()
}

#: kind -> domain
KIND_DOMAIN: Final[dict[str, str]] = {k: d for d, kinds in KINDS.items() for k in kinds}

#: metric -> (unit, physically possible range); readings outside are out-of-range faults
METRIC_INFO: Final[dict[str, tuple[str, float, float]]] = {
    "flow_vph": ("veh/h", 0.0, 10000.0),
    "speed_kmh": ("km/h", 0.0, 250.0),
    "occupancy_pct": ("%", 0.0, 100.0),
    "pm25": ("µg/m³", 0.0, 2000.0),
    "pm10": ("µg/m³", 0.0, 3000.0),
    "no2": ("µg/m³", 0.0, 5000.0),
    "o3": ("µg/m³", 0.0, 2000.0),
    "so2": ("µg/m³", 0.0, 5000.0),
    "co": ("mg/m³", 0.0, 200.0),
    "noise_dba": ("dB(A)", 0.0, 160.0),
    "temp_c": ("°C", -60.0, 60.0),
    "humidity_pct": ("%", 0.0, 100.0),
    "wind_ms": ("m/s", 0.0, 80.0),
    "wind_dir_deg": ("°", 0.0, 360.0),
    "rain_mmh": ("mm/h", 0.0, 500.0),
    "inflow_m3h": ("m³/h", 0.0, 100000.0),
    "pressure_bar": ("bar", 0.0, 20.0),
    "load_mw": ("MW", 0.0, 2000.0),
    "voltage_kv": ("kV", 0.0, 500.0),
}


def kind_of_metrics(domain: str, metrics: tuple[str, ...] | list[str]) -> str | None:
    """The kind whose metric set equals ``metrics`` (order-insensitive), or ``None``."""
    wanted = set(metrics)
    for kind, names in KINDS.get(domain, {}).items():
        if set(names) == wanted:
            return kind
    return None
