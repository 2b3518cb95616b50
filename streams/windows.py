"""Event-time hopping windows per gateway, closed on a watermark.

A :class:`GatewayWindows` keeps, for one gateway's sensors, per-step buckets of sums and counts.
When the gateway's watermark (its newest event time minus the allowed lateness) passes the end
``E`` of a step, it emits for every sensor with data in ``[E - window, E)`` the mean of each
metric over that window. Readings older than the last closed step are *late*: they are not
counted and are handed back to the caller (who dead-letters them). A reading seen twice (same
sensor and ``seq``) counts once, so a redelivered frame changes nothing.

State is plain data (:meth:`snapshot` / :meth:`restore`) so that a Faust table can hold it.

>>> w = GatewayWindows(n_sensors=1, n_metrics=1, window_s=120, step_s=60, lateness_s=0)
>>> _ = w.add(np.array([0]), np.array([0.0, 30.0][:1]), np.array([1]), np.array([[2.0]]))
>>> _ = w.add(np.array([0]), np.array([61.0]), np.array([2]), np.array([[4.0]]))
>>> ends, idx, means = w.emit()
>>> ends.tolist(), means.ravel().tolist()
([60.0], [2.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np

_SEQ_BITS = 40


class GatewayWindows:
    def __init__(
        self, *, n_sensors: int, n_metrics: int, window_s: int, step_s: int, lateness_s: int
    ) -> None:
        if window_s <= 0 or step_s <= 0 or window_s % step_s:
            raise ValueError(
                f"window_s must be a positive multiple of step_s, got {window_s!r}/{step_s!r}"
            )
        if lateness_s < 0:
            raise ValueError(f"lateness_s must be >= 0, got {lateness_s!r}")
        self.n_sensors, self.n_metrics = n_sensors, n_metrics
        self.window_s, self.step_s, self.lateness_s = window_s, step_s, lateness_s
        # bucket start -> (sum[n_sensors, n_metrics], count[n_sensors], keys seen)
        self.buckets: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.closed_until: int | None = None  # end of the last emitted step
        self.max_ts: float = -np.inf
        self._seen: set[int] = set()  # keys of every open bucket (a reading counts once)

    # -- ingest ----------------------------------------------------------------------------------
    def add(
        self, idx: np.ndarray, ts: np.ndarray, seq: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """Count readings; returns the boolean mask of *late* readings (not counted)."""
        step = self.step_s
        if self.closed_until is None and len(ts):
            # Start the closed range one lateness before the first batch: a gateway whose first
            # delivered frame is not its oldest (reordering, parallel producers) must still
            # count the older readings that are within the allowed lateness.
            self.closed_until = int(np.floor((ts.min() - self.lateness_s) / step) * step)
        late = ts < (self.closed_until if self.closed_until is not None else -np.inf)
        if not late.any():  # the usual case: no copies
            idx_ok, ts_ok, vals_ok, seq_ok = idx, ts, values, seq
        elif not late.all():
            ok = ~late
            idx_ok, ts_ok, vals_ok, seq_ok = idx[ok], ts[ok], values[ok], seq[ok]
        else:
            return late
        if len(ts_ok):
            keys = ((np.asarray(idx_ok, dtype=np.int64) << _SEQ_BITS)
                    | np.asarray(seq_ok, dtype=np.int64))
            # Drop readings already counted (redelivery) and duplicates inside this batch. A
            # set of the open buckets' keys: frames are small (a gateway's sensors at one
            # time), and np.unique + np.isin against every open key cost ~0.4 ms a frame.
            seen, klist = self._seen, keys.tolist()
            batch = set(klist)
            if len(batch) == len(klist) and seen.isdisjoint(batch):
                seen |= batch  # the usual case: all new, in C
            else:
                fresh = np.ones(len(klist), dtype=bool)
                for i, k in enumerate(klist):
                    if k in seen:
                        fresh[i] = False
                    else:
                        seen.add(k)
                idx_ok, ts_ok, vals_ok, keys = (idx_ok[fresh], ts_ok[fresh], vals_ok[fresh],
                                                keys[fresh])
            if len(ts_ok):
                self._count(idx_ok, ts_ok, vals_ok, keys)
                self.max_ts = max(self.max_ts, float(ts_ok.max()))
        return late

    def _count(
        self, idx: np.ndarray, ts: np.ndarray, vals: np.ndarray, keys: np.ndarray
    ) -> None:
        """Add fresh readings to their step buckets.

        The buckets the readings fall in are stacked into one array and every reading is added
        by a single ``np.add.at`` (flat index bucket * n_sensors + sensor). ``np.add.at`` adds
        in reading order, like the former loop of one ``np.add.at`` per bucket: every sum gets
        the same values in the same order, hence the same bits
        (``tests/streams/test_windows_reference.py`` compares with that loop). A coalesced
        frame (300 s of a gateway) falls in ~5 buckets: a few numpy calls instead of ~8 per
        bucket.
        """
        step, ns, nm = self.step_s, self.n_sensors, self.n_metrics
        bi = np.floor(ts / step).astype(np.int64)  # bucket start / step
        lo, hi = int(bi.min()), int(bi.max())
        k = hi - lo + 1
        buckets = self.buckets
        if k == 1:
            b = lo * step
            bucket = buckets.get(b)
            if bucket is None:
                s, c = np.zeros((ns, nm)), np.zeros(ns, dtype=np.int64)
            else:
                s, c = bucket[0], bucket[1]
                keys = np.concatenate([bucket[2], keys])
            np.add.at(s, idx, vals)
            c += np.bincount(idx, minlength=ns)
            buckets[b] = (s, c, keys)
            return
        if k > 4 * self.window_s // step:  # far apart (a gap): only the buckets present
            ub, rel = np.unique(bi, return_inverse=True)
            blist = ub.tolist()
            k = len(blist)
        else:
            rel = bi - lo
            blist = list(range(lo, hi + 1))
        n_in = np.bincount(rel, minlength=k)
        sums = np.zeros((k, ns, nm))
        counts = np.zeros((k, ns), dtype=np.int64)
        present = np.flatnonzero(n_in).tolist()
        olds: dict[int, np.ndarray] = {}
        for j in present:
            bucket = buckets.get(blist[j] * step)
            if bucket is not None:
                sums[j] = bucket[0]
                counts[j] = bucket[1]
                olds[j] = bucket[2]
        flat = rel * ns + idx
        np.add.at(sums.reshape(k * ns, nm), flat, vals)
        counts.reshape(-1)[:] += np.bincount(flat, minlength=k * ns)
        grouped = keys[np.argsort(rel, kind="stable")]  # reading order within each bucket
        ends = np.cumsum(n_in).tolist()
        for j in present:  # ascending: new buckets enter the dict in time order
            new = grouped[ends[j] - int(n_in[j]):ends[j]]
            prev = olds.get(j)
            buckets[blist[j] * step] = (
                sums[j], counts[j], new if prev is None else np.concatenate([prev, new]))

    # -- emit ------------------------------------------------------------------------------------
    def emit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Close every step whose end is at or before the watermark.

        Returns ``(window_end, sensor_index, means[k, n_metrics])`` for the closed windows.
        """
        if self.closed_until is None or not self.buckets:
            return self._empty()
        step, window = self.step_s, self.window_s
        watermark = self.max_ts - self.lateness_s
        last_end = int(np.floor(watermark / step) * step)
        closed = self.closed_until
        if last_end <= closed:
            return self._empty()
        # window ends that have data: a bucket starting at b feeds ends b+step .. b+window
        starts = np.fromiter(self.buckets, np.int64, len(self.buckets))
        cand = (starts[:, None] + np.arange(step, window + 1, step)).ravel()
        e = np.unique(cand[(cand > closed) & (cand <= last_end)])
        # Window totals for every end at once: bucket by bucket in dict order, each added to
        # the slice of ends whose window holds it (b < end <= b + window). Every total is
        # 0 + s1 + s2 ... in the order a loop over the buckets per end used (same bits), with
        # one slice add per bucket instead of ends x buckets Python iterations.
        lo = np.searchsorted(e, starts, side="right").tolist()
        hi = np.searchsorted(e, starts + window, side="right").tolist()
        total = np.zeros((len(e), self.n_sensors, self.n_metrics))
        count = np.zeros((len(e), self.n_sensors), dtype=np.int64)
        for a, z, (s, c, _) in zip(lo, hi, self.buckets.values(), strict=True):
            if a < z:
                total[a:z] += s
                count[a:z] += c
        which, has = np.nonzero(count)  # ends ascending, then sensors ascending
        self.closed_until = last_end
        # keep the buckets that later windows still need
        for b in [b for b in self.buckets if b < last_end - window + step]:
            self._seen.difference_update(self.buckets.pop(b)[2].tolist())
        if not len(which):
            return self._empty()
        return (e[which].astype(np.float64), has,
                total[which, has] / count[which, has][:, None])

    def _empty(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.empty(0), np.empty(0, dtype=np.int64), np.empty((0, self.n_metrics))

    # -- state -----------------------------------------------------------------------------------
    def snapshot(self, *, arrays: bool = False) -> dict[str, Any]:
        """Plain data (lists) that round-trip through JSON; ``arrays=True`` leaves the buckets
        as numpy arrays (copies) for :func:`streams.codecs.encode_snapshot`, which stores them
        as raw bytes. :meth:`restore` accepts either."""
        conv: Any = (lambda a: a.copy()) if arrays else (lambda a: a.tolist())
        return {
            "closed_until": self.closed_until,
            "max_ts": None if not np.isfinite(self.max_ts) else self.max_ts,
            "buckets": {
                str(b): {"sum": conv(s), "count": conv(c), "keys": conv(k)}
                for b, (s, c, k) in self.buckets.items()
            },
        }

    def restore(self, snap: dict[str, Any]) -> None:
        self.closed_until = snap["closed_until"]
        self.max_ts = -np.inf if snap["max_ts"] is None else float(snap["max_ts"])
        self.buckets = {
            int(b): (
                np.asarray(v["sum"], dtype=np.float64).reshape(self.n_sensors, self.n_metrics),
                np.asarray(v["count"], dtype=np.int64),
                np.asarray(v["keys"], dtype=np.int64),
            )
            for b, v in snap["buckets"].items()
        }
        self._seen = {k for _, _, keys in self.buckets.values() for k in keys.tolist()}
