"""What every table and column means: the one source for COMMENTs, docs and their tests.

Migrations write these texts as column COMMENTs (ClickHouse 18.16 and 26.x) and, where the
server supports it, as table comments; ``docs/analysts.md`` documents the same tables. The tests
check that every column of every table in a fresh database has its comment and is documented,
so a new column without a description fails the build.

>>> TABLES["readings_traffic"].columns["speed_kmh"]
'mean spot speed over the reading interval (km/h)'
"""

from __future__ import annotations

from dataclasses import dataclass

from config.domains import DOMAIN_METRICS, METRIC_INFO


@dataclass(frozen=True)
class TableDoc:
    about: str
    columns: dict[str, str]


_METRIC_ABOUT = {
    "flow_vph": "traffic flow, vehicles per hour over the reading interval",
    "speed_kmh": "mean spot speed over the reading interval",
    "occupancy_pct": "share of time the loop was occupied",
    "pm25": "PM2.5 concentration",
    "pm10": "PM10 concentration",
    "no2": "NO2 concentration",
    "o3": "ozone concentration",
    "so2": "SO2 concentration",
    "co": "CO concentration",
    "noise_dba": "equivalent continuous sound level over the reading interval",
    "temp_c": "air temperature",
    "humidity_pct": "relative humidity",
    "wind_ms": "wind speed",
    "wind_dir_deg": "wind direction the wind blows from, clockwise from north",
    "rain_mmh": "rain intensity",
    "inflow_m3h": "inflow into the district metering area (DMA)",
    "pressure_bar": "water pressure at the node",
    "load_mw": "feeder load",
    "voltage_kv": "feeder voltage",
}


def metric_doc(metric: str) -> str:
    unit = METRIC_INFO[metric][0]
    return f"{_METRIC_ABOUT[metric]} ({unit})"


_INGESTED = "when the row was stored (server clock, UTC); not part of the key"
_RAW_KEY = {
    "ts": "event time of the reading (UTC, seconds)",
    "sensor_id": "sensor id (see dim_sensors)",
    "gateway": "gateway that sent the reading (a junction controller, station or DMA)",
    "seq": "per-sensor sequence number (reading slot since the epoch); with sensor_id and ts "
    "the de-duplication key",
}
_NULLABLE_NOTE = "; NULL when this kind of sensor does not measure it"


def _raw(domain: str) -> TableDoc:
    cols = dict(_RAW_KEY)
    for m in DOMAIN_METRICS[domain]:
        cols[m] = metric_doc(m) + (_NULLABLE_NOTE if domain != "traffic" else "")
    cols["ingested_at"] = _INGESTED
    return TableDoc(
        f"raw {domain} readings, one row per reading, one column per metric; "
        "ReplacingMergeTree on (sensor_id, ts, seq): use FINAL for exact counts",
        cols,
    )


def _rollup(domain: str, entity: str, grain: str) -> TableDoc:
    span = "minute" if grain == "1m" else "hour"
    key = "sensor_id" if entity == "sensor" else "district"
    cols = {
        "ts": f"start of the {span} (UTC)",
        key: "sensor id (see dim_sensors)" if entity == "sensor"
        else "district id (see dim_districts); '' for sensors missing from dim_sensors",
        "readings": f"readings in the {span} (always aggregate with sum())",
    }
    for m in DOMAIN_METRICS[domain]:
        cols[f"{m}_sum"] = f"sum of {m} over the {span}; mean = sum({m}_sum) / sum({m}_count)"
        cols[f"{m}_count"] = f"readings of {m} that were not NULL in the {span}"
    return TableDoc(
        f"{domain} readings summed per {entity} and {span} (SummingMergeTree, kept by the view "
        f"mv_rollup_{domain}_{entity}_{grain}); query with sum() and GROUP BY",
        cols,
    )


def _dash(domain: str) -> TableDoc:
    cols = _rollup(domain, "sensor", "1m").columns
    return TableDoc(
        f"{domain} readings summed per sensor and minute, ordered by time first for the "
        f"operations screen (SummingMergeTree, kept by the view mv_dash_{domain}_sensor_1m; the "
        f"same sums as rollup_{domain}_sensor_1m); query with sum() and GROUP BY",
        dict(cols),
    )


