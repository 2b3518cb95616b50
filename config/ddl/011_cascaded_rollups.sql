-- Cascaded rollups: only the per-sensor 1-minute view (mv_rollup_<domain>_sensor_1m, from
-- 004) reads the raw insert block. The per-sensor hourly rollup, the district 1-minute rollup
-- and the screen's minute table are views over the 1-minute rows that view writes, and the
-- district hourly rollup is a view over the district 1-minute rows. A 1-minute block has one
-- row per sensor and minute of the insert (a few hundred times fewer rows than the raw block),
-- so the server aggregates each raw reading once instead of five times, and the district
-- lookup (ANY LEFT JOIN dim_sensors) runs over the small block instead of every reading.
-- Sums are linear, so the tables keep the same contents (counts exactly, float sums up to
-- rounding of the summation order, as before across parts).
--
-- How a view's output reaches further views differs between ClickHouse versions: 18.16 pushes
-- it to the views that select FROM the view itself, current servers (chDB 26.x) to the views
-- that select FROM the view's TO table. store.schema probes the server once, when this
-- migration is pending, and applies the statements under `-- @if cascade_table` or
-- `-- @if cascade_view`; both create the same views, reading the same rows.
--
-- Only the views are replaced (DROP of a view keeps its TO table's data); no table changes.
-- Run it, like every migration, while no writer inserts: readings stored between the DROP and
-- the CREATE of a view would miss that view's table.

DROP TABLE IF EXISTS mv_rollup_traffic_sensor_1h;

DROP TABLE IF EXISTS mv_rollup_traffic_district_1m;

DROP TABLE IF EXISTS mv_rollup_traffic_district_1h;

DROP TABLE IF EXISTS mv_dash_traffic_sensor_1m;

DROP TABLE IF EXISTS mv_rollup_environment_sensor_1h;

DROP TABLE IF EXISTS mv_rollup_environment_district_1m;

DROP TABLE IF EXISTS mv_rollup_environment_district_1h;

DROP TABLE IF EXISTS mv_dash_environment_sensor_1m;

DROP TABLE IF EXISTS mv_rollup_utility_sensor_1h;

DROP TABLE IF EXISTS mv_rollup_utility_district_1m;

DROP TABLE IF EXISTS mv_rollup_utility_district_1h;

DROP TABLE IF EXISTS mv_dash_utility_sensor_1m;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_traffic_sensor_1h TO rollup_traffic_sensor_1h AS
SELECT toStartOfHour(ts) AS ts, sensor_id, sum(readings) AS readings, sum(flow_vph_sum) AS flow_vph_sum, sum(flow_vph_count) AS flow_vph_count, sum(speed_kmh_sum) AS speed_kmh_sum, sum(speed_kmh_count) AS speed_kmh_count, sum(occupancy_pct_sum) AS occupancy_pct_sum, sum(occupancy_pct_count) AS occupancy_pct_count FROM rollup_traffic_sensor_1m GROUP BY sensor_id, ts;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_traffic_district_1m TO rollup_traffic_district_1m AS
SELECT ts, district, sum(readings) AS readings, sum(flow_vph_sum) AS flow_vph_sum, sum(flow_vph_count) AS flow_vph_count, sum(speed_kmh_sum) AS speed_kmh_sum, sum(speed_kmh_count) AS speed_kmh_count, sum(occupancy_pct_sum) AS occupancy_pct_sum, sum(occupancy_pct_count) AS occupancy_pct_count FROM rollup_traffic_sensor_1m ANY LEFT JOIN (SELECT sensor_id, any(district) AS district FROM dim_sensors WHERE domain = 'traffic' GROUP BY sensor_id) AS d USING sensor_id GROUP BY district, ts;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_traffic_district_1h TO rollup_traffic_district_1h AS
SELECT toStartOfHour(ts) AS ts, district, sum(readings) AS readings, sum(flow_vph_sum) AS flow_vph_sum, sum(flow_vph_count) AS flow_vph_count, sum(speed_kmh_sum) AS speed_kmh_sum, sum(speed_kmh_count) AS speed_kmh_count, sum(occupancy_pct_sum) AS occupancy_pct_sum, sum(occupancy_pct_count) AS occupancy_pct_count FROM rollup_traffic_district_1m GROUP BY district, ts;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_dash_traffic_sensor_1m TO dash_traffic_sensor_1m AS
SELECT ts, sensor_id, readings, flow_vph_sum, flow_vph_count, speed_kmh_sum, speed_kmh_count, occupancy_pct_sum, occupancy_pct_count FROM rollup_traffic_sensor_1m;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_traffic_sensor_1h TO rollup_traffic_sensor_1h AS
SELECT toStartOfHour(ts) AS ts, sensor_id, sum(readings) AS readings, sum(flow_vph_sum) AS flow_vph_sum, sum(flow_vph_count) AS flow_vph_count, sum(speed_kmh_sum) AS speed_kmh_sum, sum(speed_kmh_count) AS speed_kmh_count, sum(occupancy_pct_sum) AS occupancy_pct_sum, sum(occupancy_pct_count) AS occupancy_pct_count FROM mv_rollup_traffic_sensor_1m GROUP BY sensor_id, ts;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_traffic_district_1m TO rollup_traffic_district_1m AS
SELECT ts, district, sum(readings) AS readings, sum(flow_vph_sum) AS flow_vph_sum, sum(flow_vph_count) AS flow_vph_count, sum(speed_kmh_sum) AS speed_kmh_sum, sum(speed_kmh_count) AS speed_kmh_count, sum(occupancy_pct_sum) AS occupancy_pct_sum, sum(occupancy_pct_count) AS occupancy_pct_count FROM mv_rollup_traffic_sensor_1m ANY LEFT JOIN (SELECT sensor_id, any(district) AS district FROM dim_sensors WHERE domain = 'traffic' GROUP BY sensor_id) AS d USING sensor_id GROUP BY district, ts;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_traffic_district_1h TO rollup_traffic_district_1h AS
SELECT toStartOfHour(ts) AS ts, district, sum(readings) AS readings, sum(flow_vph_sum) AS flow_vph_sum, sum(flow_vph_count) AS flow_vph_count, sum(speed_kmh_sum) AS speed_kmh_sum, sum(speed_kmh_count) AS speed_kmh_count, sum(occupancy_pct_sum) AS occupancy_pct_sum, sum(occupancy_pct_count) AS occupancy_pct_count FROM mv_rollup_traffic_district_1m GROUP BY district, ts;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_dash_traffic_sensor_1m TO dash_traffic_sensor_1m AS
SELECT ts, sensor_id, readings, flow_vph_sum, flow_vph_count, speed_kmh_sum, speed_kmh_count, occupancy_pct_sum, occupancy_pct_count FROM mv_rollup_traffic_sensor_1m;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_environment_sensor_1h TO rollup_environment_sensor_1h AS
SELECT toStartOfHour(ts) AS ts, sensor_id, sum(readings) AS readings, sum(pm25_sum) AS pm25_sum, sum(pm25_count) AS pm25_count, sum(pm10_sum) AS pm10_sum, sum(pm10_count) AS pm10_count, sum(no2_sum) AS no2_sum, sum(no2_count) AS no2_count, sum(o3_sum) AS o3_sum, sum(o3_count) AS o3_count, sum(so2_sum) AS so2_sum, sum(so2_count) AS so2_count, sum(co_sum) AS co_sum, sum(co_count) AS co_count, sum(noise_dba_sum) AS noise_dba_sum, sum(noise_dba_count) AS noise_dba_count, sum(temp_c_sum) AS temp_c_sum, sum(temp_c_count) AS temp_c_count, sum(humidity_pct_sum) AS humidity_pct_sum, sum(humidity_pct_count) AS humidity_pct_count, sum(wind_ms_sum) AS wind_ms_sum, sum(wind_ms_count) AS wind_ms_count, sum(wind_dir_deg_sum) AS wind_dir_deg_sum, sum(wind_dir_deg_count) AS wind_dir_deg_count, sum(rain_mmh_sum) AS rain_mmh_sum, sum(rain_mmh_count) AS rain_mmh_count FROM rollup_environment_sensor_1m GROUP BY sensor_id, ts;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_environment_district_1m TO rollup_environment_district_1m AS
SELECT ts, district, sum(readings) AS readings, sum(pm25_sum) AS pm25_sum, sum(pm25_count) AS pm25_count, sum(pm10_sum) AS pm10_sum, sum(pm10_count) AS pm10_count, sum(no2_sum) AS no2_sum, sum(no2_count) AS no2_count, sum(o3_sum) AS o3_sum, sum(o3_count) AS o3_count, sum(so2_sum) AS so2_sum, sum(so2_count) AS so2_count, sum(co_sum) AS co_sum, sum(co_count) AS co_count, sum(noise_dba_sum) AS noise_dba_sum, sum(noise_dba_count) AS noise_dba_count, sum(temp_c_sum) AS temp_c_sum, sum(temp_c_count) AS temp_c_count, sum(humidity_pct_sum) AS humidity_pct_sum, sum(humidity_pct_count) AS humidity_pct_count, sum(wind_ms_sum) AS wind_ms_sum, sum(wind_ms_count) AS wind_ms_count, sum(wind_dir_deg_sum) AS wind_dir_deg_sum, sum(wind_dir_deg_count) AS wind_dir_deg_count, sum(rain_mmh_sum) AS rain_mmh_sum, sum(rain_mmh_count) AS rain_mmh_count FROM rollup_environment_sensor_1m ANY LEFT JOIN (SELECT sensor_id, any(district) AS district FROM dim_sensors WHERE domain = 'environment' GROUP BY sensor_id) AS d USING sensor_id GROUP BY district, ts;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_environment_district_1h TO rollup_environment_district_1h AS
SELECT toStartOfHour(ts) AS ts, district, sum(readings) AS readings, sum(pm25_sum) AS pm25_sum, sum(pm25_count) AS pm25_count, sum(pm10_sum) AS pm10_sum, sum(pm10_count) AS pm10_count, sum(no2_sum) AS no2_sum, sum(no2_count) AS no2_count, sum(o3_sum) AS o3_sum, sum(o3_count) AS o3_count, sum(so2_sum) AS so2_sum, sum(so2_count) AS so2_count, sum(co_sum) AS co_sum, sum(co_count) AS co_count, sum(noise_dba_sum) AS noise_dba_sum, sum(noise_dba_count) AS noise_dba_count, sum(temp_c_sum) AS temp_c_sum, sum(temp_c_count) AS temp_c_count, sum(humidity_pct_sum) AS humidity_pct_sum, sum(humidity_pct_count) AS humidity_pct_count, sum(wind_ms_sum) AS wind_ms_sum, sum(wind_ms_count) AS wind_ms_count, sum(wind_dir_deg_sum) AS wind_dir_deg_sum, sum(wind_dir_deg_count) AS wind_dir_deg_count, sum(rain_mmh_sum) AS rain_mmh_sum, sum(rain_mmh_count) AS rain_mmh_count FROM rollup_environment_district_1m GROUP BY district, ts;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_dash_environment_sensor_1m TO dash_environment_sensor_1m AS
SELECT ts, sensor_id, readings, pm25_sum, pm25_count, pm10_sum, pm10_count, no2_sum, no2_count, o3_sum, o3_count, so2_sum, so2_count, co_sum, co_count, noise_dba_sum, noise_dba_count, temp_c_sum, temp_c_count, humidity_pct_sum, humidity_pct_count, wind_ms_sum, wind_ms_count, wind_dir_deg_sum, wind_dir_deg_count, rain_mmh_sum, rain_mmh_count FROM rollup_environment_sensor_1m;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_environment_sensor_1h TO rollup_environment_sensor_1h AS
SELECT toStartOfHour(ts) AS ts, sensor_id, sum(readings) AS readings, sum(pm25_sum) AS pm25_sum, sum(pm25_count) AS pm25_count, sum(pm10_sum) AS pm10_sum, sum(pm10_count) AS pm10_count, sum(no2_sum) AS no2_sum, sum(no2_count) AS no2_count, sum(o3_sum) AS o3_sum, sum(o3_count) AS o3_count, sum(so2_sum) AS so2_sum, sum(so2_count) AS so2_count, sum(co_sum) AS co_sum, sum(co_count) AS co_count, sum(noise_dba_sum) AS noise_dba_sum, sum(noise_dba_count) AS noise_dba_count, sum(temp_c_sum) AS temp_c_sum, sum(temp_c_count) AS temp_c_count, sum(humidity_pct_sum) AS humidity_pct_sum, sum(humidity_pct_count) AS humidity_pct_count, sum(wind_ms_sum) AS wind_ms_sum, sum(wind_ms_count) AS wind_ms_count, sum(wind_dir_deg_sum) AS wind_dir_deg_sum, sum(wind_dir_deg_count) AS wind_dir_deg_count, sum(rain_mmh_sum) AS rain_mmh_sum, sum(rain_mmh_count) AS rain_mmh_count FROM mv_rollup_environment_sensor_1m GROUP BY sensor_id, ts;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_environment_district_1m TO rollup_environment_district_1m AS
SELECT ts, district, sum(readings) AS readings, sum(pm25_sum) AS pm25_sum, sum(pm25_count) AS pm25_count, sum(pm10_sum) AS pm10_sum, sum(pm10_count) AS pm10_count, sum(no2_sum) AS no2_sum, sum(no2_count) AS no2_count, sum(o3_sum) AS o3_sum, sum(o3_count) AS o3_count, sum(so2_sum) AS so2_sum, sum(so2_count) AS so2_count, sum(co_sum) AS co_sum, sum(co_count) AS co_count, sum(noise_dba_sum) AS noise_dba_sum, sum(noise_dba_count) AS noise_dba_count, sum(temp_c_sum) AS temp_c_sum, sum(temp_c_count) AS temp_c_count, sum(humidity_pct_sum) AS humidity_pct_sum, sum(humidity_pct_count) AS humidity_pct_count, sum(wind_ms_sum) AS wind_ms_sum, sum(wind_ms_count) AS wind_ms_count, sum(wind_dir_deg_sum) AS wind_dir_deg_sum, sum(wind_dir_deg_count) AS wind_dir_deg_count, sum(rain_mmh_sum) AS rain_mmh_sum, sum(rain_mmh_count) AS rain_mmh_count FROM mv_rollup_environment_sensor_1m ANY LEFT JOIN (SELECT sensor_id, any(district) AS district FROM dim_sensors WHERE domain = 'environment' GROUP BY sensor_id) AS d USING sensor_id GROUP BY district, ts;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_environment_district_1h TO rollup_environment_district_1h AS
SELECT toStartOfHour(ts) AS ts, district, sum(readings) AS readings, sum(pm25_sum) AS pm25_sum, sum(pm25_count) AS pm25_count, sum(pm10_sum) AS pm10_sum, sum(pm10_count) AS pm10_count, sum(no2_sum) AS no2_sum, sum(no2_count) AS no2_count, sum(o3_sum) AS o3_sum, sum(o3_count) AS o3_count, sum(so2_sum) AS so2_sum, sum(so2_count) AS so2_count, sum(co_sum) AS co_sum, sum(co_count) AS co_count, sum(noise_dba_sum) AS noise_dba_sum, sum(noise_dba_count) AS noise_dba_count, sum(temp_c_sum) AS temp_c_sum, sum(temp_c_count) AS temp_c_count, sum(humidity_pct_sum) AS humidity_pct_sum, sum(humidity_pct_count) AS humidity_pct_count, sum(wind_ms_sum) AS wind_ms_sum, sum(wind_ms_count) AS wind_ms_count, sum(wind_dir_deg_sum) AS wind_dir_deg_sum, sum(wind_dir_deg_count) AS wind_dir_deg_count, sum(rain_mmh_sum) AS rain_mmh_sum, sum(rain_mmh_count) AS rain_mmh_count FROM mv_rollup_environment_district_1m GROUP BY district, ts;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_dash_environment_sensor_1m TO dash_environment_sensor_1m AS
SELECT ts, sensor_id, readings, pm25_sum, pm25_count, pm10_sum, pm10_count, no2_sum, no2_count, o3_sum, o3_count, so2_sum, so2_count, co_sum, co_count, noise_dba_sum, noise_dba_count, temp_c_sum, temp_c_count, humidity_pct_sum, humidity_pct_count, wind_ms_sum, wind_ms_count, wind_dir_deg_sum, wind_dir_deg_count, rain_mmh_sum, rain_mmh_count FROM mv_rollup_environment_sensor_1m;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_utility_sensor_1h TO rollup_utility_sensor_1h AS
SELECT toStartOfHour(ts) AS ts, sensor_id, sum(readings) AS readings, sum(inflow_m3h_sum) AS inflow_m3h_sum, sum(inflow_m3h_count) AS inflow_m3h_count, sum(pressure_bar_sum) AS pressure_bar_sum, sum(pressure_bar_count) AS pressure_bar_count, sum(load_mw_sum) AS load_mw_sum, sum(load_mw_count) AS load_mw_count, sum(voltage_kv_sum) AS voltage_kv_sum, sum(voltage_kv_count) AS voltage_kv_count FROM rollup_utility_sensor_1m GROUP BY sensor_id, ts;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_utility_district_1m TO rollup_utility_district_1m AS
SELECT ts, district, sum(readings) AS readings, sum(inflow_m3h_sum) AS inflow_m3h_sum, sum(inflow_m3h_count) AS inflow_m3h_count, sum(pressure_bar_sum) AS pressure_bar_sum, sum(pressure_bar_count) AS pressure_bar_count, sum(load_mw_sum) AS load_mw_sum, sum(load_mw_count) AS load_mw_count, sum(voltage_kv_sum) AS voltage_kv_sum, sum(voltage_kv_count) AS voltage_kv_count FROM rollup_utility_sensor_1m ANY LEFT JOIN (SELECT sensor_id, any(district) AS district FROM dim_sensors WHERE domain = 'utility' GROUP BY sensor_id) AS d USING sensor_id GROUP BY district, ts;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_utility_district_1h TO rollup_utility_district_1h AS
SELECT toStartOfHour(ts) AS ts, district, sum(readings) AS readings, sum(inflow_m3h_sum) AS inflow_m3h_sum, sum(inflow_m3h_count) AS inflow_m3h_count, sum(pressure_bar_sum) AS pressure_bar_sum, sum(pressure_bar_count) AS pressure_bar_count, sum(load_mw_sum) AS load_mw_sum, sum(load_mw_count) AS load_mw_count, sum(voltage_kv_sum) AS voltage_kv_sum, sum(voltage_kv_count) AS voltage_kv_count FROM rollup_utility_district_1m GROUP BY district, ts;

-- @if cascade_table
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_dash_utility_sensor_1m TO dash_utility_sensor_1m AS
SELECT ts, sensor_id, readings, inflow_m3h_sum, inflow_m3h_count, pressure_bar_sum, pressure_bar_count, load_mw_sum, load_mw_count, voltage_kv_sum, voltage_kv_count FROM rollup_utility_sensor_1m;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_utility_sensor_1h TO rollup_utility_sensor_1h AS
SELECT toStartOfHour(ts) AS ts, sensor_id, sum(readings) AS readings, sum(inflow_m3h_sum) AS inflow_m3h_sum, sum(inflow_m3h_count) AS inflow_m3h_count, sum(pressure_bar_sum) AS pressure_bar_sum, sum(pressure_bar_count) AS pressure_bar_count, sum(load_mw_sum) AS load_mw_sum, sum(load_mw_count) AS load_mw_count, sum(voltage_kv_sum) AS voltage_kv_sum, sum(voltage_kv_count) AS voltage_kv_count FROM mv_rollup_utility_sensor_1m GROUP BY sensor_id, ts;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_utility_district_1m TO rollup_utility_district_1m AS
SELECT ts, district, sum(readings) AS readings, sum(inflow_m3h_sum) AS inflow_m3h_sum, sum(inflow_m3h_count) AS inflow_m3h_count, sum(pressure_bar_sum) AS pressure_bar_sum, sum(pressure_bar_count) AS pressure_bar_count, sum(load_mw_sum) AS load_mw_sum, sum(load_mw_count) AS load_mw_count, sum(voltage_kv_sum) AS voltage_kv_sum, sum(voltage_kv_count) AS voltage_kv_count FROM mv_rollup_utility_sensor_1m ANY LEFT JOIN (SELECT sensor_id, any(district) AS district FROM dim_sensors WHERE domain = 'utility' GROUP BY sensor_id) AS d USING sensor_id GROUP BY district, ts;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_rollup_utility_district_1h TO rollup_utility_district_1h AS
SELECT toStartOfHour(ts) AS ts, district, sum(readings) AS readings, sum(inflow_m3h_sum) AS inflow_m3h_sum, sum(inflow_m3h_count) AS inflow_m3h_count, sum(pressure_bar_sum) AS pressure_bar_sum, sum(pressure_bar_count) AS pressure_bar_count, sum(load_mw_sum) AS load_mw_sum, sum(load_mw_count) AS load_mw_count, sum(voltage_kv_sum) AS voltage_kv_sum, sum(voltage_kv_count) AS voltage_kv_count FROM mv_rollup_utility_district_1m GROUP BY district, ts;

-- @if cascade_view
CREATE MATERIALIZED VIEW IF NOT EXISTS mv_dash_utility_sensor_1m TO dash_utility_sensor_1m AS
SELECT ts, sensor_id, readings, inflow_m3h_sum, inflow_m3h_count, pressure_bar_sum, pressure_bar_count, load_mw_sum, load_mw_count, voltage_kv_sum, voltage_kv_count FROM mv_rollup_utility_sensor_1m;
