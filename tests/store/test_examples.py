"""Every example query in docs/analysts.md runs on both backends against seeded data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from store.base import Store

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
_BLOCK = re.compile(r"```sql\n-- example: (\w+)\n(.*?)```", re.S)


def examples() -> dict[str, str]:
    return {m.group(1): m.group(2).strip() for m in _BLOCK.finditer(DOC.read_text())}


def test_at_least_ten_examples() -> None:
    assert len(examples()) >= 10, sorted(examples())


@pytest.mark.parametrize("name", sorted(examples()))
def test_example_runs(seeded: Store, name: str) -> None:
    df = seeded.query(examples()[name], settings={"readonly": 1})
    assert len(df) > 0, f"{name} returned no rows on {seeded.backend}"
    check = CHECKS.get(name)
    if check:
        check(df)


def _congested(df) -> None:  # type: ignore[no-untyped-def]
    assert (df["speed_ratio"] > 0).all() and (df["speed_ratio"] < 1.2).all()
    assert list(df["speed_ratio"]) == sorted(df["speed_ratio"])


def _aqi(df) -> None:  # type: ignore[no-untyped-def]
    # the seeded pollution episode is in D05 (store.synth.POLLUTED_DISTRICT_INDEX)
    assert df.iloc[0]["district"] == "D05" and df.iloc[0]["hours_over_100"] > 0


def _pm(df) -> None:  # type: ignore[no-untyped-def]
    assert df.iloc[0]["district"] == "D05" and df.iloc[0]["hours_over_75"] > 0


def _mnf(df) -> None:  # type: ignore[no-untyped-def]
    assert (df["mnf_m3h"] > 0).all()
    assert df["dma"].nunique() >= 20  # DMAs with an offline meter have no complete night


def _trend(df) -> None:  # type: ignore[no-untyped-def]
    # the seeded leak grows in the first DMA
    top = df.iloc[0]
    assert top["dma"] == "DMA-D01-01" and top["slope_m3h_per_day"] > 5
    assert top["last_night_m3h"] > top["first_night_m3h"]


def _alerts(df) -> None:  # type: ignore[no-untyped-def]
    assert (df["acknowledged"] <= df["alerts"]).all()
    assert (df["mean_minutes_to_ack"].dropna() > 0).all()


def _avail(df) -> None:  # type: ignore[no-untyped-def]
    assert (df["availability"] >= 0).all()


def _rollup_vs_raw(df) -> None:  # type: ignore[no-untyped-def]
    assert df["exact"].astype(bool).all()


CHECKS = {
    "congested_segments": _congested,
    "aqi_exceedance_hours": _aqi,
    "pm25_hours_over_75": _pm,
    "minimum_night_flow": _mnf,
    "night_flow_trend": _trend,
    "alert_response_times": _alerts,
    "sensor_availability": _avail,
    "rollup_vs_raw": _rollup_vs_raw,
}
