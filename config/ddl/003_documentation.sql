-- Documentation in the database, and two more sensor attributes.
-- Column comments work on ClickHouse 18.16 and 26.x; table comments need a newer server
-- (-- @if comments). The texts come from store/catalog.py (tests check they match).

-- dim_sensors: the network zone (DMA of a water sensor, substation of a feeder) and the
-- reporting interval, so analysts can group water data by DMA and compute availability.
ALTER TABLE dim_sensors ADD COLUMN zone String DEFAULT '' COMMENT 'network zone: the DMA of a water sensor, the substation of a feeder (\'\' otherwise)';

ALTER TABLE dim_sensors ADD COLUMN interval_s Float64 DEFAULT 0 COMMENT 'reporting interval (s): expected readings = span / interval_s';

-- readings_traffic
ALTER TABLE readings_traffic
    COMMENT COLUMN ts 'event time of the reading (UTC, seconds)',
    COMMENT COLUMN sensor_id 'sensor id (see dim_sensors)',
    COMMENT COLUMN gateway 'gateway that sent the reading (a junction controller, station or DMA)',
    COMMENT COLUMN seq 'per-sensor sequence number (reading slot since the epoch); with sensor_id and ts the de-duplication key',
    COMMENT COLUMN flow_vph 'traffic flow, vehicles per hour over the reading interval (veh/h)',
    COMMENT COLUMN speed_kmh 'mean spot speed over the reading interval (km/h)',
    COMMENT COLUMN occupancy_pct 'share of time the loop was occupied (%)',
    COMMENT COLUMN ingested_at 'when the row was stored (server clock, UTC); not part of the key';
-- @if comments
ALTER TABLE readings_traffic MODIFY COMMENT 'raw traffic readings, one row per reading, one column per metric; ReplacingMergeTree on (sensor_id, ts, seq): use FINAL for exact counts';

-- readings_environment
ALTER TABLE readings_environment
    COMMENT COLUMN ts 'event time of the reading (UTC, seconds)',
    COMMENT COLUMN sensor_id 'sensor id (see dim_sensors)',
    COMMENT COLUMN gateway 'gateway that sent the reading (a junction controller, station or DMA)',
    COMMENT COLUMN seq 'per-sensor sequence number (reading slot since the epoch); with sensor_id and ts the de-duplication key',
    COMMENT COLUMN pm25 'PM2.5 concentration (µg/m³); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN pm10 'PM10 concentration (µg/m³); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN no2 'NO2 concentration (µg/m³); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN o3 'ozone concentration (µg/m³); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN so2 'SO2 concentration (µg/m³); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN co 'CO concentration (mg/m³); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN noise_dba 'equivalent continuous sound level over the reading interval (dB(A)); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN temp_c 'air temperature (°C); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN humidity_pct 'relative humidity (%); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN wind_ms 'wind speed (m/s); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN wind_dir_deg 'wind direction the wind blows from, clockwise from north (°); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN rain_mmh 'rain intensity (mm/h); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN ingested_at 'when the row was stored (server clock, UTC); not part of the key';
-- @if comments
ALTER TABLE readings_environment MODIFY COMMENT 'raw environment readings, one row per reading, one column per metric; ReplacingMergeTree on (sensor_id, ts, seq): use FINAL for exact counts';

-- readings_utility
ALTER TABLE readings_utility
    COMMENT COLUMN ts 'event time of the reading (UTC, seconds)',
    COMMENT COLUMN sensor_id 'sensor id (see dim_sensors)',
    COMMENT COLUMN gateway 'gateway that sent the reading (a junction controller, station or DMA)',
    COMMENT COLUMN seq 'per-sensor sequence number (reading slot since the epoch); with sensor_id and ts the de-duplication key',
    COMMENT COLUMN inflow_m3h 'inflow into the district metering area (DMA) (m³/h); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN pressure_bar 'water pressure at the node (bar); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN load_mw 'feeder load (MW); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN voltage_kv 'feeder voltage (kV); NULL when this kind of sensor does not measure it',
    COMMENT COLUMN ingested_at 'when the row was stored (server clock, UTC); not part of the key';
