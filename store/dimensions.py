"""Load the city's dimension tables (districts, segments, sensors) into the store."""

from __future__ import annotations

import numpy as np
import orjson

from config.city import City
from store.base import Store


def load_dimensions(store: Store, city: City) -> dict[str, int]:
    """Insert the city's districts, segments and sensors; returns rows per table.

    The tables are ReplacingMergeTree(loaded_at) keyed by id, so reloading replaces, never
    duplicates (query with FINAL for exactness before merges).
    """
    d = city.districts
    districts = {
        "district": np.array([x.id for x in d], dtype=object),
        "name": np.array([x.name for x in d], dtype=object),
        "name_zh": np.array([x.name_zh for x in d], dtype=object),
        "polygon": np.array([orjson.dumps(x.polygon).decode() for x in d], dtype=object),
    }
    s = city.segments
    segments = {
        "segment": np.array([x.id for x in s], dtype=object),
        "district": np.array([x.district for x in s], dtype=object),
        "length_km": np.array([x.length_km for x in s], dtype=np.float64),
        "lanes": np.array([x.lanes for x in s], dtype=np.uint8),
        "free_speed_kmh": np.array([x.free_speed_kmh for x in s], dtype=np.float64),
        "capacity_vph": np.array([x.capacity_vph for x in s], dtype=np.float64),
        "coords": np.array([orjson.dumps(x.coords).decode() for x in s], dtype=object),
    }
    sensors = city.sensor_table()
    sensors["zone"] = np.array([x.zone or "" for x in city.sensors], dtype=object)
    sensors["interval_s"] = np.array([x.interval_s for x in city.sensors], dtype=np.float64)
    out = {}
    for table, cols in (("dim_districts", districts), ("dim_segments", segments),
                        ("dim_sensors", sensors)):
        out[table] = store.insert(table, cols)
    return out
