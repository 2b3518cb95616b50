"""What a generator is: arrays of event times in, arrays of readings out.

A *cohort* is every sensor of one kind with one reporting interval, laid out gateway by
gateway so that a gateway's readings are a contiguous column slice. A generator turns a vector
of ``T`` reading times into ``{metric: (T, n) array}`` for its cohort: the undisturbed signal,
the incidents' fields, and measurement noise drawn from the ``rng`` it is given (always the
same draws in the same order, so two scenarios with the same seed differ only where an incident
or a fault acts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from sensors_sim.incidents import Incident
    from sensors_sim.world import World


@dataclass(frozen=True, eq=False)
class Cohort:
    key: str
    kind: str
    domain: str
    interval: float
    metrics: tuple[str, ...]
    gidx: np.ndarray  # global sensor indices (city.sensors order), increasing
    ids: np.ndarray  # sensor ids, object array
    gateways: tuple[tuple[str, int, int], ...]  # (gateway id, first column, end column)

    @property
    def n(self) -> int:
        return len(self.gidx)


class Generator(Protocol):
    def __init__(self, world: World, cohort: Cohort, incidents: list[Incident]) -> None: ...

    def generate(self, t: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Readings at times ``t`` (T,), one (T, n) array per metric of the kind."""
        ...


def district_temperature(world: World, incidents: list[Incident], t: np.ndarray) -> np.ndarray:
    """Air temperature per district (T, n_districts): city weather, heat island, heat waves."""
    temp = world.temperature(t)[:, None] + world.uhi[None, :]
    for inc in incidents:
        delta = inc.temp_delta(t)
        if delta is not None:
            temp = temp + delta
    return temp


def episode(world: World, incidents: list[Incident], t: np.ndarray) -> np.ndarray | None:
    """Pollution episode intensity per district (T, n_districts), or ``None`` when calm."""
    out = None
    for inc in incidents:
        e = inc.episode(t)
        if e is not None:
            out = e if out is None else out + e
    return out


def local_traffic(world: World, cohort: Cohort, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vehicles/h on the roads within ~450 m, the same as a share of their planned peak)."""
    offsets, members = world.local_segments(cohort.key, cohort.gidx)
    if not len(members):
        zeros = np.zeros((len(t), cohort.n))
        return zeros, zeros
    uniq, inv = np.unique(members, return_inverse=True)
    dem = world.demand(t, uniq)[:, inv]
    vph = np.add.reduceat(dem, offsets[:-1], axis=1)
    planned = np.add.reduceat((world.seg_cap * world.seg_vc)[uniq][inv], offsets[:-1])
    return vph, vph / planned[None, :]
