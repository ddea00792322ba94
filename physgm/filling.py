"""Occupancy grids for filling Gaussians with MPM particles (pure tensor/array maths).

Used by ``physgm.gaussians.fill_particles``. A cell grid of edge h [m] with origin ``origin``
and ``dims`` = (X, Y, Z) cells; "shell" cells are those the Gaussians make opaque.

Two tests decide which non-shell cells are inside the object:

- ``enclosed``: not reachable from the grid's border through non-shell cells (a 6-connected
  flood fill). Exact for a closed surface; a single hole lets the inside leak out, and an
  open surface (a sheet, a bowl) encloses nothing.
- ``raycast_inside``: PhysGaussian's internal filling (Xie et al., CVPR 2024, §4.3 and its
  ``particle_filling`` code): a cell is inside when the rays from it along the six axis
  directions all meet the shell (optionally all but ``open_side``, for a captured object
  whose underside, on the ground, was never seen) and the ray along one direction enters the
  shell an odd number of times. Holes smaller than the rays' spacing only affect the cells
  in line with them, so reconstructed scenes with small gaps still fill.

PhysGaussian thresholds the summed density Σ_i o_i G_i(x) (2.0 for the shell, 1.0 for the
ray hits); here both tests use the accumulated opacity α = 1 − Π_i (1 − o_i G_i) ≈
1 − exp(−Σ_i o_i G_i), so a density threshold t corresponds to α = 1 − e^(−t) (0.86 for 2.0).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

AXIS_SIDES = ("+x", "-x", "+y", "-y", "+z", "-z")


def opacity_field(means: torch.Tensor, covs: torch.Tensor, opacities: torch.Tensor,
                  origin: torch.Tensor, h: float, dims: tuple, max_radius_cells: int
                  ) -> torch.Tensor:
    """Accumulated opacity α(x) = 1 − Π_i (1 − min(0.99, o_i·exp(−½ dᵢᵀ Σᵢ⁻¹ dᵢ))) at the
    cell centres of a (X, Y, Z) grid; means (N, 3) [m], covs (N, 3, 3) [m²], opacities (N,),
    float64 CPU. Each Gaussian is truncated at 3σ (at most ``max_radius_cells`` cells)."""
    log_t = torch.zeros(int(np.prod(dims)), dtype=torch.float64)
    prec = torch.linalg.inv(covs + 1e-12 * torch.eye(3, dtype=covs.dtype))
    sigma = torch.linalg.eigvalsh(covs).clamp_min(0).amax(-1).sqrt()
    radius = (3.0 * sigma / h).ceil().clamp(0, max_radius_cells).long()
    home = ((means - origin) / h).floor().long()
    dims_t = torch.tensor(dims)
    strides = torch.tensor([dims[1] * dims[2], dims[2], 1])
    for r in radius.unique().tolist():
        ids = torch.nonzero(radius == r).squeeze(1)
        ax = torch.arange(-r, r + 1)
        offsets = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
        chunk = max(1, (1 << 22) // offsets.shape[0])
        for s in range(0, ids.numel(), chunk):
            sel = ids[s:s + chunk]
            cells = home[sel, None, :] + offsets[None]                     # (n, K, 3)
            d = origin + (cells + 0.5) * h - means[sel, None, :]
            power = torch.einsum("nki,nij,nkj->nk", d, prec[sel], d)
            a = (opacities[sel, None] * torch.exp(-0.5 * power)).clamp(max=0.99)
            ok = ((cells >= 0) & (cells < dims_t)).all(-1) & (power <= 9.0)
            flat = (cells * strides).sum(-1)
            log_t.index_add_(0, flat[ok], torch.log1p(-a[ok]))
    return (1.0 - torch.exp(log_t)).reshape(dims)


def enclosed(shell: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool: non-shell cells that a 6-connected flood fill from the grid's border
    through non-shell cells cannot reach."""
    free = ~shell
    out = np.zeros_like(free)
    for axis in range(3):
        for end in (0, -1):
            sl = [slice(None)] * 3
            sl[axis] = end
            out[tuple(sl)] = free[tuple(sl)]
    while True:
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        grown[:, :, 1:] |= out[:, :, :-1]
        grown[:, :, :-1] |= out[:, :, 1:]
        grown &= free
        if np.array_equal(grown, out):
            return free & ~out
        out = grown


def _beyond(a: np.ndarray, side: str) -> np.ndarray:
    """For every cell, the count of ``a`` cells strictly beyond it along ``side`` (int)."""
    axis = "xyz".index(side[1])
    c = np.cumsum(a, axis=axis, dtype=np.int32)
    total = np.take(c, [-1], axis=axis)
    return total - c if side[0] == "+" else c - a


def raycast_inside(shell: np.ndarray, open_side: Optional[str] = None,
                   parity_side: str = "+y") -> np.ndarray:
    """(X, Y, Z) bool: PhysGaussian's inside test (module docstring). A non-shell cell is
    inside when, along every axis direction except ``open_side`` ("+x" … "-z" or None), some
    shell cell lies beyond it, and the ray along ``parity_side`` enters the shell (a
    non-shell → shell step) an odd number of times."""
    for name, side in (("open_side", open_side), ("parity_side", parity_side)):
        if side is not None and side not in AXIS_SIDES:
            raise ValueError(f"{name} must be one of {', '.join(AXIS_SIDES)}, got {side!r}")
    if parity_side == open_side:
        raise ValueError(f"parity_side {parity_side} cannot be the open side")
    inside = ~shell
    for side in AXIS_SIDES:
        if side != open_side:
            inside &= _beyond(shell, side) > 0
    axis = "xyz".index(parity_side[1])
    before = np.roll(shell, 1 if parity_side[0] == "+" else -1, axis=axis)
    edge = [slice(None)] * 3
    edge[axis] = 0 if parity_side[0] == "+" else -1
    before[tuple(edge)] = False                      # nothing before the grid's first cell
    entries = shell & ~before                        # a shell cell whose predecessor is free
    return inside & (_beyond(entries, parity_side) % 2 == 1)
