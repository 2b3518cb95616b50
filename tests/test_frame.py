"""The wire format: round trip and one dead-letter reason per kind of bad frame."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.frame import Frame, FrameError, decode, encode


def _frame(n: int = 3) -> Frame:
    return Frame(
        gateway="TR-G1", domain="traffic", ts=np.arange(n, dtype=float) + 1.7e9,
        sensor_id=np.array([f"S{i}" for i in range(n)], dtype=object),
        seq=np.arange(n, dtype=np.int64),
        metrics={"flow_vph": np.linspace(0, 1, n), "speed_kmh": np.full(n, 50.5),
                 "occupancy_pct": np.full(n, 3.25)},
    )


def test_round_trip_exact():
    f = _frame()
    g = decode(encode(f))
    assert g.gateway == f.gateway and g.domain == f.domain and g.kind == "loop"
    assert (g.sensor_id == f.sensor_id).all() and (g.seq == f.seq).all()
    assert (g.ts == f.ts).all()
    for m in f.metrics:
        assert (g.metrics[m] == f.metrics[m]).all()


def _doc(**changes: object) -> bytes:
    d = orjson.loads(encode(_frame(2)))
    d.update(changes)
    return orjson.dumps(d)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "wrong_type"),
        (_doc(v=2), "unknown_version"),
        (_doc(domain="weather"), "unknown_domain"),
        (_doc(metrics={"flow_vph": [1, 2]}), "unknown_metrics"),
        (_doc(ts=[1.7e9]), "ragged"),
        (_doc(ts=[1.7e9, None]), "non_finite"),
        (_doc(seq=["a", "b"]), "wrong_type"),
        (_doc(seq=[-1, 2]), "wrong_type"),
        (_doc(sensor_id=[1, 2]), "wrong_type"),
        (_doc(ts=[-5.0, 1.0]), "bad_timestamp"),
        (_doc(sensor_id=[], ts=[], seq=[], metrics={"flow_vph": [], "speed_kmh": [],
                                                    "occupancy_pct": []}), "empty"),
    ],
)
def test_bad_frames_have_reasons(raw, reason):
    with pytest.raises(FrameError) as err:
        decode(raw)
    assert err.value.reason == reason


def test_missing_field_and_oversized():
    d = orjson.loads(encode(_frame(1)))
    del d["seq"]
    with pytest.raises(FrameError) as err:
        decode(orjson.dumps(d))
    assert err.value.reason == "missing_field"
    with pytest.raises(FrameError) as err:
        decode(encode(_frame(1)), max_bytes=10)
    assert err.value.reason == "oversized"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(raw):
    try:
        decode(raw)
    except FrameError as exc:
        assert exc.reason


@pytest.mark.parametrize(
    "column",
    [["1", "2"], [True, False], [[1], [2]], [1.0, "x"], [1.0, True], [{"a": 1}, 2.0]],
)
def test_non_numbers_are_wrong_type(column):
    with pytest.raises(FrameError) as err:
        decode(_doc(ts=column))
    assert err.value.reason == "wrong_type"


def test_null_is_non_finite_and_ints_are_fine():
    with pytest.raises(FrameError) as err:
        decode(_doc(seq=[1, None]))
    assert err.value.reason == "non_finite"
    assert decode(_doc(ts=[1700000000, 1700000001])).ts.dtype == np.float64
