"""Frames -> columns, for tests, notebooks and the evaluation harness.

>>> from models.frame import Frame
>>> import numpy as np
>>> f = Frame("G", "utility", np.array([0.0]), np.array(["S"], dtype=object), np.array([3]),
...           {"inflow_m3h": np.array([12.5])})
>>> to_columns([f], "utility")["inflow_m3h"].tolist()
[12.5]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from config.domains import DOMAIN_METRICS
from models.frame import Frame


def to_columns(frames: Iterable[Frame], domain: str) -> dict[str, np.ndarray]:
    """Readings of ``domain`` in delivery order: ts, sensor_id, seq, gateway, ``delivered``
    (index of the frame in ``frames``) and one column per metric of the domain (NaN where the
    reading's kind lacks the metric)."""
    metrics = DOMAIN_METRICS[domain]
    groups: dict[tuple[str, ...], list[tuple[int, Frame]]] = {}
    for i, f in enumerate(frames):
        if f.domain == domain:
            groups.setdefault(tuple(f.metrics), []).append((i, f))
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("ts", "sensor_id", "seq", "gateway", "delivered", *metrics)
    }
    for names, members in groups.items():
        lens = np.array([len(f) for _, f in members])
        n = int(lens.sum())
        cols["ts"].append(np.concatenate([np.asarray(f.ts, dtype=np.float64) for _, f in members]))
        cols["sensor_id"].append(
            np.concatenate([np.asarray(f.sensor_id, dtype=object) for _, f in members])
        )
        cols["seq"].append(np.concatenate([np.asarray(f.seq, dtype=np.int64) for _, f in members]))
        cols["gateway"].append(
            np.repeat(np.array([f.gateway for _, f in members], dtype=object), lens)
        )
        cols["delivered"].append(np.repeat(np.array([i for i, _ in members], dtype=np.int64), lens))
        for m in metrics:
            if m in names:
                cols[m].append(
                    np.concatenate([np.asarray(f.metrics[m], dtype=np.float64) for _, f in members])
                )
            else:
                cols[m].append(np.full(n, np.nan))
    dtypes = {
        "ts": np.float64,
        "sensor_id": object,
        "seq": np.int64,
        "gateway": object,
        "delivered": np.int64,
    }
    out = {
        k: np.concatenate(v) if v else np.array([], dtype=dtypes.get(k, np.float64))
        for k, v in cols.items()
    }
    if len(groups) > 1:
        order = np.argsort(out["delivered"], kind="stable")
        out = {k: v[order] for k, v in out.items()}
    return out
