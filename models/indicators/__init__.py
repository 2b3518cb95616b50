"""Indicators: pure, vectorised functions of readings or window aggregates (AQI, congestion,
night flow, load factor, noise levels) and the event-time window aggregator they consume."""
