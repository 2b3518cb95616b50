"""The fundamental diagram of traffic flow: how flow, speed and density relate.

Free flow: speed falls with flow, from the free-flow speed to 70 % of it at capacity (a
BPR-like curve: signal delay and friction grow with volume). Congestion: the linear branch from the critical density to the jam density
(Newell/Daganzo), with backward wave speed ``w = q_cap / (k_jam - k_crit)``. On both branches
``flow = density × speed`` holds exactly, and a loop detector's occupancy is density times the
effective vehicle length (vehicle + loop): ``occupancy % = k_per_lane × L_EFF_M / 10``.
"""

from __future__ import annotations

import numpy as np

K_JAM = 125.0  # veh/km/lane
L_EFF_M = 7.0  # metres of loop occupied per vehicle (vehicle + detection zone)
CRIT_SPEED = 0.70  # speed at capacity, share of the free-flow speed


def free_speed(q: np.ndarray, cap: np.ndarray, vf: np.ndarray) -> np.ndarray:
    """Speed (km/h) on the free-flow branch at flow ``q`` (veh/h) for capacity ``cap``."""
    x = np.clip(q / cap, 0.0, 1.0)
    return vf * (1.0 - (1.0 - CRIT_SPEED) * x**2.5)


def critical_density(cap: np.ndarray, vf: np.ndarray, lanes: np.ndarray) -> np.ndarray:
    """veh/km/lane at capacity."""
    return (cap / lanes) / (CRIT_SPEED * vf)


def wave_speed(cap: np.ndarray, vf: np.ndarray, lanes: np.ndarray) -> np.ndarray:
    """Backward wave speed (km/h) of the congested branch."""
    return (cap / lanes) / (K_JAM - critical_density(cap, vf, lanes))


def congested(
    q: np.ndarray, cap: np.ndarray, vf: np.ndarray, lanes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(density veh/km over all lanes, speed km/h) on the congested branch at flow ``q``."""
    w = wave_speed(cap, vf, lanes)
    q = np.minimum(q, cap)
    k_lane = K_JAM - (q / lanes) / w
    k = k_lane * lanes
    return k, q / k


def occupancy(k: np.ndarray, lanes: np.ndarray) -> np.ndarray:
    """Loop occupancy (%) for total density ``k`` (veh/km)."""
    return np.clip(k / lanes * L_EFF_M / 10.0, 0.0, 100.0)


def state(
    demand: np.ndarray, cap: np.ndarray, vf: np.ndarray, lanes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flow, speed, density) for a demand: free flow up to capacity; beyond it the section is
    oversaturated and runs on the congested branch at flow ``cap / x`` (x = demand/capacity),
    continuous at x = 1."""
    x = demand / cap
    over = x > 1.0
    q = np.where(over, cap / np.maximum(x, 1.0), demand)
    v = free_speed(q, cap, vf)
    k = q / np.maximum(v, 1e-6)
    if over.any():
        kc, vc = congested(q, cap, vf, lanes)
        v = np.where(over, vc, v)
        k = np.where(over, kc, k)
    return q, v, k
