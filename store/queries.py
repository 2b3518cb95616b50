"""The queries the screen and the CLI use. SQL runs on ClickHouse 18.16 and 26.x alike."""

from __future__ import annotations

import pandas as pd

from store.base import Store


def overview_counts(store: Store) -> dict[str, float]:
    """Readings stored, sensors reporting and the newest event time (epoch s, 0 if none)."""
    df = store.query(
        "SELECT count() AS readings, uniqExact(sensor_id) AS sensors, "
        "toUInt32(max(ts)) AS newest FROM readings_traffic"
    )
    row = df.iloc[0]
    return {
        "readings": int(row["readings"]),
        "sensors": int(row["sensors"]),
        "newest": int(row["newest"]) if int(row["readings"]) else 0,
    }


def city_speed_trend(store: Store, *, minutes: int = 60) -> pd.DataFrame:
    """Per-minute city mean speed and total flow over the last ``minutes`` of event time."""
    return store.query(
        f"""
        SELECT toStartOfMinute(ts) AS minute,
               avg(speed_kmh) AS speed_kmh,
               avg(flow_vph) AS flow_vph,
               count() AS readings
        FROM readings_traffic
        WHERE ts >= (SELECT max(ts) FROM readings_traffic) - {int(minutes) * 60}
        GROUP BY minute
        ORDER BY minute
        """
    )


def indicator_count(store: Store) -> int:
    return int(store.query("SELECT count() AS n FROM indicators")["n"].iloc[0])
