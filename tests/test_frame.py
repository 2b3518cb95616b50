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


def test_shapes_numpy_refuses_and_odd_domains_are_dead_letters_not_crashes():
    # these raised TypeError/ValueError (not FrameError) before: a worker crash on bad input
    for raw, reason in [
        (_doc(ts=[1.7e9, [1.7e9]]), "wrong_type"),
        (_doc(metrics={"flow_vph": [1.0, [2.0, 3.0]], "speed_kmh": [1, 2],
                       "occupancy_pct": [1, 2]}), "wrong_type"),
        (_doc(domain=["traffic"]), "unknown_domain"),
        (_doc(domain={"a": 1}), "unknown_domain"),
        (_doc(seq=[2**63 + 1, 2]), "wrong_type"),  # does not fit int64 (it wrapped around)
    ]:
        with pytest.raises(FrameError) as err:
            decode(raw)
        assert err.value.reason == reason, raw


_numbers = st.one_of(
    st.integers(-3, 2**40), st.floats(0, 4e9, allow_nan=False), st.sampled_from([0, 1, 2**53 + 1]),
)
_cells = st.one_of(
    _numbers, _numbers, _numbers, st.none(), st.booleans(), st.text(max_size=2),
    st.lists(st.integers(0, 3), max_size=2), st.integers(2**62, 2**64 - 1),
    st.floats(-1e300, 1e300, allow_nan=False), st.integers(-2**63, -1),
)


@settings(max_examples=400, deadline=None)
@given(
    n=st.integers(1, 6),
    ts=st.lists(_cells, min_size=1, max_size=6),
    seq=st.lists(_cells, min_size=1, max_size=6),
    flow=st.lists(_cells, min_size=1, max_size=6),
    sids=st.lists(st.one_of(st.text(max_size=3), st.integers(0, 3)), min_size=0, max_size=6),
    uniform=st.booleans(),
    domain=st.sampled_from(["traffic", "weather", None, 3]),
)
def test_fast_path_decodes_exactly_as_the_checked_path(n, ts, seq, flow, sids, uniform, domain):
    """decode() tries the fast path first; whatever it accepts, the checked path (which finds
    the exact reason for everything else) must give the same frame, bit for bit."""
    from models.frame import _decode_checked

    if uniform:  # mostly valid frames of n readings, so both paths are exercised
        pick = [1.7e9, 1.7e9 + 1, 1700000002, 3.5, 7, 0]
        ts = [pick[i % 4] if isinstance(c, bool) or not isinstance(c, (int, float)) else
              abs(c) % 4e9 for i, c in enumerate((ts * n)[:n])]
        seq = list(range(n))
        flow = [float(i) for i in range(n)] if len(flow) < 3 else (flow * n)[:n]
        sids = [f"S{i}" for i in range(n)]
        domain = "traffic"
    raw = orjson.dumps({
        "v": 1, "gateway": "TR-G1", "domain": domain, "ts": ts, "sensor_id": sids, "seq": seq,
        "metrics": {"flow_vph": flow, "speed_kmh": [50.0] * len(flow),
                    "occupancy_pct": [3] * len(flow)},
    })
    try:
        fast = decode(raw)
    except FrameError as exc:
        with pytest.raises(FrameError) as err:
            _decode_checked(orjson.loads(raw), raw)
        assert err.value.reason == exc.reason and str(err.value) == str(exc)
        return
    ref = _decode_checked(orjson.loads(raw), raw)
    assert (fast.gateway, fast.domain, list(fast.metrics)) == (ref.gateway, ref.domain,
                                                               list(ref.metrics))
    for a, b in [(fast.ts, ref.ts), (fast.seq, ref.seq), (fast.sensor_id, ref.sensor_id),
                 *((fast.metrics[m], ref.metrics[m]) for m in ref.metrics)]:
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes() if a.dtype != object else a.tolist() == b.tolist()
