-- Minute tables for the operations screen: the same sums per sensor and minute as
-- rollup_<domain>_sensor_1m, but ordered by time first, ORDER BY (ts, sensor_id), so "every
-- sensor over the last five minutes" (the screen's windows and its congestion trend) reads five
-- minutes of rows instead of a whole day per sensor (see docs/dashboard.md). Partitioned by day
-- like the 1-minute rollups.
--
-- SummingMergeTree with plain sums and counts: mean = sum(x_sum) / sum(x_count); always
-- aggregate with sum(). Kept by materialized views on the raw tables (18.16 does not cascade a
-- view's inserts into the views of its target table, so they cannot read the rollups).
--
-- Existing raw data is loaded at the end, as in 004: rows stored before each view existed
-- (ingested_at <= the view's creation time, in seconds) are summed from the de-duplicated raw
-- table; rows stored later reach the table through the view. Like the rollups, a reading
-- inserted twice is counted twice here until it is repaired.

CREATE TABLE IF NOT EXISTS dash_traffic_sensor_1m (
    ts DateTime('UTC') COMMENT 'start of the minute (UTC)',
    sensor_id String COMMENT 'sensor id (see dim_sensors)',
    readings Int64 COMMENT 'readings in the minute (always aggregate with sum())',
    flow_vph_sum Float64 COMMENT 'sum of flow_vph over the minute; mean = sum(flow_vph_sum) / sum(flow_vph_count)',
    flow_vph_count Int64 COMMENT 'readings of flow_vph that were not NULL in the minute',
    speed_kmh_sum Float64 COMMENT 'sum of speed_kmh over the minute; mean = sum(speed_kmh_sum) / sum(speed_kmh_count)',
    speed_kmh_count Int64 COMMENT 'readings of speed_kmh that were not NULL in the minute',
    occupancy_pct_sum Float64 COMMENT 'sum of occupancy_pct over the minute; mean = sum(occupancy_pct_sum) / sum(occupancy_pct_count)',
    occupancy_pct_count Int64 COMMENT 'readings of occupancy_pct that were not NULL in the minute'
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (ts, sensor_id);

-- @if comments
ALTER TABLE dash_traffic_sensor_1m MODIFY COMMENT 'traffic readings summed per sensor and minute, ordered by time first for the operations screen (SummingMergeTree, kept by the view mv_dash_traffic_sensor_1m; the same sums as rollup_traffic_sensor_1m); query with sum() and GROUP BY';

CREATE TABLE IF NOT EXISTS dash_environment_sensor_1m (
    ts DateTime('UTC') COMMENT 'start of the minute (UTC)',
    sensor_id String COMMENT 'sensor id (see dim_sensors)',
    readings Int64 COMMENT 'readings in the minute (always aggregate with sum())',
    pm25_sum Float64 COMMENT 'sum of pm25 over the minute; mean = sum(pm25_sum) / sum(pm25_count)',
    pm25_count Int64 COMMENT 'readings of pm25 that were not NULL in the minute',
    pm10_sum Float64 COMMENT 'sum of pm10 over the minute; mean = sum(pm10_sum) / sum(pm10_count)',
    pm10_count Int64 COMMENT 'readings of pm10 that were not NULL in the minute',
    no2_sum Float64 COMMENT 'sum of no2 over the minute; mean = sum(no2_sum) / sum(no2_count)',
    no2_count Int64 COMMENT 'readings of no2 that were not NULL in the minute',
    o3_sum Float64 COMMENT 'sum of o3 over the minute; mean = sum(o3_sum) / sum(o3_count)',
    o3_count Int64 COMMENT 'readings of o3 that were not NULL in the minute',
    so2_sum Float64 COMMENT 'sum of so2 over the minute; mean = sum(so2_sum) / sum(so2_count)',
    so2_count Int64 COMMENT 'readings of so2 that were not NULL in the minute',
    co_sum Float64 COMMENT 'sum of co over the minute; mean = sum(co_sum) / sum(co_count)',
    co_count Int64 COMMENT 'readings of co that were not NULL in the minute',
    noise_dba_sum Float64 COMMENT 'sum of noise_dba over the minute; mean = sum(noise_dba_sum) / sum(noise_dba_count)',
    noise_dba_count Int64 COMMENT 'readings of noise_dba that were not NULL in the minute',
    temp_c_sum Float64 COMMENT 'sum of temp_c over the minute; mean = sum(temp_c_sum) / sum(temp_c_count)',
    temp_c_count Int64 COMMENT 'readings of temp_c that were not NULL in the minute',
    humidity_pct_sum Float64 COMMENT 'sum of humidity_pct over the minute; mean = sum(humidity_pct_sum) / sum(humidity_pct_count)',
    humidity_pct_count Int64 COMMENT 'readings of humidity_pct that were not NULL in the minute',
    wind_ms_sum Float64 COMMENT 'sum of wind_ms over the minute; mean = sum(wind_ms_sum) / sum(wind_ms_count)',
    wind_ms_count Int64 COMMENT 'readings of wind_ms that were not NULL in the minute',
    wind_dir_deg_sum Float64 COMMENT 'sum of wind_dir_deg over the minute; mean = sum(wind_dir_deg_sum) / sum(wind_dir_deg_count)',
    wind_dir_deg_count Int64 COMMENT 'readings of wind_dir_deg that were not NULL in the minute',
    rain_mmh_sum Float64 COMMENT 'sum of rain_mmh over the minute; mean = sum(rain_mmh_sum) / sum(rain_mmh_count)',
    rain_mmh_count Int64 COMMENT 'readings of rain_mmh that were not NULL in the minute'
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (ts, sensor_id);

-- @if comments
ALTER TABLE dash_environment_sensor_1m MODIFY COMMENT 'environment readings summed per sensor and minute, ordered by time first for the operations screen (SummingMergeTree, kept by the view mv_dash_environment_sensor_1m; the same sums as rollup_environment_sensor_1m); query with sum() and GROUP BY';

CREATE TABLE IF NOT EXISTS dash_utility_sensor_1m (
    ts DateTime('UTC') COMMENT 'start of the minute (UTC)',
    sensor_id String COMMENT 'sensor id (see dim_sensors)',
    readings Int64 COMMENT 'readings in the minute (always aggregate with sum())',
    inflow_m3h_sum Float64 COMMENT 'sum of inflow_m3h over the minute; mean = sum(inflow_m3h_sum) / sum(inflow_m3h_count)',
    inflow_m3h_count Int64 COMMENT 'readings of inflow_m3h that were not NULL in the minute',
    pressure_bar_sum Float64 COMMENT 'sum of pressure_bar over the minute; mean = sum(pressure_bar_sum) / sum(pressure_bar_count)',
    pressure_bar_count Int64 COMMENT 'readings of pressure_bar that were not NULL in the minute',
    load_mw_sum Float64 COMMENT 'sum of load_mw over the minute; mean = sum(load_mw_sum) / sum(load_mw_count)',
    load_mw_count Int64 COMMENT 'readings of load_mw that were not NULL in the minute',
    voltage_kv_sum Float64 COMMENT 'sum of voltage_kv over the minute; mean = sum(voltage_kv_sum) / sum(voltage_kv_count)',
    voltage_kv_count Int64 COMMENT 'readings of voltage_kv that were not NULL in the minute'
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMMDD(ts)
ORDER BY (ts, sensor_id);

-- @if comments
ALTER TABLE dash_utility_sensor_1m MODIFY COMMENT 'utility readings summed per sensor and minute, ordered by time first for the operations screen (SummingMergeTree, kept by the view mv_dash_utility_sensor_1m; the same sums as rollup_utility_sensor_1m); query with sum() and GROUP BY';

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_dash_traffic_sensor_1m TO dash_traffic_sensor_1m AS
SELECT toStartOfMinute(ts) AS ts, sensor_id, toInt64(count()) AS readings, sum(ifNull(flow_vph, 0)) AS flow_vph_sum, toInt64(count(flow_vph)) AS flow_vph_count, sum(ifNull(speed_kmh, 0)) AS speed_kmh_sum, toInt64(count(speed_kmh)) AS speed_kmh_count, sum(ifNull(occupancy_pct, 0)) AS occupancy_pct_sum, toInt64(count(occupancy_pct)) AS occupancy_pct_count FROM readings_traffic GROUP BY sensor_id, ts;

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_dash_environment_sensor_1m TO dash_environment_sensor_1m AS
SELECT toStartOfMinute(ts) AS ts, sensor_id, toInt64(count()) AS readings, sum(ifNull(pm25, 0)) AS pm25_sum, toInt64(count(pm25)) AS pm25_count, sum(ifNull(pm10, 0)) AS pm10_sum, toInt64(count(pm10)) AS pm10_count, sum(ifNull(no2, 0)) AS no2_sum, toInt64(count(no2)) AS no2_count, sum(ifNull(o3, 0)) AS o3_sum, toInt64(count(o3)) AS o3_count, sum(ifNull(so2, 0)) AS so2_sum, toInt64(count(so2)) AS so2_count, sum(ifNull(co, 0)) AS co_sum, toInt64(count(co)) AS co_count, sum(ifNull(noise_dba, 0)) AS noise_dba_sum, toInt64(count(noise_dba)) AS noise_dba_count, sum(ifNull(temp_c, 0)) AS temp_c_sum, toInt64(count(temp_c)) AS temp_c_count, sum(ifNull(humidity_pct, 0)) AS humidity_pct_sum, toInt64(count(humidity_pct)) AS humidity_pct_count, sum(ifNull(wind_ms, 0)) AS wind_ms_sum, toInt64(count(wind_ms)) AS wind_ms_count, sum(ifNull(wind_dir_deg, 0)) AS wind_dir_deg_sum, toInt64(count(wind_dir_deg)) AS wind_dir_deg_count, sum(ifNull(rain_mmh, 0)) AS rain_mmh_sum, toInt64(count(rain_mmh)) AS rain_mmh_count FROM readings_environment GROUP BY sensor_id, ts;

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_dash_utility_sensor_1m TO dash_utility_sensor_1m AS
SELECT toStartOfMinute(ts) AS ts, sensor_id, toInt64(count()) AS readings, sum(ifNull(inflow_m3h, 0)) AS inflow_m3h_sum, toInt64(count(inflow_m3h)) AS inflow_m3h_count, sum(ifNull(pressure_bar, 0)) AS pressure_bar_sum, toInt64(count(pressure_bar)) AS pressure_bar_count, sum(ifNull(load_mw, 0)) AS load_mw_sum, toInt64(count(load_mw)) AS load_mw_count, sum(ifNull(voltage_kv, 0)) AS voltage_kv_sum, toInt64(count(voltage_kv)) AS voltage_kv_count FROM readings_utility GROUP BY sensor_id, ts;

INSERT INTO dash_traffic_sensor_1m (ts, sensor_id, readings, flow_vph_sum, flow_vph_count, speed_kmh_sum, speed_kmh_count, occupancy_pct_sum, occupancy_pct_count)
SELECT toStartOfMinute(ts) AS ts, sensor_id, toInt64(count()) AS readings, sum(ifNull(flow_vph, 0)) AS flow_vph_sum, toInt64(count(flow_vph)) AS flow_vph_count, sum(ifNull(speed_kmh, 0)) AS speed_kmh_sum, toInt64(count(speed_kmh)) AS speed_kmh_count, sum(ifNull(occupancy_pct, 0)) AS occupancy_pct_sum, toInt64(count(occupancy_pct)) AS occupancy_pct_count FROM readings_traffic FINAL WHERE ingested_at <= (SELECT min(metadata_modification_time) FROM system.tables WHERE database = currentDatabase() AND name = 'mv_dash_traffic_sensor_1m') GROUP BY sensor_id, ts;

INSERT INTO dash_environment_sensor_1m (ts, sensor_id, readings, pm25_sum, pm25_count, pm10_sum, pm10_count, no2_sum, no2_count, o3_sum, o3_count, so2_sum, so2_count, co_sum, co_count, noise_dba_sum, noise_dba_count, temp_c_sum, temp_c_count, humidity_pct_sum, humidity_pct_count, wind_ms_sum, wind_ms_count, wind_dir_deg_sum, wind_dir_deg_count, rain_mmh_sum, rain_mmh_count)
SELECT toStartOfMinute(ts) AS ts, sensor_id, toInt64(count()) AS readings, sum(ifNull(pm25, 0)) AS pm25_sum, toInt64(count(pm25)) AS pm25_count, sum(ifNull(pm10, 0)) AS pm10_sum, toInt64(count(pm10)) AS pm10_count, sum(ifNull(no2, 0)) AS no2_sum, toInt64(count(no2)) AS no2_count, sum(ifNull(o3, 0)) AS o3_sum, toInt64(count(o3)) AS o3_count, sum(ifNull(so2, 0)) AS so2_sum, toInt64(count(so2)) AS so2_count, sum(ifNull(co, 0)) AS co_sum, toInt64(count(co)) AS co_count, sum(ifNull(noise_dba, 0)) AS noise_dba_sum, toInt64(count(noise_dba)) AS noise_dba_count, sum(ifNull(temp_c, 0)) AS temp_c_sum, toInt64(count(temp_c)) AS temp_c_count, sum(ifNull(humidity_pct, 0)) AS humidity_pct_sum, toInt64(count(humidity_pct)) AS humidity_pct_count, sum(ifNull(wind_ms, 0)) AS wind_ms_sum, toInt64(count(wind_ms)) AS wind_ms_count, sum(ifNull(wind_dir_deg, 0)) AS wind_dir_deg_sum, toInt64(count(wind_dir_deg)) AS wind_dir_deg_count, sum(ifNull(rain_mmh, 0)) AS rain_mmh_sum, toInt64(count(rain_mmh)) AS rain_mmh_count FROM readings_environment FINAL WHERE ingested_at <= (SELECT min(metadata_modification_time) FROM system.tables WHERE database = currentDatabase() AND name = 'mv_dash_environment_sensor_1m') GROUP BY sensor_id, ts;

INSERT INTO dash_utility_sensor_1m (ts, sensor_id, readings, inflow_m3h_sum, inflow_m3h_count, pressure_bar_sum, pressure_bar_count, load_mw_sum, load_mw_count, voltage_kv_sum, voltage_kv_count)
SELECT toStartOfMinute(ts) AS ts, sensor_id, toInt64(count()) AS readings, sum(ifNull(inflow_m3h, 0)) AS inflow_m3h_sum, toInt64(count(inflow_m3h)) AS inflow_m3h_count, sum(ifNull(pressure_bar, 0)) AS pressure_bar_sum, toInt64(count(pressure_bar)) AS pressure_bar_count, sum(ifNull(load_mw, 0)) AS load_mw_sum, toInt64(count(load_mw)) AS load_mw_count, sum(ifNull(voltage_kv, 0)) AS voltage_kv_sum, toInt64(count(voltage_kv)) AS voltage_kv_count FROM readings_utility FINAL WHERE ingested_at <= (SELECT min(metadata_modification_time) FROM system.tables WHERE database = currentDatabase() AND name = 'mv_dash_utility_sensor_1m') GROUP BY sensor_id, ts;