-- @if comments
ALTER TABLE readings_utility MODIFY COMMENT 'raw utility readings, one row per reading, one column per metric; ReplacingMergeTree on (sensor_id, ts, seq): use FINAL for exact counts';

-- indicators
ALTER TABLE indicators
    COMMENT COLUMN ts 'end of the window (UTC)',
    COMMENT COLUMN entity_type 'what the indicator describes: sensor, district, city or station (air station)',
    COMMENT COLUMN entity_id 'the sensor, district or station id (\'city\' for the whole city)',
    COMMENT COLUMN name 'indicator name: <metric>_mean (per sensor window), congestion_index, aqi',
    COMMENT COLUMN value 'indicator value',
    COMMENT COLUMN window_s 'window length in seconds',
    COMMENT COLUMN ingested_at 'when the row was stored (server clock, UTC); not part of the key';
-- @if comments
ALTER TABLE indicators MODIFY COMMENT 'windowed indicators in long format: one row per entity, indicator and window end';

-- anomalies
ALTER TABLE anomalies
    COMMENT COLUMN ts 'event time of the reading (UTC)',
    COMMENT COLUMN sensor_id 'sensor id',
    COMMENT COLUMN kind 'sensor kind (loop, air, noise, weather, water_flow, water_pressure, power)',
    COMMENT COLUMN district 'district of the sensor',
    COMMENT COLUMN score 'combined anomaly score in [0, 1]',
    COMMENT COLUMN seasonal 'score against the time-of-day/week baseline',
    COMMENT COLUMN spatial 'score against the sensor\'s neighbours',
    COMMENT COLUMN multivariate 'IsolationForest score over window features',
    COMMENT COLUMN metric 'metric that drove the seasonal score (\'\' if none)',
    COMMENT COLUMN flags 'health flags of the reading (bit set, see docs/models.md)',
    COMMENT COLUMN ingested_at 'when the row was stored (server clock, UTC); not part of the key';
-- @if comments
ALTER TABLE anomalies MODIFY COMMENT 'readings whose combined anomaly score reached the reporting threshold';

-- sensor_health
ALTER TABLE sensor_health
    COMMENT COLUMN ts 'event time of the change (UTC)',
    COMMENT COLUMN sensor_id 'sensor id',
    COMMENT COLUMN district 'district of the sensor',
    COMMENT COLUMN flags 'health flags (bit set; 0 = healthy)',
    COMMENT COLUMN status 'flag names, comma separated (\'ok\' when healthy)',
    COMMENT COLUMN ingested_at 'when the row was stored (server clock, UTC); not part of the key';
-- @if comments
ALTER TABLE sensor_health MODIFY COMMENT 'sensor quality flags whenever they change (0 = healthy)';

-- district_risk
ALTER TABLE district_risk
    COMMENT COLUMN ts 'event time of the assessment (UTC)',
    COMMENT COLUMN district 'district id',
    COMMENT COLUMN risk 'composite risk 0..100',
    COMMENT COLUMN colour 'warning colour: none, blue, yellow, orange or red',
    COMMENT COLUMN contrib_traffic 'risk points from traffic sensors',
    COMMENT COLUMN contrib_environment 'risk points from environment sensors and AQI',
    COMMENT COLUMN contrib_utility 'risk points from water and power sensors',
    COMMENT COLUMN top_sensors 'sensors that contributed most (JSON array)',
    COMMENT COLUMN ingested_at 'when the row was stored (server clock, UTC); not part of the key';
-- @if comments
ALTER TABLE district_risk MODIFY COMMENT 'district risk 0..100 per tick, with the points each domain contributed';

-- alert_events
ALTER TABLE alert_events
    COMMENT COLUMN ts 'event time (UTC)',
    COMMENT COLUMN alert_id 'alert id',
    COMMENT COLUMN district 'district of the alert',
    COMMENT COLUMN type 'alert type: traffic, air_quality, noise, water or power',
    COMMENT COLUMN event 'opened, updated, escalated, acknowledged or resolved',
    COMMENT COLUMN state 'state after the event: open, acknowledged or resolved',
    COMMENT COLUMN severity 'severity 1..3',
    COMMENT COLUMN peak 'highest anomaly score seen so far',
    COMMENT COLUMN sensors 'sensors that triggered the alert',
    COMMENT COLUMN actor 'who caused the event (\'worker\' for the models, or an operator name)',
    COMMENT COLUMN ingested_at 'when the row was stored (server clock, UTC); not part of the key';
