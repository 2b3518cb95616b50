-- The stream workers report per-detector scores that may be missing (NaN: a detector that has
-- not learned enough yet). The store sends NaN as NULL, so these columns must be Nullable.
ALTER TABLE anomalies MODIFY COLUMN seasonal Nullable(Float64);
ALTER TABLE anomalies MODIFY COLUMN spatial Nullable(Float64);
ALTER TABLE anomalies MODIFY COLUMN multivariate Nullable(Float64);
ALTER TABLE district_risk MODIFY COLUMN contrib_traffic Nullable(Float64);
ALTER TABLE district_risk MODIFY COLUMN contrib_environment Nullable(Float64);
ALTER TABLE district_risk MODIFY COLUMN contrib_utility Nullable(Float64);
