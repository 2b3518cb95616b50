"""Sensor health: per-reading fault flags and a per-sensor quality flag.

Flags (bits of a ``uint16``):

=============  =====================================================================
``OUT_OF_RANGE``  a metric outside its physically possible range (``METRIC_INFO``)
``STUCK``         ``stuck_readings`` consecutive identical readings (flatline)
``SPIKE``         a jump of ``spike_k`` x the sensor's typical step that reverts at once
                  (flagged on the reverting reading)
``DRIFT``         long-run deviation from the neighbours beyond ``drift_z`` (from
                  :class:`~models.detectors.spatial.SpatialDetector`)
``DROPOUT``       silent for ``dropout_intervals`` reporting intervals behind the watermark
                  while its gateway is still heard from (when gateways are given)
``DUPLICATE``     a sequence number (or, without ``seq``, time and values) seen before
``OUT_OF_ORDER``  older than a reading already received from the sensor
``LATE``          behind the window watermark (set by the window aggregator's ``late``)
=============  =====================================================================

A sensor's *quality* is the OR of the value-fault flags (out of range, stuck, spike, drift,
dropout) it raised within ``hold_s``; a sensor with any of them is not trusted: the stack
drops its anomaly scores from alerts and risk, and reports the flag instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from config.domains import METRIC_INFO
from models.base import (
    Batch,
    ModelsError,
    PerSensorState,
    Rows,
    all_rows,
    any_rows,
    check_int,
    check_positive,
    contiguous,
    flat_rows,
    occurrence_rounds,
    put_rows,
    take_rows,
)

OUT_OF_RANGE = 1
STUCK = 2
SPIKE = 4
DRIFT = 8
DROPOUT = 16
DUPLICATE = 32
OUT_OF_ORDER = 64
LATE = 128
FLAG_NAMES: dict[int, str] = {
    OUT_OF_RANGE: "out_of_range",
    STUCK: "stuck",
    SPIKE: "spike",
    DRIFT: "drift",
    DROPOUT: "dropout",
    DUPLICATE: "duplicate",
    OUT_OF_ORDER: "out_of_order",
    LATE: "late",
}
VALUE_FAULTS = OUT_OF_RANGE | STUCK | SPIKE | DRIFT | DROPOUT
N_BITS = 8
SEQ_RING = 8
SPIKE_WARMUP = 10


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]


class SensorHealth(PerSensorState):
    """Per-sensor fault checks on readings of one kind; see the module docstring."""

    _state_arrays: ClassVar[tuple[str, ...]] = (
        "last_x",
        "last_ts",
        "max_ts",
        "run",
        "step",
        "nstep",
        "jump",
        "seqs",
        "seq_n",
        "flag_ts",
    )

    def __init__(
        self,
        ids: Any,
        *,
        metrics: tuple[str, ...],
        interval_s: Any = 30.0,
        stuck_readings: int = 6,
        dropout_intervals: float = 5.0,
        spike_k: float = 10.0,
        drift_z: float = 4.0,
        hold_s: float = 600.0,
        skip_stuck: tuple[int, ...] = (),
        gateway: Any = None,
    ) -> None:
        self.metrics = tuple(metrics)
        self.n_metrics = check_int("n_metrics", len(metrics), 1)
        self.stuck_readings = check_int("stuck_readings", stuck_readings, 2)
        self.dropout_intervals = check_positive("dropout_intervals", dropout_intervals)
        self.spike_k = check_positive("spike_k", spike_k)
        self.drift_z = check_positive("drift_z", drift_z)
        self.hold_s = check_positive("hold_s", hold_s)
        self._init_ids(ids)
        n, m = len(self.ids), self.n_metrics
        self.interval_s = np.broadcast_to(np.asarray(interval_s, dtype=np.float64), (n,)).copy()
        self.lo = np.array([METRIC_INFO[k][1] for k in metrics])
        self.hi = np.array([METRIC_INFO[k][2] for k in metrics])
        self._lo_tile = np.empty((0, m))
        self._hi_tile = np.empty((0, m))
        self._stuck_cols = np.ones(m, dtype=bool)
        self._stuck_cols[list(skip_stuck)] = False
        # gateway of each sensor (optional): a dropout is a sensor silent while its gateway
        # is still heard from; a whole gateway falling silent is a link or gateway outage
        # (late delivery, a dead gateway), not a fault of each of its sensors
        self._gw: np.ndarray | None = None
        self._gw_solo = np.ones(n, dtype=bool)
        if gateway is not None:
            gw = np.asarray(gateway)
            if gw.shape != (n,):
                raise ValueError(f"gateway must name one gateway per sensor ({n}), got {gw.shape}")
            _, code, size = np.unique(gw, return_inverse=True, return_counts=True)
            self._gw = code.astype(np.int64)
            self._gw_solo = size[code] == 1
        self.last_x = np.full((n, m), np.nan)
        self.last_ts = np.full(n, np.nan)
        self.max_ts = np.full(n, np.nan)
        self.run = np.zeros(n, dtype=np.int64)
        self.step = np.zeros((n, m))  # typical |step| between readings
        self.nstep = np.zeros(n, dtype=np.int64)  # steps learned (spike check after SPIKE_WARMUP)
        self.jump = np.zeros((n, m))  # the last reading's jump when it was spike-sized, else 0
        self.seqs = np.full((n, SEQ_RING), -1, dtype=np.int64)
        self.seq_n = np.zeros(n, dtype=np.int64)
        self.flag_ts = np.full((n, N_BITS), np.nan)  # last event time each flag fired

    def params(self) -> dict[str, Any]:
        return {
            "metrics": list(self.metrics),
            "stuck_readings": self.stuck_readings,
            "dropout_intervals": self.dropout_intervals,
            "spike_k": self.spike_k,
            "drift_z": self.drift_z,
            "hold_s": self.hold_s,
        }

    def update(self, batch: Batch, *, drift: np.ndarray | None = None) -> np.ndarray:
        """Flags per reading (``uint16``). ``drift``: the spatial detector's per-sensor drift
        (local index x metric), checked for the batch's sensors."""
        if batch.values.shape[1] != self.n_metrics:
            raise ModelsError(f"SensorHealth: expected {self.n_metrics} metrics")
        x_all = batch.values
        nr = x_all.shape[0]
        if self._lo_tile.shape[0] < nr:  # (rows, m) blocks: a (m,) row broadcast is slow
            self._lo_tile = np.tile(self.lo, (max(nr, len(self.ids)), 1))
            self._hi_tile = np.tile(self.hi, (max(nr, len(self.ids)), 1))
        oor = any_rows((x_all < self._lo_tile[:nr]) | (x_all > self._hi_tile[:nr]))
        flags = oor.astype(np.uint16) * np.uint16(OUT_OF_RANGE)
        if drift is not None:
            drifting = any_rows(np.abs(drift) >= self.drift_z)  # per sensor; NaN compares False
            if drifting.any():
                flags[drifting[batch.sensor]] |= DRIFT
        for r in occurrence_rounds(batch.sensor):
            flags[r] |= self._round(batch, r)
        # remember when each flag fired, per sensor (the quality flag)
        if not flags.any():
            return flags
        for b in range(N_BITS):
            hit = (flags & (1 << b)) != 0
            if hit.any():
                np.fmax.at(self.flag_ts[:, b], batch.sensor[hit], batch.ts[hit])
        return flags

    def _round(self, batch: Batch, r: Rows) -> np.ndarray:
        s = batch.sensor[r]
        t = batch.ts[r]
        x = batch.values[r]
        m = self.n_metrics
        sl = contiguous(s)  # a round over a range of sensors: slices instead of gathers
        ix: Rows = s if sl is None else sl
        fs = flat_rows(s, m) if sl is None else slice(sl.start * m, sl.stop * m)
        out = np.zeros(s.shape[0], dtype=np.uint16)
        prev = take_rows(self.last_x, s, sl)
        last_ts = take_rows(self.last_ts, s, sl)
        max_ts = take_rows(self.max_ts, s, sl)
        # duplicate / out of order
        if batch.seq is not None:
            q = batch.seq[r]
            dup = any_rows(take_rows(self.seqs, s, sl) == q[:, None])
        else:
            dup = t == last_ts
            if dup.any():
                dup &= all_rows((x == prev) | (np.isnan(x) & np.isnan(prev)))
        ooo = (t < max_ts) & ~dup
        any_dup = bool(dup.any())
        if any_dup:
            out[dup] |= DUPLICATE
        if ooo.any():
            out[ooo] |= OUT_OF_ORDER
        fresh = ~dup
        # stuck: identical to the previous reading on every judged metric
        cols = self._stuck_cols
        if cols.all():
            same = all_rows(x == prev)
        else:
            same = all_rows(x[:, cols] == prev[:, cols]) & ~any_rows(np.isnan(x[:, cols]))
        run = (take_rows(self.run, s, sl) + 1) * same
        stuck = fresh & (run >= self.stuck_readings - 1)
        if stuck.any():
            out[stuck] |= STUCK
        # spike: a big jump that reverts (opposite sign, similar size) right after another
        d = x - prev
        absd = np.abs(d)
        typical = take_rows(self.step, s, sl)
        big = absd > self.spike_k * (typical + 1e-9) + 1e-9
        nstep = take_rows(self.nstep, s, sl)
        warm = (typical > 0) & (nstep >= SPIKE_WARMUP)[:, None]
        bw = big & warm
        prev_jump = take_rows(self.jump, s, sl)
        any_bw = bool(bw.any())
        if any_bw:
            reverts = (
                bw
                & (prev_jump != 0)
                & (np.sign(d) == -np.sign(prev_jump))
                & (absd > 0.5 * np.abs(prev_jump))
            )
            out[fresh & any_rows(reverts)] |= SPIKE
            new_jump = np.where(bw & ~reverts, d, 0.0)
        else:
            new_jump = np.zeros_like(d)
        nan_d = np.isnan(absd)
        any_nan = bool(nan_d.any())
        ok = fresh & ~all_rows(nan_d) if any_nan else fresh
        # learn the typical step from ordinary steps only
        if any_nan:
            absd[nan_d] = 0.0
        a = 0.05
        upd = typical + a * (absd - typical)
        if any_bw:
            upd = np.where(bw, typical, upd)
        zero = typical == 0
        if zero.any():
            upd = np.where(zero, absd, upd)
        all_ok = bool(ok.all())
        if all_ok:
            put_rows(self.step, fs, upd)
            put_rows(self.jump, fs, new_jump)
        else:
            okc = ok[:, None]
            put_rows(self.step, fs, np.where(okc, upd, typical))
            put_rows(self.jump, fs, np.where(okc, new_jump, prev_jump))
        self.nstep[ix] = nstep + ok
        if any_dup:
            self.run[ix] = np.where(fresh, run, take_rows(self.run, s, sl))
            put_rows(self.last_x, fs, np.where(fresh[:, None], x, prev))
            self.last_ts[ix] = np.where(fresh, t, last_ts)
        else:
            self.run[ix] = run
            put_rows(self.last_x, fs, x)
            self.last_ts[ix] = t
        self.max_ts[ix] = np.fmax(max_ts, t)
        if batch.seq is not None:
            q = batch.seq[r]
            seq_n = take_rows(self.seq_n, s, sl)
            pos = s * SEQ_RING + seq_n % SEQ_RING
            if any_dup:
                self.seqs.reshape(-1)[pos[fresh]] = q[fresh]
            else:
                self.seqs.reshape(-1)[pos] = q
            self.seq_n[ix] = seq_n + fresh
        return out

    def dropouts(self, watermark: float) -> np.ndarray:
        """Per sensor: silent for ``dropout_intervals`` intervals behind ``watermark`` (bool),
        while another sensor of its gateway (when gateways are known) was heard within that
        time. Sensors never heard from are not reported (they may belong to another worker)."""
        limit = self.dropout_intervals * self.interval_s
        silent = watermark - self.max_ts > limit
        hit = silent & ~np.isnan(self.max_ts)
        if self._gw is not None and hit.any():
            heard = np.full(int(self._gw.max()) + 1, -np.inf)
            np.fmax.at(heard, self._gw, np.where(np.isnan(self.max_ts), -np.inf, self.max_ts))
            alive = watermark - heard[self._gw] <= limit
            hit &= alive | self._gw_solo
        b = DROPOUT.bit_length() - 1
        self.flag_ts[hit, b] = np.fmax(self.flag_ts[hit, b], watermark)
        return hit

    def quality(self, now: float) -> np.ndarray:
        """Per sensor: OR of the flags raised within ``hold_s`` before ``now`` (uint16)."""
        recent = self.flag_ts >= now - self.hold_s
        out = np.zeros(recent.shape[0], dtype=np.uint16)
        if not recent.any():
            return out
        for b in range(N_BITS):  # column by column: a sum over the short axis is slow
            out |= recent[:, b].astype(np.uint16) << np.uint16(b)
        return out
