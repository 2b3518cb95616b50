-- Raw readings per domain: wide tables, one column per metric, one row per reading.
-- ReplacingMergeTree on (sensor_id, ts, seq): a redelivered frame collapses into one row
-- (query with FINAL, or after merges, for exact counts).
CREATE TABLE IF NOT EXISTS readings_traffic (
    ts DateTime('UTC'),
    sensor_id String,
    gateway String,
    seq UInt64,
    flow_vph Float64,
    speed_kmh Float64,
    occupancy_pct Float64,
    ingested_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (sensor_id, ts, seq);

CREATE TABLE IF NOT EXISTS readings_environment (
    ts DateTime('UTC'),
    sensor_id String,
    gateway String,
    seq UInt64,
    pm25 Nullable(Float64),
    pm10 Nullable(Float64),
    no2 Nullable(Float64),
    o3 Nullable(Float64),
    so2 Nullable(Float64),
    co Nullable(Float64),
    noise_dba Nullable(Float64),
    temp_c Nullable(Float64),
    humidity_pct Nullable(Float64),
    wind_ms Nullable(Float64),
    wind_dir_deg Nullable(Float64),
    rain_mmh Nullable(Float64),
    ingested_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (sensor_id, ts, seq);

CREATE TABLE IF NOT EXISTS readings_utility (
    ts DateTime('UTC'),
    sensor_id String,
    gateway String,
    seq UInt64,
    inflow_m3h Nullable(Float64),
    pressure_bar Nullable(Float64),
    load_mw Nullable(Float64),
    voltage_kv Nullable(Float64),
    ingested_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (sensor_id, ts, seq);

-- Windowed indicators (long format): one row per entity, indicator and window end.
CREATE TABLE IF NOT EXISTS indicators (
    ts DateTime('UTC'),
    entity_type String,
    entity_id String,
    name String,
    value Float64,
    window_s UInt32,
    ingested_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (entity_type, name, entity_id, ts);
