-- Derived outputs of the stream workers and the city's dimension tables.
-- All ReplacingMergeTree: a re-processed batch replaces its rows instead of adding to them.

-- Scored anomalies: one row per reading whose combined score was reported.
CREATE TABLE IF NOT EXISTS anomalies (
    ts DateTime('UTC'),
    sensor_id String,
    kind String,
    district String,
    score Float64,
    seasonal Float64,
    spatial Float64,
    multivariate Float64,
    metric String,
    flags UInt16,
    ingested_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (sensor_id, ts);

-- Sensor health: the quality flags of a sensor whenever they change (0 = healthy).
CREATE TABLE IF NOT EXISTS sensor_health (
    ts DateTime('UTC'),
    sensor_id String,
    district String,
    flags UInt16,
    status String,
    ingested_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (sensor_id, ts);

-- District risk 0..100 with its warning colour and the points each domain contributed.
CREATE TABLE IF NOT EXISTS district_risk (
    ts DateTime('UTC'),
    district String,
    risk Float64,
    colour String,
    contrib_traffic Float64,
    contrib_environment Float64,
    contrib_utility Float64,
    top_sensors String,
    ingested_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (district, ts);

-- Alert lifecycle events (opened, updated, escalated, acknowledged, resolved).
-- The current state of an alert is its latest event: see the view alerts_current.
CREATE TABLE IF NOT EXISTS alert_events (
    ts DateTime('UTC'),
    alert_id String,
    district String,
    type String,
    event String,
    state String,
    severity UInt8,
    peak Float64,
    sensors Array(String),
    actor String,
    ingested_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (alert_id, ts, event);

CREATE VIEW IF NOT EXISTS alerts_current AS
SELECT
    alert_id,
    argMax(district, ts) AS district,
    argMax(type, ts) AS type,
    argMax(state, ts) AS state,
    argMax(severity, ts) AS severity,
    max(peak) AS peak,
    min(ts) AS opened_at,
    max(ts) AS updated_at,
    minIf(ts, event = 'acknowledged') AS acknowledged_at,
    minIf(ts, event = 'resolved') AS resolved_at,
    argMax(sensors, ts) AS sensors
FROM alert_events
GROUP BY alert_id;

-- Ground truth of simulated incidents and faults (from city.groundtruth or a recording).
CREATE TABLE IF NOT EXISTS groundtruth (
    id String,
    type String,
    category String,
    start DateTime('UTC'),
    end DateTime('UTC'),
    district String,
    sensors Array(String),
    detail String,
    ingested_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree()
ORDER BY id;

-- Dimensions, loaded from the city file on every schema apply (latest load wins).
CREATE TABLE IF NOT EXISTS dim_districts (
    district String,
    name String,
    name_zh String,
    polygon String,
    loaded_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY district;

CREATE TABLE IF NOT EXISTS dim_segments (
    segment String,
    district String,
    length_km Float64,
    lanes UInt8,
    free_speed_kmh Float64,
    capacity_vph Float64,
    coords String,
    loaded_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY segment;

CREATE TABLE IF NOT EXISTS dim_sensors (
    sensor_id String,
    kind String,
    domain String,
    gateway String,
    district String,
    segment String,
    x_km Float64,
    y_km Float64,
    loaded_at DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY sensor_id;