-- @if comments
ALTER TABLE alert_events MODIFY COMMENT 'alert lifecycle events; an alert\'s state is its latest event (view alerts_current)';

-- groundtruth
ALTER TABLE groundtruth
    COMMENT COLUMN id 'label id',
    COMMENT COLUMN type 'incident or fault type (crash, pollution, burst, stuck, dropout, ...)',
    COMMENT COLUMN category 'incident or fault',
    COMMENT COLUMN start 'start of the labelled interval (UTC)',
    COMMENT COLUMN end 'end of the labelled interval (UTC)',
    COMMENT COLUMN district 'district (\'\' if none)',
    COMMENT COLUMN sensors 'sensors affected',
    COMMENT COLUMN detail 'type-specific parameters (JSON)',
    COMMENT COLUMN ingested_at 'when the row was stored (server clock, UTC); not part of the key';
-- @if comments
ALTER TABLE groundtruth MODIFY COMMENT 'ground truth of simulated incidents and faults (from the simulator\'s labels)';

-- dim_districts
ALTER TABLE dim_districts
    COMMENT COLUMN district 'district id (D01...)',
    COMMENT COLUMN name 'district name',
    COMMENT COLUMN name_zh 'district name in Chinese',
    COMMENT COLUMN polygon 'outline as a JSON array of [x_km, y_km]',
    COMMENT COLUMN loaded_at 'when this row was loaded';
-- @if comments
ALTER TABLE dim_districts MODIFY COMMENT 'districts of the city (reloaded from the city file at start; latest load wins, use FINAL)';

-- dim_segments
ALTER TABLE dim_segments
    COMMENT COLUMN segment 'segment id (SEG...)',
    COMMENT COLUMN district 'district id',
    COMMENT COLUMN length_km 'length (km)',
    COMMENT COLUMN lanes 'lanes in this direction',
    COMMENT COLUMN free_speed_kmh 'free-flow speed (km/h)',
    COMMENT COLUMN capacity_vph 'capacity (vehicles per hour)',
    COMMENT COLUMN coords 'polyline as a JSON array of [x_km, y_km]',
    COMMENT COLUMN loaded_at 'when this row was loaded';
-- @if comments
ALTER TABLE dim_segments MODIFY COMMENT 'directed road segments (one per block and direction)';

-- dim_sensors
ALTER TABLE dim_sensors
    COMMENT COLUMN sensor_id 'sensor id',
    COMMENT COLUMN kind 'loop, air, noise, weather, water_flow, water_pressure or power',
    COMMENT COLUMN domain 'traffic, environment or utility (the readings_<domain> table)',
    COMMENT COLUMN gateway 'gateway id',
    COMMENT COLUMN district 'district id',
    COMMENT COLUMN segment 'road segment of a loop detector (\'\' otherwise)',
    COMMENT COLUMN x_km 'position east of the city origin (km)',
    COMMENT COLUMN y_km 'position north of the city origin (km)',
    COMMENT COLUMN loaded_at 'when this row was loaded',
    COMMENT COLUMN zone 'network zone: the DMA of a water sensor, the substation of a feeder (\'\' otherwise)',
    COMMENT COLUMN interval_s 'reporting interval (s): expected readings = span / interval_s';
-- @if comments
ALTER TABLE dim_sensors MODIFY COMMENT 'sensors with their kind, gateway, district, road segment and network zone';

-- schema_migrations
ALTER TABLE schema_migrations
    COMMENT COLUMN version 'migration number (config/ddl/NNN_name.sql)',
    COMMENT COLUMN name 'migration name',
    COMMENT COLUMN applied_at 'when it was applied';
-- @if comments
ALTER TABLE schema_migrations MODIFY COMMENT 'schema migrations applied to this database';
