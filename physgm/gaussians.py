"""3D Gaussians: the dataclass, 3DGS-compatible PLY I/O, deformation, and particle filling.

``Gaussians`` holds *activated* values (docs/architecture.md): means (N, 3) [m], scales (N, 3) [m]
(> 0), quats (N, 4) as (w, x, y, z) (normalised on use), opacities (N,) in [0, 1], colors
(N, 3) RGB in [0, 1]. Covariance Σ = R S Sᵀ Rᵀ with R = rot(q), S = diag(scales).

Deformation (``deform``) stores the deformed covariance F Σ Fᵀ directly in the optional
``covs`` (N, 3, 3) field, which then overrides scales/quats for rendering (both renderer
backends take covariances). Storing Σ rather than re-factoring keeps ``deform`` exact and
differentiable; ``factorized()`` turns ``covs`` back into scales + quats by an
eigendecomposition when needed (``save_ply`` does this itself).

Particles for MPM follow PhysGaussian (Xie et al., CVPR 2024, §4.3 "internal filling"):
see ``fill_particles``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from physgm.filling import enclosed, opacity_field, raycast_inside

SH_C0 = 0.28209479177387814  # zeroth-order SH basis constant: f_dc = (rgb − 0.5) / C0
_OPACITY_EPS = 1e-6          # opacities are clamped to [eps, 1 − eps] before the PLY logit
_MIN_SCALE = 1e-9            # [m] floor for log(scale) and for re-factored eigenvalues
PLY_FIELDS = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
              "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


# ---------------------------------------------------------------------- rotations
def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(N, 4) quaternions (w, x, y, z), any norm → (N, 3, 3) rotation matrices."""
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotation matrices → (N, 4) unit quaternions (w, x, y, z), w ≥ 0.

    Shepperd's method: each row uses the largest of (trace, R00, R11, R22) as the pivot so
    the square root never sees a small number."""
    m = R
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack([
        torch.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                     m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], dim=-2)                                                       # (N, 4 pivots, 4)
    pivot = torch.stack([tr, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1).argmax(-1)
    q = torch.gather(cands, -2, pivot[..., None, None].expand(pivot.shape + (1, 4))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


# ---------------------------------------------------------------------- dataclass
@dataclass(eq=False)
class Gaussians:
    """N anisotropic 3D Gaussians (activated values; see the module docstring).

    Attributes:
        means: (N, 3) centres [m].
        scales: (N, 3) standard deviations along the local axes [m], > 0.
        quats: (N, 4) rotation (w, x, y, z); normalised on use.
        opacities: (N,) in [0, 1].
        colors: (N, 3) RGB in [0, 1].
        covs: optional (N, 3, 3) world covariances [m²] that override scales/quats (set by
            ``deform``).
    """

    means: torch.Tensor
    scales: torch.Tensor
    quats: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor
    covs: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.dim() == 2 else -1
        expected = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,),
                    "colors": (n, 3)}
        if self.covs is not None:
            expected["covs"] = (n, 3, 3)
        for name, shape in expected.items():
            t = getattr(self, name)
            if not torch.is_tensor(t):
                raise ValueError(f"Gaussians.{name} must be a torch tensor, got {type(t).__name__}")
            if n < 0 or tuple(t.shape) != shape:
                raise ValueError(f"Gaussians.{name} must have shape {shape} with N = len(means), "
                                 f"got {tuple(t.shape)} (means {tuple(self.means.shape)})")

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    def _map(self, fn) -> "Gaussians":
        return Gaussians(fn(self.means), fn(self.scales), fn(self.quats), fn(self.opacities),
                         fn(self.colors), None if self.covs is None else fn(self.covs))

    def to(self, device: Union[str, torch.device, None] = None,
           dtype: Optional[torch.dtype] = None) -> "Gaussians":
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> "Gaussians":
        return self._map(lambda t: t.detach())

    def subset(self, idx: Union[torch.Tensor, Sequence[int], slice]) -> "Gaussians":
        """Gaussians selected by an index tensor, boolean mask (N,) or slice."""
        if not isinstance(idx, slice) and not torch.is_tensor(idx):
            idx = torch.as_tensor(idx, dtype=torch.long)
        if torch.is_tensor(idx):
            idx = idx.to(self.device)
        return self._map(lambda t: t[idx])

    @staticmethod
    def cat(parts: Sequence["Gaussians"]) -> "Gaussians":
        """Concatenate along N. ``covs`` are kept if any part has them (the others' are
        computed from their scales and quats)."""
        parts = list(parts)
        if not parts:
            raise ValueError("Gaussians.cat needs at least one set of Gaussians")
        covs = None
        if any(p.covs is not None for p in parts):
            covs = torch.cat([p.covariances() for p in parts])
        return Gaussians(*(torch.cat([getattr(p, f) for p in parts])
                           for f in ("means", "scales", "quats", "opacities", "colors")), covs)

    @classmethod
    def from_points(cls, points, colors=None, scale: float = 0.01,
                    opacity: float = 0.9) -> "Gaussians":
        """Isotropic Gaussians of std ``scale`` [m] at ``points`` (N, 3); ``colors`` (N, 3) or
        (3,) in [0, 1] (default mid grey)."""
        pts = torch.as_tensor(np.asarray(points) if not torch.is_tensor(points) else points)
        pts = pts.float() if not pts.is_floating_point() or pts.dtype == torch.float64 else pts
        if pts.dim() != 2 or pts.shape[1] != 3:
            raise ValueError(f"from_points needs points of shape (N, 3), got {tuple(pts.shape)}")
        if scale <= 0:
            raise ValueError(f"from_points scale must be > 0 m, got {scale}")
        n = pts.shape[0]
        if colors is None:
            col = torch.full((n, 3), 0.5, dtype=pts.dtype, device=pts.device)
        else:
            col = torch.as_tensor(np.asarray(colors) if not torch.is_tensor(colors) else colors)
            col = col.to(pts).expand(n, 3).clone()
        quats = torch.zeros(n, 4, dtype=pts.dtype, device=pts.device)
        quats[:, 0] = 1.0
        return cls(pts, torch.full((n, 3), float(scale), dtype=pts.dtype, device=pts.device),
                   quats, torch.full((n,), float(opacity), dtype=pts.dtype, device=pts.device), col)

    # ------------------------------------------------------------------ covariance
    def rotations(self) -> torch.Tensor:
        """(N, 3, 3) rotation matrices of the normalised quaternions."""
        return quat_to_rotmat(self.quats)

    def covariances(self) -> torch.Tensor:
        """(N, 3, 3) world covariances [m²]: ``covs`` if set, else R S Sᵀ Rᵀ."""
        if self.covs is not None:
            return self.covs
        M = self.rotations() * self.scales[:, None, :]               # R S
        return M @ M.transpose(1, 2)

    def deform(self, positions: torch.Tensor, F: Optional[torch.Tensor] = None) -> "Gaussians":
        """Gaussians moved to ``positions`` (N, 3) [m] with covariances F Σ Fᵀ (``F`` (N, 3, 3)
        deformation gradients; None keeps Σ). The result stores ``covs``; its scales and
        quats are the un-deformed ones (call ``factorized()`` to refresh them)."""
        pos = torch.as_tensor(positions).to(self.means)
        if pos.shape != self.means.shape:
            raise ValueError(f"deform positions must be (N, 3) = {tuple(self.means.shape)}, got "
                             f"{tuple(pos.shape)}")
        cov = self.covariances()
        if F is not None:
            F = torch.as_tensor(F).to(cov)
            if F.shape != cov.shape:
                raise ValueError(f"deform F must be (N, 3, 3) = {tuple(cov.shape)}, got "
                                 f"{tuple(F.shape)}")
            cov = F @ cov @ F.transpose(1, 2)
        return replace(self, means=pos, covs=cov)

    def factorized(self) -> "Gaussians":
        """Scales and quats re-derived from ``covs`` (Σ = R diag(λ) Rᵀ, scales = √λ, det R = +1);
        ``covs`` cleared. Returns self when ``covs`` is None."""
        if self.covs is None:
            return self
        cov = 0.5 * (self.covs + self.covs.transpose(1, 2))
        evals, evecs = torch.linalg.eigh(cov.double())
        flip = torch.linalg.det(evecs) < 0
        evecs[flip, :, 0] = -evecs[flip, :, 0]
        scales = evals.clamp_min(_MIN_SCALE ** 2).sqrt().to(self.scales)
        return replace(self, scales=scales, quats=rotmat_to_quat(evecs).to(self.quats), covs=None)

    # ------------------------------------------------------------------ PLY I/O
    def save_ply(self, path: Union[str, Path]) -> Path:
        """Write the standard 3DGS PLY (binary little-endian, float32 fields ``PLY_FIELDS``):
        log scales, logit opacity (opacity clamped to [1e-6, 1 − 1e-6]), SH DC colour, zero
        normals, quaternions as stored (``physgm.ply.write_ply``)."""
        from physgm.ply import write_ply

        return write_ply(self, path)

    @classmethod
    def load_ply(cls, path: Union[str, Path, bytes],
                 max_gaussians: Optional[int] = None) -> "Gaussians":
        """Read a 3DGS PLY in the original layout (a path, or the file's bytes), SH degree
        0–3: colours = clip(0.5 + C0·f_dc, 0, 1), opacities = sigmoid, scales = exp; SH
        beyond DC (``f_rest_*``) and extra properties are dropped (see ``physgm.ply``, whose
        ``read_ply`` also returns the file's layout). Raises FileNotFoundError, or
        ``physgm.ply.PlyError`` (a ValueError) naming missing properties or what is wrong."""
        from physgm.ply import read_ply

        return read_ply(path, max_gaussians)[0]


# ---------------------------------------------------------------------- particles for MPM
def fill_particles(gaussians: Gaussians, grid_res: int = 64, spacing: Optional[float] = None,
                   opacity_threshold: float = 0.35, particles_per_axis: int = 2,
                   generator: Optional[torch.Generator] = None,
                   max_cells: int = 256 ** 3, interior: str = "enclosed",
                   open_side: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MPM particles for an object made of Gaussians (PhysGaussian's internal filling).

    1. Voxelise the bounding box of the means with cells of edge ``spacing`` [m] (default:
       longest box edge / ``grid_res``), padded by two cells.
    2. Shell = cells whose accumulated opacity (``physgm.filling.opacity_field``) exceeds
       ``opacity_threshold``, plus cells holding the centre of a Gaussian that opaque.
    3. Interior (``physgm.filling``): ``interior="enclosed"``: non-shell cells a flood fill
       from the grid border cannot reach (an open shell encloses nothing; the model's
       predicted surfaces); ``"raycast"``: PhysGaussian's ray test, tolerant of small holes
       and, with ``open_side`` (e.g. "-y"), of an unseen underside (captured scenes).
    4. Particles: the N Gaussian centres first (rows 0..N−1, in order, so Gaussian i follows
       particle i), then ``particles_per_axis``³ sub-cell centres in every interior cell and
       every shell cell that holds no Gaussian centre (so the body has no gap between its
       surface Gaussians and its filling), jittered inside their sub-cell when ``generator``
       is given.

    Returns:
        particles: (M, 3) float32 [m], M ≥ N.
        volumes: (M,) float32 [m³]: every occupied cell's volume spacing³ shared equally by
            the particles in it, so volumes sum to the occupied volume.
    """
    if len(gaussians) == 0:
        raise ValueError("fill_particles needs at least one Gaussian")
    if particles_per_axis < 1:
        raise ValueError(f"particles_per_axis must be ≥ 1, got {particles_per_axis}")
    g = gaussians.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(g.means).all()) or not bool(torch.isfinite(g.covariances()).all()):
        raise ValueError("fill_particles: Gaussians have NaN/Inf means or covariances")
    lo, hi = g.means.min(0).values, g.means.max(0).values
    extent = float((hi - lo).max())
    if spacing is None:
        if grid_res < 1:
            raise ValueError(f"grid_res must be ≥ 1, got {grid_res}")
        spacing = extent / grid_res if extent > 0 else float(g.covariances().diagonal(0, 1, 2)
                                                             .amax().sqrt().clamp_min(1e-4))
    h = float(spacing)
    if not h > 0:
        raise ValueError(f"spacing must be > 0 m, got {spacing}")
    origin = lo - 2.0 * h
    dims = tuple(int(x) for x in (((hi - lo) / h).floor().long() + 5).tolist())
    if int(np.prod(dims)) > max_cells:
        raise ValueError(f"fill grid {dims} has more than {max_cells} cells; raise spacing or "
                         "lower grid_res")

    if interior not in ("enclosed", "raycast"):
        raise ValueError(f"interior must be 'enclosed' or 'raycast', got {interior!r}")
    alpha = opacity_field(g.means, g.covariances(), g.opacities, origin, h, dims,
                          max_radius_cells=8)
    shell = (alpha > opacity_threshold).numpy()
    home = ((g.means - origin) / h).floor().long().numpy()
    opaque = home[(g.opacities > opacity_threshold).numpy()]
    shell[opaque[:, 0], opaque[:, 1], opaque[:, 2]] = True
    has_centre = np.zeros_like(shell)
    has_centre[home[:, 0], home[:, 1], home[:, 2]] = True
    inside = enclosed(shell) if interior == "enclosed" else raycast_inside(shell, open_side)
    fill = inside | (shell & ~has_centre)

    cells = torch.from_numpy(np.argwhere(fill)).double()                  # (C, 3)
    k = particles_per_axis
    sub = (torch.stack(torch.meshgrid(*[torch.arange(k, dtype=torch.float64)] * 3,
                                      indexing="ij"), -1).reshape(-1, 3) + 0.5) / k
    pts = (cells[:, None, :] + sub[None]).reshape(-1, 3)
    if generator is not None:
        pts = pts + (torch.rand(pts.shape, generator=generator, dtype=torch.float64) - 0.5) / k
    particles = torch.cat([g.means, origin + pts * h])

    cell_of = ((particles - origin) / h).floor().long().clamp_min(0)
    cell_of = torch.minimum(cell_of, torch.tensor(dims) - 1)
    flat = (cell_of[:, 0] * dims[1] + cell_of[:, 1]) * dims[2] + cell_of[:, 2]
    counts = torch.bincount(flat, minlength=int(np.prod(dims)))
    volumes = h ** 3 / counts[flat].double()
    return particles.float(), volumes.float()


def particles_to_gaussians(particles: torch.Tensor, gaussians: Gaussians) -> torch.Tensor:
    """(N,) long: for each Gaussian, the index of the particle (M, 3) nearest its centre —
    the particle it follows in the simulation (``arange(N)`` for ``fill_particles`` output)."""
    p = torch.as_tensor(particles).to(gaussians.means.device, torch.float32)
    m = gaussians.means.detach().float()
    if p.dim() != 2 or p.shape[1] != 3 or p.shape[0] == 0:
        raise ValueError(f"particles must be (M, 3) with M ≥ 1, got {tuple(p.shape)}")
    chunk = max(1, (1 << 24) // p.shape[0])
    return torch.cat([torch.cdist(m[s:s + chunk], p).argmin(1) for s in range(0, len(m), chunk)]
                     ) if len(m) else torch.zeros(0, dtype=torch.long)
