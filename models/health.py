"""Sensor health: per-reading fault flags and a per-sensor quality flag.

Flags (bits of a ``uint16``):

=============  =====================================================================
``OUT_OF_RANGE``  a metric outside its physically possible range (``METRIC_INFO``)
``STUCK``         ``stuck_readings`` consecutive identical readings (flatline)
``SPIKE``         a jump of ``spike_k`` x the sensor's typical step that reverts at once
                  (flagged on the reverting reading)
``DRIFT``         a slow, persistent departure from what the sensor's neighbours or its own
                  physics say it should read (see *Drift* below)
``DROPOUT``       silent for ``dropout_intervals`` reporting intervals behind the watermark
                  while its gateway is still heard from (when gateways are given)
``DUPLICATE``     a sequence number (or, without ``seq``, time and values) seen before
``OUT_OF_ORDER``  older than a reading already received from the sensor
``LATE``          behind the window watermark (set by the window aggregator's ``late``)
=============  =====================================================================

Drift
-----
A drifting sensor (a growing calibration bias) creeps away from a relation that otherwise holds
all day. Every ``drift_window_s`` (5 min) of event time each sensor's window means are compared
with a reference that moves with the time of day as the sensor does:

* loop detectors (flow, speed, occupancy): the fundamental diagram. Flow = density x speed and
  occupancy is proportional to density, so ``log(sum flow / sum occupancy x speed)`` is a
  per-sensor constant (lanes over effective vehicle length and the calibrations); a drift of any
  of the three metrics moves it. Windows below ``DRIFT_MIN_FLOW`` veh/h (night) are too noisy
  and are skipped;
* every other kind: the median of the same window over the other sensors of its gateway (a
  junction, an air station's cluster, a DMA, a substation), in log units (``log(x + 1 % of the
  metric's range)``; temperatures in tens of degrees); the sensor follows it through a learned
  affine relation for pressure (node pressure = static head - head loss, affine in the DMA's) and
  a learned offset (a ratio) otherwise. Wind direction and rain are not judged.

The residual's slow average (``drift_halflife_s``) is compared with its learned baseline (a
slow mean, ``drift_baseline_s``, frozen while the sensor is suspect, so a drift is not learned
away). DRIFT is raised when the deviation exceeds ``max(drift_rel, drift_z x sigma)`` (sigma: the
slow average's noise, learned from the window residuals) for ``drift_persist`` windows in a row,
and it *rose slowly*: at least ``drift_rise`` windows passed between half that level and the
level. A step change (a burst, a crash queue, a recalibration) reaches it within a few windows
and is an incident for the detectors, not a drift. The flag holds while the deviation stays
above the level. A sensor must have ``DRIFT_WARM`` windows of baseline before it is judged. When a
drifting sensor snaps back (reset, recalibrated), the flag decays with the slow average (about
an hour): the seasonal and spatial baselines had followed the drift and score the snap-back as
an anomaly for about as long, and the flag keeps that artefact out of the alerts.

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
SPIKE_WARMUP = 10  # steps learned before the spike check (a running mean until 1/a steps)
#: metrics never judged for drift (circular or intermittent: no level to drift from)
DRIFT_SKIP = frozenset({"wind_dir_deg", "rain_mmh"})
#: metrics whose sensors follow their gateway's median through an affine relation
DRIFT_AFFINE = frozenset({"pressure_bar"})
DRIFT_MIN_FLOW = 150.0  # veh/h: loop windows below this are too noisy for the flow/occupancy check
DRIFT_WARM = 36  # windows of baseline (3 h at 5 min) before a sensor is judged
SIGMA_PER_MAD = 0.3  # noise of the slow average per mean |window residual| (30 min over 5 min)
FD_METRICS = ("flow_vph", "speed_kmh", "occupancy_pct")
#: longest quality hold after a long fault (see :meth:`SensorHealth.quality`)
HOLD_MAX_S = 3600.0


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
        "flag_t0",
        "_prev_oor",
        "d_sum",
        "d_cnt",
        "d_win",
        "d_mean",
        "d_mwin",
        "d_e",
        "d_mx",
        "d_my",
        "d_cxx",
        "d_cxy",
        "d_n",
        "d_mad",
        "d_run",
        "d_half",
        "d_up",
        "d_on",
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
        drift_rel: float = 0.1,
        drift_window_s: float = 300.0,
        drift_halflife_s: float = 1800.0,
        drift_baseline_s: float = 21600.0,
        drift_persist: int = 6,
        drift_rise: int = 5,
    ) -> None:
        self.metrics = tuple(metrics)
        self.n_metrics = check_int("n_metrics", len(metrics), 1)
        self.stuck_readings = check_int("stuck_readings", stuck_readings, 2)
        self.dropout_intervals = check_positive("dropout_intervals", dropout_intervals)
        self.spike_k = check_positive("spike_k", spike_k)
        self.drift_z = check_positive("drift_z", drift_z)
        self.hold_s = check_positive("hold_s", hold_s)
        self.drift_rel = check_positive("drift_rel", drift_rel)
        self.drift_window_s = check_positive("drift_window_s", drift_window_s)
        self.drift_halflife_s = check_positive("drift_halflife_s", drift_halflife_s)
        self.drift_baseline_s = check_positive("drift_baseline_s", drift_baseline_s)
        self.drift_persist = check_int("drift_persist", drift_persist, 1)
        self.drift_rise = check_int("drift_rise", drift_rise, 0)
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
        self.flag_t0 = np.full((n, N_BITS), np.nan)  # ... and when that episode began
        self._prev_oor = np.zeros(n, dtype=bool)  # the last reading was out of range
        # drift: channels (columns) judged per sensor; loops: one, the fundamental diagram
        self._fd = all(k in self.metrics for k in FD_METRICS)
        if self._fd:
            self._fd_cols = tuple(self.metrics.index(k) for k in FD_METRICS)
            chans: list[str] = ["fd"]
        else:
            chans = [k for k in self.metrics if k not in DRIFT_SKIP]
        self._chans = tuple(chans)
        self._chan_cols = [self.metrics.index(k) for k in chans] if not self._fd else []
        c = max(len(chans), 1)
        nsum = 2 if self._fd else c
        self._affine = np.array([k in DRIFT_AFFINE for k in chans] or [False])
        lo_c = np.array([METRIC_INFO[k][1] for k in chans]) if not self._fd else np.zeros(1)
        hi_c = np.array([METRIC_INFO[k][2] for k in chans]) if not self._fd else np.ones(1)
        self._log = lo_c >= 0
        self._shift = 0.01 * (hi_c - lo_c)
        self.d_sum = np.zeros((n, nsum))  # sums of the open window (loops: flow, occ x speed)
        self.d_cnt = np.zeros(n, dtype=np.int64)
        self.d_win = np.full(n, -1, dtype=np.int64)  # index of the open window
        self.d_mean = np.full((n, c), np.nan)  # transformed means of the last closed window
        self.d_mwin = np.full(n, -1, dtype=np.int64)  # ... and its index
        self.d_e = np.full((n, c), np.nan)  # slow average of the residual
        self.d_mx = np.full((n, c), np.nan)  # baseline: means of reference and sensor
        self.d_my = np.full((n, c), np.nan)
        self.d_cxx = np.zeros((n, c))  # ... and (co)variances for the affine relation
        self.d_cxy = np.zeros((n, c))
        self.d_n = np.zeros((n, c))  # windows learned
        self.d_mad = np.zeros((n, c))  # mean |window residual|
        self.d_run = np.zeros((n, c), dtype=np.int64)  # windows in a row above the level
        self.d_half = np.full((n, c), np.nan)  # window when half the level was passed
        self.d_up = np.full((n, c), np.nan)  # window when the level was passed
        self.d_on = np.zeros(n, dtype=bool)  # drifting now
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._wins = np.zeros(0, dtype=np.int64)  # drift window of each reading of the batch

    def params(self) -> dict[str, Any]:
        return {
            "metrics": list(self.metrics),
            "stuck_readings": self.stuck_readings,
            "dropout_intervals": self.dropout_intervals,
            "spike_k": self.spike_k,
            "drift_z": self.drift_z,
            "hold_s": self.hold_s,
            "drift_rel": self.drift_rel,
            "drift_window_s": self.drift_window_s,
            "drift_halflife_s": self.drift_halflife_s,
            "drift_baseline_s": self.drift_baseline_s,
            "drift_persist": self.drift_persist,
            "drift_rise": self.drift_rise,
        }

    def update(self, batch: Batch) -> np.ndarray:
        """Flags per reading (``uint16``); drift is judged on the sensor's own relations, not
        on the spatial detector's drift: see *Drift* in the module docstring."""
        if batch.values.shape[1] != self.n_metrics:
            raise ModelsError(f"SensorHealth: expected {self.n_metrics} metrics")
        x_all = batch.values
        nr = x_all.shape[0]
        if self._lo_tile.shape[0] < nr:  # (rows, m) blocks: a (m,) row broadcast is slow
            self._lo_tile = np.tile(self.lo, (max(nr, len(self.ids)), 1))
            self._hi_tile = np.tile(self.hi, (max(nr, len(self.ids)), 1))
        oor = any_rows((x_all < self._lo_tile[:nr]) | (x_all > self._hi_tile[:nr]))
        flags = oor.astype(np.uint16) * np.uint16(OUT_OF_RANGE)
        closed: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending = closed
        self._wins = np.floor(batch.ts * (1.0 / self.drift_window_s)).astype(np.int64)
        for r in occurrence_rounds(batch.sensor):
            flags[r] |= self._round(batch, r, oor)
            self._drift_round(batch, r, flags, closed)
        if closed:
            self._drift_judge(closed)
        if self.d_on.any():
            flags[self.d_on[batch.sensor]] |= DRIFT
        # remember when each flag fired, per sensor (the quality flag)
        if not flags.any():
            return flags
        for b in range(N_BITS):
            hit = (flags & (1 << b)) != 0
            if hit.any():
                self._mark(b, batch.sensor[hit], batch.ts[hit])
        return flags

    def _mark(self, b: int, s: np.ndarray, t: np.ndarray) -> None:
        """Flag ``b`` fired on sensors ``s`` at ``t``: last time, and the start of the episode
        (a new one after a quiet ``hold_s``)."""
        last = self.flag_ts[s, b]
        with np.errstate(invalid="ignore"):
            new = np.isnan(last) | (t - last > self.hold_s)
        if new.any():
            first = np.full(len(self.ids), np.inf)
            np.fmin.at(first, s[new], t[new])
            upd = first < np.inf
            self.flag_t0[upd, b] = first[upd]
        np.fmax.at(self.flag_ts[:, b], s, t)

    def _drift_round(
        self,
        batch: Batch,
        r: Rows,
        flags: np.ndarray,
        closed: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> None:
        """Fold one occurrence round into the sensors' drift windows; a reading in a later
        window closes the open one (its transformed means go to ``closed``)."""
        s = batch.sensor[r]
        x = batch.values[r]
        sl = contiguous(s)  # a round over a range of sensors: slices instead of gathers
        ix: Rows = s if sl is None else sl
        w = self._wins[r]
        cur = take_rows(self.d_win, s, sl)
        new = w > cur
        if new.any():
            self._drift_close(s[new], cur[new])
            cur = np.where(new, w, cur)
            self.d_win[ix] = cur
        # readings that count: the current window, no fault of their own, every value known
        if self._fd:
            c0, c1, c2 = self._fd_cols
            cols = [x[:, c0], x[:, c1] * x[:, c2]]
        elif self._chan_cols:
            cols = [x[:, c] for c in self._chan_cols]
        else:
            return
        tot = cols[0] if len(cols) == 1 else sum(cols[1:], cols[0])
        use = w == cur
        if np.isnan(tot).any():
            use &= ~np.isnan(tot)
        fr = flags[r]
        if fr.any():
            use &= (fr & (OUT_OF_RANGE | STUCK | SPIKE | DUPLICATE | OUT_OF_ORDER)) == 0
        if sl is not None and use.all():
            for j, c in enumerate(cols):
                self.d_sum[sl, j] += c
            self.d_cnt[sl] += 1
        elif use.any():
            su = s[use]
            for j, c in enumerate(cols):
                self.d_sum[su, j] += c[use]
            self.d_cnt[su] += 1

    def _drift_close(self, sn: np.ndarray, win: np.ndarray) -> None:
        """Close the open windows of sensors ``sn`` (indices ``win``): their transformed means
        are judged at the end of the batch."""
        cnt = self.d_cnt[sn]
        full = cnt > 0
        if full.any():
            sc = sn[full]
            sums = self.d_sum[sc]
            k = cnt[full].astype(np.float64)
            if self._fd:
                f, g = sums[:, 0], sums[:, 1]
                with np.errstate(divide="ignore", invalid="ignore"):
                    v = np.log((f + 1.0) / (g + 1.0))
                v = np.where((f / k >= DRIFT_MIN_FLOW) & (g >= 0), v, np.nan)[:, None]
            else:
                mean = sums / k[:, None]
                with np.errstate(divide="ignore", invalid="ignore"):
                    v = np.where(self._log, np.log(mean + self._shift), mean / 10.0)
            self._pending.append((sc, win[full], v))
        self.d_sum[sn] = 0.0
        self.d_cnt[sn] = 0

    def _drift_judge(self, closed: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Judge closed windows: residual against the reference, slow average, baseline,
        level crossing (see the module docstring)."""
        sens = np.concatenate([c[0] for c in closed])
        wins = np.concatenate([c[1] for c in closed])
        vals = np.concatenate([c[2] for c in closed])
        for w in np.unique(wins).tolist():
            sel = wins == w
            s = sens[sel]
            self.d_mean[s] = vals[sel]
            self.d_mwin[s] = w
            ref = np.zeros_like(vals[sel]) if self._fd else self._gateway_median(s, w)
            self._drift_step(s, vals[sel], ref, w)

    def _gateway_median(self, s: np.ndarray, w: int) -> np.ndarray:
        """Per sensor of ``s`` and channel: the median of window ``w``'s means over its
        gateway (the sensors whose last closed window is ``w``); NaN with fewer than 3."""
        out = np.full((len(s), self.d_mean.shape[1]), np.nan)
        if self._gw is None:
            return out
        members = np.flatnonzero(self.d_mwin == w)
        gw_m = self._gw[members]
        gw_s = self._gw[s]
        for c in range(self.d_mean.shape[1]):
            v = self.d_mean[members, c]
            ok = ~np.isnan(v)
            g, vv = gw_m[ok], v[ok]
            if g.size == 0:
                continue
            order = np.lexsort((vv, g))
            g, vv = g[order], vv[order]
            first = np.searchsorted(g, gw_s, side="left")
            last = np.searchsorted(g, gw_s, side="right")
            k = last - first
            lo_i = np.minimum(first + (k - 1) // 2, len(vv) - 1)
            hi_i = np.minimum(first + k // 2, len(vv) - 1)
            med = 0.5 * (vv[lo_i] + vv[hi_i])
            out[:, c] = np.where(k >= 3, med, np.nan)
        return out

    def _drift_step(self, s: np.ndarray, y: np.ndarray, x: np.ndarray, w: int) -> None:
        a = 1.0 - 0.5 ** (self.drift_window_s / self.drift_halflife_s)
        eta_min = self.drift_window_s / self.drift_baseline_s
        ok = ~np.isnan(y) & ~np.isnan(x)
        mx, my = self.d_mx[s], self.d_my[s]
        cxx, cxy = self.d_cxx[s], self.d_cxy[s]
        lam = 1e-4
        beta = np.where(self._affine, (cxy + lam) / (cxx + lam), 1.0)
        r = y - (my + beta * (x - mx))
        okr = ok & ~np.isnan(r)
        e = self.d_e[s]
        e = np.where(okr, np.where(np.isnan(e), r, e + a * (r - e)), e)
        n = self.d_n[s]
        mad = self.d_mad[s]
        lim = np.maximum(self.drift_rel, self.drift_z * SIGMA_PER_MAD * mad)
        judged = n >= DRIFT_WARM
        d = np.where(judged, e, np.nan)
        with np.errstate(invalid="ignore"):
            over = np.abs(d) > lim
            half = np.abs(d) > 0.5 * lim
        learn = ok & ~half
        eta = np.maximum(eta_min, 1.0 / (n + 1.0))
        first = learn & np.isnan(mx)
        mx0 = np.where(first, x, mx)
        my0 = np.where(first, y, my)
        dx, dy = x - mx0, y - my0
        self.d_mx[s] = np.where(learn, mx0 + eta * dx, mx)
        self.d_my[s] = np.where(learn, my0 + eta * dy, my)
        self.d_cxx[s] = np.where(learn, (1.0 - eta) * (cxx + eta * dx * dx), cxx)
        self.d_cxy[s] = np.where(learn, (1.0 - eta) * (cxy + eta * dx * dy), cxy)
        lm = learn & okr & ~first
        self.d_mad[s] = np.where(lm, mad + eta * (np.abs(r) - mad), mad)
        self.d_n[s] = n + learn
        self.d_e[s] = e
        hw = self.d_half[s]
        hw = np.where(half, np.where(np.isnan(hw), float(w), hw), np.where(okr, np.nan, hw))
        run = self.d_run[s]
        run = np.where(over, run + 1, np.where(okr, 0, run))
        up = np.where(over & (run == 1), float(w), self.d_up[s])
        slow = (up - hw) >= self.drift_rise
        self.d_half[s] = hw
        self.d_up[s] = up
        self.d_run[s] = run
        self.d_on[s] = any_rows((run >= self.drift_persist) & slow)

    def _round(self, batch: Batch, r: Rows, oor: np.ndarray) -> np.ndarray:
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
        # out of order: older than a reading already received, by at most dropout_intervals
        # intervals; a reading further behind is a late delivery (a late gateway's backlog
        # arriving after its on-time frames), which the window watermark reports as LATE
        behind = max_ts - t
        ooo = (behind > 0) & (behind <= self.dropout_intervals * self.interval_s[s]) & ~dup
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
        # spike: a big jump that reverts (opposite sign, similar size) right after another;
        # judged on level-like metrics only (not rain, wind direction: skip_stuck), and not on
        # out-of-range values (their own flag) nor the step back from one
        d = x - prev
        if not cols.all():
            d[:, ~cols] = np.nan
        oor_r = oor[r]
        if oor_r.any() or self._prev_oor[ix].any():
            d[oor_r | self._prev_oor[ix]] = np.nan
        self._prev_oor[ix] = np.where(fresh, oor_r, self._prev_oor[ix])
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
        # learn the typical step; a big step counts as spike_k x typical (one spike barely
        # moves it, a lasting change of regime is learned within some 20 readings), a
        # repeated reading (stuck) or an unknown step not at all: the typical step of a sensor
        # that was stuck must not collapse, or every ordinary step after it looks like a spike
        if any_nan:
            absd[nan_d] = 0.0
        # a running mean for the first 20 steps, then an exponential one (a scalar when the
        # whole round is past that: a (rows, 1) column broadcast is slow)
        a: Any = 0.05 if nstep.min() >= 19 else np.maximum(0.05, 1.0 / (nstep + 1.0))[:, None]
        lim = self.spike_k * typical
        upd = typical + a * (np.where(big, np.minimum(absd, lim), absd) - typical)
        zero = typical == 0
        if zero.any():
            upd = np.where(zero, absd, upd)
        keep = same[:, None] | nan_d if any_nan else same[:, None]
        if keep.any():
            upd = np.where(keep, typical, upd)
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
        if hit.any():
            idx = np.flatnonzero(hit)
            self._mark(b, idx, np.full(idx.shape[0], float(watermark)))
        return hit

    def quality(self, now: float) -> np.ndarray:
        """Per sensor: OR of the flags raised within the hold before ``now`` (uint16). The
        hold is ``hold_s``, or as long as the fault's episode lasted, up to ``HOLD_MAX_S``: the
        detectors' short-term levels followed a sensor that was stuck or drifting for an hour,
        and score its return to normal as an anomaly for about as long (the false alarms of
        ``bad_day`` seed 2 and ``sensor_fault_storm`` seed 1 opened 670 s after the end of a
        1-hour stuck period: 600 s of hold, then 60 s above the threshold)."""
        dur = np.clip(self.flag_ts - self.flag_t0, 0.0, HOLD_MAX_S)
        hold = np.where(np.isnan(dur), self.hold_s, np.maximum(dur, self.hold_s))
        recent = self.flag_ts >= now - hold
        out = np.zeros(recent.shape[0], dtype=np.uint16)
        if not recent.any():
            return out
        for b in range(N_BITS):  # column by column: a sum over the short axis is slow
            out |= recent[:, b].astype(np.uint16) << np.uint16(b)
        return out
