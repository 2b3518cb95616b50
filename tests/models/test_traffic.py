from __future__ import annotations

import numpy as np
import pytest

from models.indicators.noise import lden, leq
from models.indicators.traffic import congestion_index, level_of_service, travel_time_index


def test_travel_time_index() -> None:
    assert travel_time_index([60.0, 30.0, 0.0], [60.0, 60.0, 60.0]).tolist() == [1.0, 2.0, 60.0]


def test_congestion_index_single_and_groups() -> None:
    assert congestion_index([30.0], [60.0], [1.0])[0] == pytest.approx(1.0)
    # two segments, length weights: total time 1/30 + 2/60 = 0.0667 h vs free 1/60 + 2/60
    ci = congestion_index([30.0, 60.0], [60.0, 60.0], [1.0, 2.0])
    assert ci[0] == pytest.approx((1 / 30 + 2 / 60) / (3 / 60) - 1)
    # flow weights (vehicle-km): the busy slow segment dominates
    ci = congestion_index([30.0, 60.0], [60.0, 60.0], [1.0, 1.0], [1000.0, 100.0])
    assert ci[0] == pytest.approx((1000 / 30 + 100 / 60) / (1100 / 60) - 1)
    # per district, NaN speeds left out, empty district NaN
    ci = congestion_index(
        [30.0, np.nan, 60.0], [60.0, 60.0, 60.0], [1.0, 1.0, 1.0], groups=[0, 0, 1], n_groups=3
    )
    assert ci[0] == pytest.approx(1.0) and ci[1] == pytest.approx(0.0) and np.isnan(ci[2])


def test_level_of_service_edges() -> None:
    # a ratio exactly on an edge (0.85, 0.67, 0.5, 0.4, 0.3) belongs to the worse level
    los = level_of_service([60, 51.1, 51, 40.3, 40.2, 30.1, 30, 24, 18, 17.9], [60] * 10)
    assert los.tolist() == ["A", "A", "B", "B", "C", "C", "D", "E", "F", "F"]


def test_noise() -> None:
    assert leq([60.0, 70.0])[0] == pytest.approx(10 * np.log10((1e6 + 1e7) / 2))
    assert leq([50.0, 60.0], groups=[0, 1])[1] == pytest.approx(60.0)
    assert float(lden(60.0, 60.0, 60.0)) == pytest.approx(
        10 * np.log10((12 * 1e6 + 4 * 10**6.5 + 8 * 1e7) / 24)
    )
