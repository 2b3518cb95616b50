"""Calendar arithmetic on epoch seconds, vectorised (no ``datetime`` per reading).

Event time is epoch seconds (UTC); profiles need the city's *local* hour of day and weekday,
which a fixed UTC offset gives (``utc_offset_h`` in the city file).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np

DAY = 86400.0


def parse_local_iso(text: str, utc_offset_s: float) -> float:
    """ISO 8601 -> epoch seconds. Without a zone the time is local to the city.

    >>> parse_local_iso("2026-01-05T06:00", 3600.0)
    1767589200.0
    """
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("expected an ISO 8601 time such as 2026-01-05T06:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone(timedelta(seconds=utc_offset_s)))
    return dt.timestamp()


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_midnight(epoch: float, utc_offset_s: float) -> float:
    """Epoch of the local midnight starting the day that contains ``epoch``."""
    local = epoch + utc_offset_s
    return float(np.floor(local / DAY) * DAY - utc_offset_s)


def local_hour(t: np.ndarray, utc_offset_s: float) -> np.ndarray:
    """Local hour of day in [0, 24), float."""
    return ((np.asarray(t, dtype=np.float64) + utc_offset_s) % DAY) / 3600.0


def local_weekday(t: np.ndarray, utc_offset_s: float) -> np.ndarray:
    """Local weekday, Monday = 0 (1970-01-01 was a Thursday)."""
    days = np.floor((np.asarray(t, dtype=np.float64) + utc_offset_s) / DAY).astype(np.int64)
    return (days + 3) % 7


def day_of_year(t: np.ndarray, utc_offset_s: float) -> np.ndarray:
    """Approximate day of the year (0..365), for seasonal terms."""
    days = (np.asarray(t, dtype=np.float64) + utc_offset_s) / DAY
    return (days - 0.0) % 365.2425
