"""Seasonal robust baseline: a time-of-day/week profile of median and MAD per sensor and
metric, learned online, with a residual score.

For every reading the detector

1. picks the profile slot of its local time (``slots_per_day`` per day, weekday and weekend
   apart when ``weekly``);
2. takes the slot's median and MAD as the baseline once the slot has ``min_count``
   observations, and until then a short-term robust level (a Holt level+trend with clipped
   updates, half-life ``level_halflife_s``), so it is useful from the first hour; with
   ``interpolate``, the median and MAD are interpolated linearly between the centres of the
   slot and of its nearer neighbour (the slot before or after, weekday or weekend as that
   time falls) when both are trusted: a slot learns the median of its whole hour, so a
   steep daily ramp (traffic falling by half between 23:00 and 24:00) would otherwise put
   the first minutes of every slot in the tail of the slot's own distribution;
3. computes ``z = (x - baseline) / (1.4826 MAD + floor)``, smooths it in event time
   (half-life ``smooth_halflife_s``) so a persistent shift outweighs a single noisy reading,
   standardises the smoothed value and calibrates it to [0, 1]
   (:mod:`models.detectors.calibration`);
4. then learns: stochastic-approximation median and MAD of the slot (step
   ``max(learning_rate, 1/(n+1))`` times the scale, so the estimates converge to the median
   and the median absolute deviation) and the short-term level.

Scoring a reading uses only the readings before it, in order; batches are processed in
:func:`~models.base.occurrence_rounds`, so scores do not depend on batch boundaries.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from config.domains import METRIC_INFO
from models.base import (
    Batch,
    DetectorResult,
    ModelsError,
    PerSensorState,
    any_rows,
    check_int,
    check_positive,
    check_range,
    contiguous,
    expand_cols,
    flat_rows,
    occurrence_rounds,
    put_rows,
    select,
    take_rows,
)
from models.detectors.calibration import combine_calibrate, smooth_weight

Z_CLIP = 50.0
LEVEL_CLIP = 3.0
MAD_TO_SIGMA = 1.4826
MEANDEV_TO_SIGMA = 1.2533


def metric_floors(metrics: tuple[str, ...] | list[str] | None, n_metrics: int) -> np.ndarray:
    """Absolute scale floor per metric: 1e-4 of its physical range (quantisation guard)."""
    if metrics is None:
        return np.full(n_metrics, 1e-9)
    return np.array([1e-4 * (METRIC_INFO[m][2] - METRIC_INFO[m][1]) for m in metrics])


def local_slot(
    ts: np.ndarray, *, slots_per_day: int, weekly: bool, utc_offset_h: float
) -> np.ndarray:
    local = ts + utc_offset_h * 3600.0
    day = np.floor(local / 86400.0)
    slot = np.floor((local - day * 86400.0) * (slots_per_day / 86400.0)).astype(np.int64)
    slot = np.minimum(slot, slots_per_day - 1)
    if weekly:
        weekday = np.mod(day.astype(np.int64) + 3, 7)  # 1970-01-01 was a Thursday; Monday = 0
        slot = slot + slots_per_day * (weekday >= 5)
    return slot


class SeasonalDetector(PerSensorState):
    """See the module docstring.

    >>> det = SeasonalDetector(["S1"], n_metrics=1, min_count=5)
    >>> ts = np.arange(200) * 30.0
    >>> x = 10.0 + np.sin(np.arange(200)); x[150] = 40.0
    >>> r = det.update(Batch.of(np.zeros(200), ts, x))
    >>> bool(r.score[150] > 0.9), bool(np.nanmax(r.score[60:149]) < 0.9)
    (True, True)
    """

    _state_arrays: ClassVar[tuple[str, ...]] = (
        "med",
        "mad",
        "cnt",
        "lvl",
        "slope",
        "dev",
        "lcnt",
        "zs",
        "last_ts",
    )

    @classmethod
    def from_params(
        cls, ids: Any, params: Any, *, n_metrics: int, metrics: tuple[str, ...] | None = None,
        skip: tuple[int, ...] = (),
    ) -> SeasonalDetector:
        """The detector as configured (``params``: :class:`models.params.ModelParams`): the one
        place that maps the ``seasonal`` and ``time`` settings to it, used by the model stack
        and by ``citybrain score``, so the two cannot drift apart."""
        sp = params.seasonal
        return cls(
            ids, n_metrics=n_metrics, metrics=metrics, slots_per_day=sp.slots_per_day,
            weekly=sp.weekly, min_count=sp.min_count, learning_rate=sp.learning_rate,
            level_halflife_s=sp.level_halflife_s, smooth_halflife_s=sp.smooth_halflife_s,
            scale_floor=sp.scale_floor, utc_offset_h=params.time.utc_offset_h,
            calibration_scale=sp.calibration_scale, skip=skip, interpolate=sp.interpolate,
        )

    def __init__(
        self,
        ids: Any,
        *,
        n_metrics: int,
        metrics: tuple[str, ...] | None = None,
        slots_per_day: int = 24,
        weekly: bool = True,
        min_count: int = 40,
        learning_rate: float = 0.02,
        level_halflife_s: float = 1800.0,
        smooth_halflife_s: float = 45.0,
        scale_floor: float = 0.02,
        utc_offset_h: float = 0.0,
        calibration_scale: float = 1.0,
        skip: tuple[int, ...] = (),
        interpolate: bool = False,
    ) -> None:
        self.n_metrics = check_int("n_metrics", n_metrics, 1)
        if metrics is not None and len(metrics) != n_metrics:
            raise ValueError(f"metrics must name {n_metrics} metrics, got {metrics!r}")
        self.metrics = tuple(metrics) if metrics is not None else None
        self.slots_per_day = check_int("slots_per_day", slots_per_day, 1)
        self.weekly = bool(weekly)
        self.min_count = check_int("min_count", min_count, 1)
        self.learning_rate = check_range("learning_rate", learning_rate, 0, 1, lo_open=True)
        self.level_halflife_s = check_positive("level_halflife_s", level_halflife_s)
        self.smooth_halflife_s = check_range(
            "smooth_halflife_s", smooth_halflife_s, 0, math.inf, hi_open=True
        )
        self.scale_floor = check_range("scale_floor", scale_floor, 0, 1)
        self.utc_offset_h = check_range("utc_offset_h", utc_offset_h, -14, 14)
        self.calibration_scale = check_positive("calibration_scale", calibration_scale)
        for j in skip:
            if not 0 <= j < n_metrics:
                raise ValueError(f"skip must hold metric columns in [0, {n_metrics}), got {skip!r}")
        self.skip = tuple(sorted(set(skip)))
        self.interpolate = bool(interpolate)
        self._init_ids(ids)
        n, m = len(self.ids), self.n_metrics
        n_slots = self.slots_per_day * (2 if self.weekly else 1)
        # (sensor, slot) state is stored slot-major, ``(n_slots, n, m)``, and exposed as the
        # ``(n, n_slots, m)`` views ``med``/``mad``/``cnt`` (per-sensor snapshots index those):
        # a round of a range of sensors in one slot then reads and writes one contiguous
        # block instead of one element per cache line
        self._med_t = np.full((n_slots, n, m), np.nan)
        self._mad_t = np.zeros((n_slots, n, m))
        self._cnt_t = np.zeros((n_slots, n, m), dtype=np.int64)
        self.med = self._med_t.transpose(1, 0, 2)
        self.mad = self._mad_t.transpose(1, 0, 2)
        self.cnt = self._cnt_t.transpose(1, 0, 2)
        self.lvl = np.full((n, m), np.nan)
        self.slope = np.zeros((n, m))
        self.dev = np.zeros((n, m))
        self.lcnt = np.zeros((n, m), dtype=np.int64)
        self.zs = np.full((n, m), np.nan)
        self.last_ts = np.full(n, np.nan)
        self._floor = metric_floors(self.metrics, m)
        self._active = np.ones(m, dtype=bool)
        self._active[list(self.skip)] = False

    def params(self) -> dict[str, Any]:
        return {
            "n_metrics": self.n_metrics,
            "slots_per_day": self.slots_per_day,
            "weekly": self.weekly,
            "min_count": self.min_count,
            "learning_rate": self.learning_rate,
            "level_halflife_s": self.level_halflife_s,
            "smooth_halflife_s": self.smooth_halflife_s,
            "scale_floor": self.scale_floor,
            "utc_offset_h": self.utc_offset_h,
            "calibration_scale": self.calibration_scale,
            "skip": list(self.skip),
            "interpolate": self.interpolate,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """As :meth:`PerSensorState.restore`; ``interpolate`` changes scoring only (the learned
        state is the same either way), so a snapshot taken with the other setting, or before
        the setting existed, restores warm."""
        p = snap.get("params")
        if isinstance(p, dict) and p.get("interpolate") != self.interpolate:
            snap = {**snap, "params": {**p, "interpolate": self.interpolate}}
        super().restore(snap)

    def neighbour_slot(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, weight) of the neighbour slot whose centre is nearer than the own slot's
        other neighbour: the slot before in the first half of a slot, the slot after in the
        second (weekday or weekend as that time falls), and its weight in the linear
        interpolation between the two centres, in [0, 0.5]."""
        length = 86400.0 / self.slots_per_day
        local = ts + self.utc_offset_h * 3600.0
        pos = (local - np.floor(local / 86400.0) * 86400.0) / length
        frac = pos - np.floor(pos)
        after = frac >= 0.5
        other = local_slot(
            ts + np.where(after, length, -length),
            slots_per_day=self.slots_per_day,
            weekly=self.weekly,
            utc_offset_h=self.utc_offset_h,
        )
        return other, np.where(after, frac - 0.5, 0.5 - frac)

    def baseline(self, sensor: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The current expected value and sigma for sensors at times (no learning)."""
        slot = local_slot(
            ts, slots_per_day=self.slots_per_day, weekly=self.weekly, utc_offset_h=self.utc_offset_h
        )
        med = self.med[sensor, slot]
        mad = self.mad[sensor, slot]
        warm = self.cnt[sensor, slot] >= self.min_count
        if self.interpolate:
            other, w = self.neighbour_slot(ts)
            use = warm & (self.cnt[sensor, other] >= self.min_count)
            wc = np.where(use, w[:, None], 0.0)
            med = np.where(use, med + wc * (self.med[sensor, other] - med), med)
            mad = np.where(use, mad + wc * (self.mad[sensor, other] - mad), mad)
        base = np.where(warm, med, self.lvl[sensor])
        sig = np.where(warm, MAD_TO_SIGMA * mad, MEANDEV_TO_SIGMA * self.dev[sensor])
        return base, sig + self.scale_floor * np.abs(base) + self._floor

    def update(self, batch: Batch) -> DetectorResult:
        if batch.values.shape[1] != self.n_metrics:
            raise ModelsError(
                f"{type(self).__name__}: batch has {batch.values.shape[1]} metrics, "
                f"expected {self.n_metrics}"
            )
        n = len(batch)
        scores = np.full((n, self.n_metrics), np.nan)
        slots = local_slot(
            batch.ts,
            slots_per_day=self.slots_per_day,
            weekly=self.weekly,
            utc_offset_h=self.utc_offset_h,
        )
        if self.interpolate:
            other, w = self.neighbour_slot(batch.ts)
            for r in occurrence_rounds(batch.sensor):
                scores[r] = self._round(
                    batch.sensor[r], batch.ts[r], batch.values[r], slots[r], other[r], w[r]
                )
        else:
            for r in occurrence_rounds(batch.sensor):
                scores[r] = self._round(batch.sensor[r], batch.ts[r], batch.values[r], slots[r])
        score, metric = combine_calibrate(scores, self.calibration_scale)
        return DetectorResult(score, metric)

    def _round(
        self,
        s: np.ndarray,
        t: np.ndarray,
        x: np.ndarray,
        slot: np.ndarray,
        other: np.ndarray | None = None,
        w_other: np.ndarray | None = None,
    ) -> np.ndarray:
        # one vectorised step for readings of distinct sensors; (sensor, slot) state is read
        # and written through a flat index (much cheaper than 2-D fancy indexing), per-sensor
        # state through slices when the round covers a range of sensors. Masks that are
        # uniform in a stream (all warm, all started, ...) are decided from the min/max of
        # the counters and their passes skipped; sub-expressions shared between scoring and
        # learning are computed once, in the same order of operations (bit-identical).
        m = self.n_metrics
        mc = self.min_count
        sl = contiguous(s)
        fs = flat_rows(s, m) if sl is None else slice(sl.start * m, sl.stop * m)
        # a range of sensors in one profile slot (the usual round): (sensor, slot) state is
        # one contiguous block of the slot-major arrays, read and written without an index
        blk = int(slot[0]) if sl is not None and bool((slot == slot[0]).all()) else None
        if blk is None:
            fi = slot * len(self.ids) + s
            ff = flat_rows(fi, m)
        # the metric floors as a (k, m) block: a (m,) row broadcast over k rows is an order
        # of magnitude slower than an element-wise op on equal shapes
        ft = self.__dict__.get("_floor_tile")
        if ft is None or ft.shape[0] < s.shape[0]:
            ft = self.__dict__["_floor_tile"] = np.tile(self._floor, (len(self.ids), 1))
        floor_abs = ft[: s.shape[0]]
        if blk is not None:
            med = self._med_t[blk, sl].copy()
            mad = self._mad_t[blk, sl].copy()
            cnt = self._cnt_t[blk, sl].copy()
        else:
            med = self._med_t.reshape(-1, m).take(fi, axis=0)
            mad = self._mad_t.reshape(-1, m).take(fi, axis=0)
            cnt = self._cnt_t.reshape(-1, m).take(fi, axis=0)
        lvl = take_rows(self.lvl, s, sl)
        slope = take_rows(self.slope, s, sl)
        dev = take_rows(self.dev, s, sl)
        lcnt = take_rows(self.lcnt, s, sl)
        last = take_rows(self.last_ts, s, sl)
        first_seen = np.isnan(last)
        any_first = bool(first_seen.any())
        dt = np.where(first_seen, 0.0, t - last) if any_first else t - last
        # per-reading factors as (k, m) blocks: an op broadcasting a (k, 1) column runs
        # several times slower than one on equal shapes
        dt0 = np.maximum(dt, 0.0)
        dtp = expand_cols(dt0, m)
        # counters decide the uniform masks: min/max instead of compare + any/all passes
        lmin = int(lcnt.min())
        lmax = int(lcnt.max())
        cmin = int(cnt.min())
        cmax = int(cnt.max())
        has: Any = None  # None: every value present
        if self.skip or bool(np.isnan(x).any()):
            has = ~np.isnan(x)
            if self.skip:
                has &= self._active
            all_has = bool(has.all())
        else:
            all_has = True
        all_started = lmin > 0
        started: Any = None if all_started else lcnt > 0
        if all_started:
            pred = lvl + slope * dtp
        elif lmax == 0:
            pred = x
        else:
            pred = np.where(started, lvl + slope * dtp, x)
        all_warm = cmin >= mc
        none_warm = cmax < mc
        warm: Any = None if all_warm or none_warm else cnt >= mc
        # (sig, and the same sums in the learning steps below, share their first terms)
        msig: Any = None
        sabs_med: Any = None
        dsig: Any = None
        sabs_pred: Any = None
        if all_warm:
            base = med
            msig = MAD_TO_SIGMA * mad
            sabs_med = self.scale_floor * np.abs(med)
            sig = msig + (sabs_med + floor_abs)
        elif none_warm:
            base = pred
            dsig = MEANDEV_TO_SIGMA * dev
            sabs_pred = self.scale_floor * np.abs(pred)
            sig = dsig + (sabs_pred + floor_abs)
        else:
            base = np.where(warm, med, pred)
            sig = np.where(warm, MAD_TO_SIGMA * mad, MEANDEV_TO_SIGMA * dev)
            sig += self.scale_floor * np.abs(base) + floor_abs
        if other is not None and w_other is not None and not none_warm:
            # the profile between slot centres: where the own slot and the neighbour are both
            # trusted, interpolate their medians and MADs (scoring only: each slot still
            # learns from its own readings, so msig/sabs_med above stay the own slot's)
            base, sig = self._interpolated(s, sl, other, w_other, med, mad, base, sig, warm)
        scorable: np.ndarray | None
        if all_warm or lmin >= mc:
            scorable = None  # all True (before the missing values)
        elif none_warm and lmax < mc:
            scorable = np.zeros(lcnt.shape, dtype=bool)
        else:
            scorable = (cnt >= mc if warm is None else warm) | (lcnt >= mc)
        if not all_has:
            assert has is not None
            scorable = has.copy() if scorable is None else scorable & has
        none_scorable = scorable is not None and not bool(scorable.any())
        z = np.minimum(np.maximum((x - base) / sig, -Z_CLIP), Z_CLIP)
        # exponential smoothing of z in event time, then standardisation of the smoothed value
        a1 = smooth_weight(dt, self.smooth_halflife_s)
        if any_first:
            a1[first_seen] = 1.0
        zs_old = take_rows(self.zs, s, sl)
        if none_scorable:
            zs_new = zs_old
            out = np.full(zs_old.shape, np.nan)
        else:
            a = expand_cols(a1, m)
            zs_new = select(np.isnan(zs_old), z, zs_old + a * (z - zs_old))
            if scorable is not None:
                zs_new = np.where(scorable, zs_new, zs_old)
            a_eff = np.maximum(a1, 1e-6)
            u = zs_new * expand_cols(np.sqrt((2.0 - a_eff) / a_eff), m)
            out = u if scorable is None else np.where(scorable, u, np.nan)
            put_rows(self.zs, fs, zs_new)

        # --- learn: short-term level (Holt, clipped) -----------------------------------
        swl = smooth_weight(dt, self.level_halflife_s)
        if 1.0 / (lmin + 1.0) <= float(swl.min()):
            # max(1/(lcnt+1), w) is w everywhere: per reading, then as a block
            eta_l = expand_cols(swl, m)
            half_eta2 = expand_cols(0.5 * swl * swl, m)
        else:
            eta_l = np.maximum(1.0 / (lcnt + 1.0), expand_cols(swl, m))
            half_eta2 = 0.5 * eta_l * eta_l
        if dsig is None:
            dsig = MEANDEV_TO_SIGMA * dev
            sabs_pred = self.scale_floor * np.abs(pred)
        lim = LEVEL_CLIP * (dsig + sabs_pred + floor_abs)
        res = x - pred
        rc = np.minimum(np.maximum(res, -lim), lim)
        new_lvl = pred + eta_l * rc
        if lmin > 1:
            new_slope = slope + half_eta2 * rc / expand_cols(np.maximum(dt0, 1.0), m)
        elif lmax > 1:
            new_slope = np.where(
                lcnt > 1, slope + half_eta2 * rc / np.maximum(dtp, 1.0), 0.0
            )
        else:
            new_slope = np.zeros_like(rc)
        if all_started:
            new_dev = dev + eta_l * (np.minimum(np.abs(res), lim) - dev)
        elif lmax > 0:
            new_dev = np.where(started, dev + eta_l * (np.minimum(np.abs(res), lim) - dev), 0.0)
        else:
            new_dev = np.zeros_like(rc)

        # --- learn: stochastic-approximation median and MAD of the slot --------------------
        if cmax == 0:
            new_med = x
            new_mad = dev * (MEANDEV_TO_SIGMA / MAD_TO_SIGMA)
        else:
            if 1.0 / (cmin + 1.0) <= self.learning_rate:
                eta: Any = self.learning_rate  # max(lr, 1/(cnt+1)) is lr everywhere
            else:
                eta = np.maximum(self.learning_rate, 1.0 / (cnt + 1.0))
            if msig is None:
                msig = MAD_TO_SIGMA * mad
                sabs_med = self.scale_floor * np.abs(med)
            # (med is NaN only where cnt == 0, and those entries take the `first` branch)
            step = eta * (msig + sabs_med + floor_abs)
            r0 = x - med
            new_med = med + step * np.sign(r0)
            new_mad = np.maximum(mad + step * np.sign(np.abs(r0) - mad), 0.0)
            if cmin == 0:
                first = cnt == 0
                new_med = np.where(first, x, new_med)
                new_mad = np.where(first, dev * (MEANDEV_TO_SIGMA / MAD_TO_SIGMA), new_mad)
        if not all_has:
            new_lvl = np.where(has, new_lvl, lvl)
            new_slope = np.where(has, new_slope, slope)
            new_dev = np.where(has, new_dev, dev)
            new_med = np.where(has, new_med, med)
            new_mad = np.where(has, new_mad, mad)
            lcnt_new = lcnt + has
            cnt_new = cnt + has
        else:
            lcnt_new = lcnt + 1
            cnt_new = cnt + 1
        ix = s if sl is None else sl
        put_rows(self.lvl, fs, new_lvl)
        put_rows(self.slope, fs, new_slope)
        put_rows(self.dev, fs, new_dev)
        put_rows(self.lcnt, fs, lcnt_new)
        if blk is not None:
            self._med_t[blk, sl] = new_med
            self._mad_t[blk, sl] = new_mad
            self._cnt_t[blk, sl] = cnt_new
        else:
            put_rows(self._med_t, ff, new_med)
            put_rows(self._mad_t, ff, new_mad)
            put_rows(self._cnt_t, ff, cnt_new)
        self.last_ts[ix] = (
            np.where(any_rows(has), np.fmax(last, t), last)
            if has is not None and not all_has
            else np.fmax(last, t)
        )
        return out

    def _interpolated(
        self,
        s: np.ndarray,
        sl: slice | None,
        other: np.ndarray,
        w_other: np.ndarray,
        med: np.ndarray,
        mad: np.ndarray,
        base: np.ndarray,
        sig: np.ndarray,
        warm: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Baseline and sigma of a round with the profile interpolated towards the neighbour
        slots ``other`` (weight ``w_other``) where both slots are trusted (``warm``: None
        when every own slot is)."""
        m = self.n_metrics
        mc = self.min_count
        if sl is not None and bool((other == other[0]).all()):
            oblk = int(other[0])
            cnt_o = self._cnt_t[oblk, sl]
            med_o = self._med_t[oblk, sl]
            mad_o = self._mad_t[oblk, sl]
        else:
            fo = flat_rows(other * len(self.ids) + s, m)
            cnt_o = self._cnt_t.reshape(-1).take(fo).reshape(-1, m)
            med_o = self._med_t.reshape(-1).take(fo).reshape(-1, m)
            mad_o = self._mad_t.reshape(-1).take(fo).reshape(-1, m)
        # (uniform masks from the counters' min/max, as in the round)
        if int(cnt_o.max()) < mc:
            return base, sig
        use: Any = None if int(cnt_o.min()) >= mc else cnt_o >= mc
        if warm is not None:
            use = warm if use is None else use & warm
        # one interpolation weight per round when its readings share a time (a sweep)
        w0 = float(w_other[0])
        w: Any = w0 if bool((w_other == w0).all()) else expand_cols(w_other, m)
        base_i = med + w * (med_o - med)
        sig_i = MAD_TO_SIGMA * (mad + w * (mad_o - mad))
        sig_i += self.scale_floor * np.abs(base_i) + self.__dict__["_floor_tile"][: s.shape[0]]
        if use is None:
            return base_i, sig_i
        return np.where(use, base_i, base), np.where(use, sig_i, sig)