TABLES: dict[str, TableDoc] = {
    **{f"readings_{d}": _raw(d) for d in DOMAIN_METRICS},
    "indicators": TableDoc(
        "windowed indicators in long format: one row per entity, indicator and window end",
        {
            "ts": "end of the window (UTC)",
            "entity_type": "what the indicator describes: sensor, district, city or station (air station)",
            "entity_id": "the sensor, district or station id ('city' for the whole city)",
            "name": "indicator name: <metric>_mean (per sensor window), congestion_index, aqi",
            "value": "indicator value",
            "window_s": "window length in seconds",
            "ingested_at": _INGESTED,
        },
    ),
    "anomalies": TableDoc(
        "readings whose combined anomaly score reached the reporting threshold",
        {
            "ts": "event time of the reading (UTC)",
            "sensor_id": "sensor id",
            "kind": "sensor kind (loop, air, noise, weather, water_flow, water_pressure, power)",
            "district": "district of the sensor",
            "score": "combined anomaly score in [0, 1]",
            "seasonal": "score against the time-of-day/week baseline",
            "spatial": "score against the sensor's neighbours",
            "multivariate": "IsolationForest score over window features",
            "metric": "metric that drove the seasonal score ('' if none)",
            "flags": "health flags of the reading (bit set, see docs/models.md)",
            "ingested_at": _INGESTED,
        },
    ),
    "sensor_health": TableDoc(
        "sensor quality flags whenever they change (0 = healthy)",
        {
            "ts": "event time of the change (UTC)",
            "sensor_id": "sensor id",
            "district": "district of the sensor",
            "flags": "health flags (bit set; 0 = healthy)",
            "status": "flag names, comma separated ('ok' when healthy)",
            "ingested_at": _INGESTED,
        },
    ),
    "district_risk": TableDoc(
        "district risk 0..100 per tick, with the points each domain contributed",
        {
            "ts": "event time of the assessment (UTC)",
            "district": "district id",
            "risk": "composite risk 0..100",
            "colour": "warning colour: none, blue, yellow, orange or red",
            "contrib_traffic": "risk points from traffic sensors",
            "contrib_environment": "risk points from environment sensors and AQI",
            "contrib_utility": "risk points from water and power sensors",
            "top_sensors": "sensors that contributed most (JSON array)",
            "ingested_at": _INGESTED,
        },
    ),
    "alert_events": TableDoc(
        "alert lifecycle events; an alert's state is its latest event (view alerts_current)",
        {
            "ts": "event time (UTC)",
            "alert_id": "alert id",
            "district": "district of the alert",
            "type": "alert type: traffic, air_quality, noise, water or power",
            "event": "opened, updated, escalated, acknowledged or resolved",
            "state": "state after the event: open, acknowledged or resolved",
            "severity": "severity 1..3",
            "peak": "highest anomaly score seen so far",
            "sensors": "sensors that triggered the alert",
            "actor": "who caused the event ('worker' for the models, or an operator name)",
            "ingested_at": _INGESTED,
        },
    ),
    "groundtruth": TableDoc(
        "ground truth of simulated incidents and faults (from the simulator's labels)",
        {
            "id": "label id",
            "type": "incident or fault type (crash, pollution, burst, stuck, dropout, ...)",
            "category": "incident or fault",
            "start": "start of the labelled interval (UTC)",
            "end": "end of the labelled interval (UTC)",
            "district": "district ('' if none)",
            "sensors": "sensors affected",
            "detail": "type-specific parameters (JSON)",
            "ingested_at": _INGESTED,
        },
    ),
    "dim_districts": TableDoc(
        "districts of the city (reloaded from the city file at start; latest load wins, "
        "use FINAL)",
        {
            "district": "district id (D01...)",
            "name": "district name",
            "name_zh": "district name in Chinese",
            "polygon": "outline as a JSON array of [x_km, y_km]",
            "loaded_at": "when this row was loaded",
        },
    ),
    "dim_segments": TableDoc(
        "directed road segments (one per block and direction)",
        {
            "segment": "segment id (SEG...)",
            "district": "district id",
            "length_km": "length (km)",
            "lanes": "lanes in this direction",
            "free_speed_kmh": "free-flow speed (km/h)",
            "capacity_vph": "capacity (vehicles per hour)",
            "coords": "polyline as a JSON array of [x_km, y_km]",
            "loaded_at": "when this row was loaded",
        },
    ),
    "dim_sensors": TableDoc(
        "sensors with their kind, gateway, district, road segment and network zone",
        {
            "sensor_id": "sensor id",
            "kind": "loop, air, noise, weather, water_flow, water_pressure or power",
            "domain": "traffic, environment or utility (the readings_<domain> table)",
            "gateway": "gateway id",
            "district": "district id",
            "segment": "road segment of a loop detector ('' otherwise)",
            "x_km": "position east of the city origin (km)",
            "y_km": "position north of the city origin (km)",
            "loaded_at": "when this row was loaded",
            "zone": "network zone: the DMA of a water sensor, the substation of a feeder "
            "('' otherwise)",
            "interval_s": "reporting interval (s): expected readings = span / interval_s",
        },
    ),
    "schema_migrations": TableDoc(
        "schema migrations applied to this database",
        {
            "version": "migration number (config/ddl/NNN_name.sql)",
            "name": "migration name",
            "applied_at": "when it was applied",
        },
    ),
    **{
        f"rollup_{d}_{e}_{g}": _rollup(d, e, g)
        for d in DOMAIN_METRICS for e in ("sensor", "district") for g in ("1m", "1h")
    },
    **{f"dash_{d}_sensor_1m": _dash(d) for d in DOMAIN_METRICS},
}

def _view_source(domain: str, entity: str, grain: str) -> str:
    """What a rollup view reads since migration 011 (the cascade, store/rollups.py)."""
    if (entity, grain) == ("sensor", "1m"):
        return f"the rows inserted into readings_{domain}"
    if (entity, grain) == ("district", "1h"):
        return (f"the rows its view writes to rollup_{domain}_district_1m (summed per hour)")
    how = {"sensor": "summed per hour", "district": "district from dim_sensors",
           "dash": "the same rows"}[entity]
    return f"the rows its view writes to rollup_{domain}_sensor_1m ({how})"


#: views (no comments on 18.16): name -> description
VIEWS: dict[str, str] = {
    "alerts_current": "one row per alert: its latest state, opened/acknowledged/resolved "
    "times (1970-01-01 when not yet), peak and sensors",
    **{f"mv_rollup_{d}_{e}_{g}": f"materialized view feeding rollup_{d}_{e}_{g} from "
       + _view_source(d, e, g)
       for d in DOMAIN_METRICS for e in ("sensor", "district") for g in ("1m", "1h")},
    **{f"mv_dash_{d}_sensor_1m": f"materialized view feeding dash_{d}_sensor_1m from "
       + _view_source(d, "dash", "1m")
       for d in DOMAIN_METRICS},
}


def sql_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
