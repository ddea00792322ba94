"""Substep selection and the CFL check (pure math, no warp).

The explicit MLS-MPM update is stable while information travels less than a cell per
substep: dt ≤ C · dx / (c + v), with c the elastic P-wave speed sqrt((λ + 2μ)/ρ) [m/s] and v
the fastest material speed expected [m/s]. ``cfg.cfl`` (C) picks the automatic substep;
a substep given by the user beyond C = 1 is refused before anything runs.
"""
from __future__ import annotations

import math

import numpy as np

from physgm.config import MPMConfig
from physgm.materials import PhysParams

CFL_LIMIT = 1.0  # Courant number above which a user-given substep is rejected outright
MAX_SUBSTEPS_PER_FRAME = 200_000  # beyond this a run would take hours: refuse it up front


def expected_speed(cfg: MPMConfig, initial_speed: float = 0.0) -> float:
    """Upper estimate of particle speed [m/s]: initial speed plus a fall across the domain."""
    g = float(np.linalg.norm(cfg.gravity))
    return float(initial_speed) + math.sqrt(2.0 * g * cfg.domain_size)


def stable_dt(params: PhysParams, cfg: MPMConfig, initial_speed: float = 0.0,
              courant: float | None = None) -> float:
    """Largest substep [s] with Courant number ``courant`` (default ``cfg.cfl``)."""
    dx = cfg.domain_size / cfg.grid_res
    c = params.wave_speed() + expected_speed(cfg, initial_speed)
    return (cfg.cfl if courant is None else courant) * dx / c


def choose_substeps(params: PhysParams, cfg: MPMConfig, initial_speed: float = 0.0
                    ) -> tuple[float, int]:
    """(substep_dt [s], substeps per frame). Substeps per frame = round(frame_dt / substep_dt)
    (at least 1); with an automatic substep the count is rounded up so dt stays under the bound.

    Raises ValueError when a given ``cfg.substep_dt`` violates the CFL bound.
    """
    if cfg.substep_dt is None:
        n = max(1, math.ceil(cfg.frame_dt / stable_dt(params, cfg, initial_speed)))
        if n > MAX_SUBSTEPS_PER_FRAME:
            raise ValueError(
                f"{params.material.value} with E={params.E:.3g} Pa, initial speed "
                f"{initial_speed:.3g} m/s on a {cfg.grid_res}³ grid needs {n} substeps per frame "
                f"(limit {MAX_SUBSTEPS_PER_FRAME}): lower E or the speed, or coarsen the grid")
        return cfg.frame_dt / n, n
    limit = stable_dt(params, cfg, initial_speed, courant=CFL_LIMIT)
    if cfg.substep_dt > limit:
        raise ValueError(
            f"substep_dt={cfg.substep_dt:.3g} s violates the CFL bound for {params.material.value} "
            f"(E={params.E:.3g} Pa, wave speed {params.wave_speed():.3g} m/s, dx="
            f"{cfg.domain_size / cfg.grid_res:.3g} m): use substep_dt ≤ {limit:.3g} s, "
            f"or leave it unset to choose it automatically")
    n = max(1, round(cfg.frame_dt / cfg.substep_dt))
    return cfg.frame_dt / n, n  # frames stay exactly frame_dt apart
