"""GatewayWindows against the plain-Python reference, under reordering and redelivery."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streams.codecs import decode_snapshot, encode_snapshot
from streams.windows import GatewayWindows

WINDOW, STEP, LATENESS = 300, 60, 120


def reference(readings, closed_until, last_end):
    """Means per (sensor, end) for ends in (closed_until, last_end], each (sensor, seq) once."""
    seen, rows = set(), []
    for sid, seq, ts, v in readings:
        if (sid, seq) not in seen:
            seen.add((sid, seq))
            rows.append((sid, ts, v))
    out = {}
    for end in range(closed_until + STEP, last_end + 1, STEP):
        acc: dict[int, list[float]] = {}
        for sid, ts, v in rows:
            if end - WINDOW <= ts < end:
                acc.setdefault(sid, []).append(v)
        for sid, vals in acc.items():
            out[(sid, end)] = sum(vals) / len(vals)
    return out


@settings(max_examples=150, deadline=None)
@example(n_sensors=1, n_steps=3, jitter=[61, 31] + [0] * 38, dup_every=2, batch=1)
@given(
    n_sensors=st.integers(1, 4),
    n_steps=st.integers(1, 40),
    jitter=st.lists(st.integers(0, 89), min_size=40, max_size=40),
    dup_every=st.integers(2, 7),
    batch=st.integers(1, 9),
)
def test_matches_reference_with_jitter_and_duplicates(n_sensors, n_steps, jitter, dup_every, batch):
    # each sensor reports every 30 s; arrival order is shuffled within 90 s (< lateness)
    rng = np.random.default_rng(n_steps * 31 + n_sensors)
    readings = []
    for k in range(n_steps):
        for s in range(n_sensors):
            ts = 1_000_020.0 + 30 * k + (s % 3)
            readings.append((s, k, ts, float(rng.integers(0, 1000))))
    arrival = sorted(range(len(readings)), key=lambda i: readings[i][2] + jitter[i % 40])
    stream = [readings[i] for i in arrival]
    stream += [r for i, r in enumerate(stream) if i % dup_every == 0]  # redelivery, later

    w = GatewayWindows(n_sensors=n_sensors, n_metrics=1, window_s=WINDOW, step_s=STEP,
                       lateness_s=LATENESS)
    got: dict[tuple[int, int], float] = {}
    accepted = []
    for i in range(0, len(stream), batch):
        chunk = stream[i:i + batch]
        idx = np.array([r[0] for r in chunk])
        seq = np.array([r[1] for r in chunk])
        ts = np.array([r[2] for r in chunk])
        vals = np.array([[r[3]] for r in chunk])
        late = w.add(idx, ts, seq, vals)
        accepted += [r for r, is_late in zip(chunk, late, strict=True) if not is_late]
        ends, sidx, means = w.emit()
        for e, s, m in zip(ends, sidx, means[:, 0], strict=True):
            assert (int(s), int(e)) not in got, "a window was emitted twice"
            got[(int(s), int(e))] = float(m)
    # jitter < lateness, so only redelivered copies can be late
    assert {(r[0], r[1]) for r in accepted} == {(r[0], r[1]) for r in readings}
    first = int(np.floor((min(r[2] for r in stream[:batch]) - LATENESS) / STEP) * STEP)
    want = reference(accepted, first, int(w.closed_until or first))
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert abs(got[k] - v) < 1e-9


def test_snapshot_round_trip_continues_identically():
    import orjson

    def feed(w, ks):
        out = []
        for k in ks:
            w.add(np.array([0, 1]), np.full(2, 30.0 * k), np.full(2, k), np.array([[k], [2 * k]]))
            out.append(w.emit())
        return out

    a = GatewayWindows(n_sensors=2, n_metrics=1, window_s=WINDOW, step_s=STEP, lateness_s=LATENESS)
    feed(a, range(0, 20))
    b = GatewayWindows(n_sensors=2, n_metrics=1, window_s=WINDOW, step_s=STEP, lateness_s=LATENESS)
    b.restore(orjson.loads(orjson.dumps(a.snapshot())))
    # the worker's binary checkpoint format (arrays as raw bytes) restores the same state
    c = GatewayWindows(n_sensors=2, n_metrics=1, window_s=WINDOW, step_s=STEP, lateness_s=LATENESS)
    c.restore(decode_snapshot(encode_snapshot(a.snapshot(arrays=True))))
    assert orjson.dumps(c.snapshot()) == orjson.dumps(a.snapshot())
    fa = feed(a, range(20, 40))
    for other in (b, c):
        for x, y in zip(fa, feed(other, range(20, 40)), strict=True):
            for u, v in zip(x, y, strict=True):
                assert np.array_equal(u, v)


def _loop_emit(w):
    """The window totals as a loop over the buckets per end (the code ``emit`` replaced): the
    bits ``emit`` must reproduce."""
    last_end = int(np.floor((w.max_ts - w.lateness_s) / w.step_s) * w.step_s)
    ends = sorted({b + k * w.step_s for b in w.buckets for k in range(1, w.window_s // w.step_s + 1)
                   if w.closed_until < b + k * w.step_s <= last_end})
    out = []
    for end in ends:
        total = np.zeros((w.n_sensors, w.n_metrics))
        count = np.zeros(w.n_sensors, dtype=np.int64)
        for b, (s, c, _) in w.buckets.items():
            if end - w.window_s <= b < end:
                total += s
                count += c
        for i in np.nonzero(count)[0]:
            out.append((float(end), int(i), (total[i] / count[i]).tobytes()))
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n_sensors=st.integers(1, 30), n_metrics=st.integers(1, 4),
       span=st.sampled_from([30.0, 300.0, 900.0]), scale=st.sampled_from([1.0, 1e8, 1e-8]))
def test_emit_gives_the_bits_of_a_loop_over_buckets(seed, n_sensors, n_metrics, span, scale):
    rng = np.random.default_rng(seed)
    w = GatewayWindows(n_sensors=n_sensors, n_metrics=n_metrics, window_s=WINDOW, step_s=STEP,
                       lateness_s=LATENESS)
    t, seq = 1e9, 0
    for _ in range(15):
        k = int(rng.integers(1, 200))
        ts = t + np.sort(rng.uniform(-100, span, k))
        t = float(ts.max())
        w.add(rng.integers(0, n_sensors, k), ts, np.arange(seq, seq + k),
              rng.normal(size=(k, n_metrics)) * scale)
        seq += k
        if w.closed_until is None or not w.buckets:
            continue
        want = _loop_emit(w)
        ends, idx, means = w.emit()
        got = [(float(e), int(i), m.tobytes()) for e, i, m in zip(ends, idx, means, strict=True)]
        assert got == want


def _loop_add(buckets, n_sensors, n_metrics, step, idx, ts, vals, keys):
    """Fresh readings into step buckets with one ``np.add.at`` per bucket (the code
    ``GatewayWindows._count`` replaced): the bits and the dict order it must reproduce."""
    starts = (np.floor(ts / step) * step).astype(np.int64)
    for b in np.unique(starts):
        sel = starts == b
        bucket = buckets.get(int(b))
        if bucket is None:
            bucket = (np.zeros((n_sensors, n_metrics)), np.zeros(n_sensors, dtype=np.int64),
                      np.empty(0, dtype=np.int64))
        s, c, k = bucket
        np.add.at(s, idx[sel], vals[sel])
        np.add.at(c, idx[sel], 1)
        buckets[int(b)] = (s, c, np.concatenate([k, keys[sel]]))


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10**6), n_sensors=st.integers(1, 30), n_metrics=st.integers(1, 4),
       span=st.sampled_from([30.0, 300.0, 900.0, 20000.0]), ordered=st.booleans(),
       scale=st.sampled_from([1.0, 1e8, 1e-8]))
def test_add_gives_the_bits_of_one_add_at_per_bucket(seed, n_sensors, n_metrics, span, ordered,
                                                     scale):
    rng = np.random.default_rng(seed)
    w = GatewayWindows(n_sensors=n_sensors, n_metrics=n_metrics, window_s=WINDOW, step_s=STEP,
                       lateness_s=10**6)  # nothing late: every reading reaches the buckets
    ref: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    t, seq = 1e9, 0
    for _ in range(12):
        k = int(rng.integers(1, 200))
        ts = t + rng.uniform(-100, span, k)
        if ordered:
            ts = np.sort(ts)
        t = float(ts.max())
        idx = rng.integers(0, n_sensors, k)
        seqs = np.arange(seq, seq + k)
        seq += k
        vals = rng.normal(size=(k, n_metrics)) * scale
        late = w.add(idx, ts, seqs, vals)
        assert not late.any()
        keys = (idx.astype(np.int64) << 40) | seqs
        _loop_add(ref, n_sensors, n_metrics, STEP, idx, ts, vals, keys)
        assert list(w.buckets) == list(ref)  # same order: emit sums in dict order
        for b, (s, c, kk) in ref.items():
            s2, c2, kk2 = w.buckets[b]
            assert s2.tobytes() == s.tobytes() and np.array_equal(c2, c)
            assert np.array_equal(kk2, kk)
