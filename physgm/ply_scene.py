"""A user's own 3DGS scene simulated as one material (``physgm simulate --ply``, and the PLY
upload of ``POST /v1/simulate``). Pure pipeline: no Ray, no HTTP, no files.

    Gaussians in the scene's units and axes (``physgm.ply.read_ply``)
      ─ select_gaussians: opacity ≥ min_opacity, inside an optional crop box (scene units)
      ─ into the MPM domain by a similarity T: x ↦ s·R·x + t, either given
        (``parse_transform``) or ``normalising_transform``: the scene's up axis → +y, its
        longest extent → size_m metres, its centre → a given point
      ─ build_scene: particles on the simulation's cell grid (2³ per cell of edge dx, like the
        primitives), filled the PhysGaussian way (``fill_particles(interior="raycast",
        open_side="-y")``: the unseen underside of a captured object does not stop the
        filling), at most 8 Gaussian centres per cell, thinned to ``max_particles``; equal
        particle volumes that add up to the filled volume
      ─ physgm.sim.simulate
      ─ every Gaussian follows its nearest particle p affinely:
        x(t) = x_p(t) + F_p(t)·(x(0) − x_p(0)), Σ(t) = F_p Σ F_pᵀ (``gaussians_at``)
      ─ render_scene from one camera per frame: an orbit around the object
        (``orbit_views``), or a fixed camera given in the scene's frame and mapped by T

Lengths in metres once in the domain [0, L]³ (L = ``MPMConfig.domain_size``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from physgm.camera import Camera
from physgm.config import MPMConfig
from physgm.gaussians import Gaussians, fill_particles, rotmat_to_quat
from physgm.filling import AXIS_SIDES

PARTICLES_PER_CELL = 8            # as the primitives and fill_particles' 2³ sub-cells


# ---------------------------------------------------------------------- similarity transforms
def up_rotation(up: str) -> np.ndarray:
    """(3, 3) rotation taking the scene's ``up`` axis ("+x" … "-z") to world +y (3DGS scenes
    trained from COLMAP often have "-y" up)."""
    if up not in AXIS_SIDES:
        raise ValueError(f"up must be one of {', '.join(AXIS_SIDES)}, got {up!r}")
    u = np.zeros(3)
    u["xyz".index(up[1])] = 1.0 if up[0] == "+" else -1.0
    y = np.array([0.0, 1.0, 0.0])
    if np.allclose(u, y):
        return np.eye(3)
    if np.allclose(u, -y):
        return np.diag([1.0, -1.0, -1.0])            # half a turn about x
    axis = np.cross(u, y)                            # a quarter turn about u × y
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + K + K @ K


def similarity_parts(T: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(4, 4) → (s, R (3, 3), t (3,)) with T = [s·R, t; 0, 1]; ValueError unless T is a
    finite similarity (uniform scale s > 0, proper rotation R)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f"transform must be a finite 4×4 matrix, got shape {T.shape}")
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-9):
        raise ValueError(f"transform's last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    A = T[:3, :3]
    det = float(np.linalg.det(A))
    if det <= 0:
        raise ValueError("transform's 3×3 part must be a rotation times a positive scale "
                         f"(its determinant is {det:g}: a reflection or singular)")
    s = det ** (1.0 / 3.0)
    R = A / s
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-4:
        raise ValueError("transform's 3×3 part must be a rotation times one uniform scale "
                         "(no shear, no per-axis scale)")
    return s, R, T[:3, 3].copy()


def parse_transform(value: str) -> np.ndarray:
    """A scene → domain transform: JSON text of a 4×4 list (row-major, metres = s·R·x + t),
    or a path to a .json file holding one. Raises ValueError saying what to pass."""
    text = value
    if not value.lstrip().startswith("["):
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"transform {value!r} is neither a JSON 4×4 list nor a file")
        text = path.read_text()
    try:
        T = np.asarray(json.loads(text), dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise ValueError(f"transform is not a JSON 4×4 list of numbers ({err})") from None
    similarity_parts(T)
    return T


def normalising_transform(means: torch.Tensor, size_m: float, centre: Sequence[float],
                          up: str = "+y") -> np.ndarray:
    """The similarity that turns ``up`` to +y, scales the longest extent of the box around
    ``means`` (N, 3) to ``size_m`` metres and moves the box's centre to ``centre`` [m]."""
    if not (math.isfinite(size_m) and size_m > 0):
        raise ValueError(f"size must be a positive length in metres, got {size_m}")
    R = up_rotation(up)
    x = means.detach().double().cpu().numpy() @ R.T
    lo, hi = x.min(0), x.max(0)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise ValueError("the scene's Gaussians all sit at one point: nothing to scale")
    s = size_m / extent
    T = np.eye(4)
    T[:3, :3] = s * R
    T[:3, 3] = np.asarray(centre, dtype=np.float64) - s * (lo + hi) / 2
    return T


def transform_gaussians(g: Gaussians, T: np.ndarray) -> Gaussians:
    """Gaussians mapped by the similarity T: means s·R·x + t, scales × s, rotations R·q
    (covariances s²·R Σ Rᵀ when set)."""
    s, R, t = similarity_parts(T)
    Rt = torch.as_tensor(R, dtype=torch.float64)
    g64 = g.detach().to("cpu", torch.float64)
    qR = rotmat_to_quat(Rt[None])[0]
    w1, v1 = qR[0], qR[1:]
    w2, v2 = g64.quats[:, 0], g64.quats[:, 1:]
    quats = torch.cat([(w1 * w2 - v2 @ v1)[:, None],
                       w1 * v2 + w2[:, None] * v1 + torch.linalg.cross(v1.expand_as(v2), v2)], 1)
    covs = None if g64.covs is None else s * s * Rt @ g64.covs @ Rt.T
    out = Gaussians(g64.means @ Rt.T * s + torch.as_tensor(t), g64.scales * s, quats,
                    g64.opacities, g64.colors, covs)
    return out.to(dtype=g.means.dtype)


def transform_camera(cam: Camera, T: np.ndarray) -> Camera:
    """A camera of the scene's frame seen in the domain: same image, pose mapped by T."""
    s, R, t = similarity_parts(T)
    c2w = cam.c2w.double().numpy().copy()
    out = np.eye(4)
    out[:3, :3] = R @ c2w[:3, :3]
    out[:3, 3] = s * R @ c2w[:3, 3] + t
    return Camera(cam.K, torch.as_tensor(out), cam.width, cam.height)


# ---------------------------------------------------------------------- selection, particles
def select_gaussians(g: Gaussians, min_opacity: float = 0.0,
                     crop: Optional[Sequence[float]] = None) -> Gaussians:
    """Gaussians at least ``min_opacity`` opaque and, with ``crop`` (x0, x1, y0, y1, z0, z1 in
    the scene's units), inside that box; ValueError when none is left."""
    keep = g.opacities >= min_opacity
    if crop is not None:
        box = np.asarray(crop, dtype=np.float64)
        if box.shape != (6,) or not np.isfinite(box).all() or (box[1::2] <= box[::2]).any():
            raise ValueError(f"crop must be x0,x1,y0,y1,z0,z1 with each low < high, got {crop}")
        lo = torch.as_tensor(box[::2], dtype=g.means.dtype)
        hi = torch.as_tensor(box[1::2], dtype=g.means.dtype)
        keep &= ((g.means >= lo) & (g.means <= hi)).all(-1)
    n = int(keep.sum())
    if n == 0:
        raise ValueError(f"no Gaussian of the {len(g)} is left after the opacity threshold "
                         f"{min_opacity:g}" + (" and the crop box" if crop is not None else "")
                         + ": lower min_opacity or widen the crop")
    return g.subset(keep)


def thin_gaussians(g: Gaussians, max_count: int, seed: int = 0) -> Gaussians:
    """At most ``max_count`` Gaussians, a uniform random subset, each grown by
    (N / max_count)^(1/3) so that the fewer, larger splats cover about the same volume (a
    preview of a dense scene, for a bounded render time)."""
    n = len(g)
    if n <= max_count:
        return g
    keep = np.sort(np.random.default_rng(seed).choice(n, max_count, replace=False))
    sub = g.subset(torch.from_numpy(keep))
    grow = (n / max_count) ** (1.0 / 3.0)
    return Gaussians(sub.means, sub.scales * grow, sub.quats, sub.opacities, sub.colors,
                     None if sub.covs is None else sub.covs * grow ** 2)


@dataclass(eq=False)
class PlyScene:
    """A scene ready to simulate: ``gaussians`` (N) in the domain, ``particles`` (M, 3) [m],
    ``volumes`` (M,) [m³], ``follow`` (N,) the particle each Gaussian follows, ``transform``
    (4, 4) scene → domain."""

    gaussians: Gaussians
    particles: np.ndarray
    volumes: np.ndarray
    follow: torch.Tensor
    transform: np.ndarray


def nearest(points: torch.Tensor, particles: torch.Tensor, h: float) -> torch.Tensor:
    """(N,) long: index of the particle (M, 3) nearest each point (N, 3), searched among the
    27 cells of edge ``h`` around the point (exact when one lies within h), brute force for
    the rest."""
    p = particles.double()
    x = points.double()
    key_of = lambda c: (c[:, 0] * 1_000_003 + c[:, 1]) * 1_000_033 + c[:, 2]  # noqa: E731
    pc = torch.floor(p / h).long()
    keys, order = torch.sort(key_of(pc))
    ax = torch.arange(-1, 2)
    offsets = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    best = torch.full((len(x),), -1, dtype=torch.long)
    for s in range(0, len(x), 8192):
        xs = x[s:s + 8192]
        cells = torch.floor(xs / h).long()[:, None, :] + offsets[None]          # (n, 27, 3)
        k = key_of(cells.reshape(-1, 3)).reshape(cells.shape[:2])
        lo = torch.searchsorted(keys, k)
        hi = torch.searchsorted(keys, k, right=True)
        width = int((hi - lo).max()) if len(keys) else 0
        if width == 0:
            continue
        idx = lo[..., None] + torch.arange(width)                                 # (n, 27, w)
        valid = idx < hi[..., None]
        cand = order[idx.clamp(max=len(order) - 1)]
        d = ((p[cand] - xs[:, None, None, :]) ** 2).sum(-1).masked_fill(~valid, math.inf)
        dmin, arg = d.reshape(len(xs), -1).min(1)
        found = torch.isfinite(dmin) & (dmin <= h * h)
        best[s:s + len(xs)] = torch.where(found, cand.reshape(len(xs), -1).gather(
            1, arg[:, None])[:, 0], torch.full_like(arg, -1))
    rest = torch.nonzero(best < 0).squeeze(1)
    for s in range(0, len(rest), 4096):
        sel = rest[s:s + 4096]
        best[sel] = torch.cdist(x[sel], p).argmin(1)
    return best


def _first_per_cell(cells: torch.Tensor, cap: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool: at most ``cap`` randomly chosen rows of each distinct cell (N, 3)."""
    _, cell_id = torch.unique(cells, dim=0, return_inverse=True)
    order = torch.from_numpy(rng.permutation(len(cells)))
    ids, by_cell = torch.sort(cell_id[order], stable=True)       # grouped, random within
    rank = torch.arange(len(ids)) - torch.searchsorted(ids, ids)  # position within the cell
    mask = np.zeros(len(cells), bool)
    mask[order[by_cell][rank < cap].numpy()] = True
    return mask


def build_scene(g: Gaussians, sim: MPMConfig, transform: np.ndarray,
                max_particles: int = 20000, opacity_threshold: float = 0.35,
                seed: int = 0) -> PlyScene:
    """Map ``g`` (scene units) into the domain by ``transform`` and make its particles (see
    the module docstring). Raises ValueError when the mapped scene leaves the room between
    the floor and the walls, naming the bound and what to change."""
    L = sim.domain_size
    dx = L / sim.grid_res
    gd = transform_gaussians(g, transform).to(dtype=torch.float32)
    lo, hi = gd.means.min(0).values.numpy(), gd.means.max(0).values.numpy()
    room_lo, room_hi = 4.0 * dx, L - 4.0 * dx       # floor/walls are 3 cells, plus a margin
    for i, axis in enumerate("xyz"):
        if lo[i] < room_lo or hi[i] > room_hi:
            raise ValueError(f"the scene spans {axis} = {lo[i]:.3f}..{hi[i]:.3f} m in the domain, "
                             f"outside the room {room_lo:.3f}..{room_hi:.3f} m between the walls "
                             "(and the floor): lower --size, move --height, or change --transform")
    gen = torch.Generator().manual_seed(seed)
    p, v = fill_particles(gd, spacing=dx, opacity_threshold=opacity_threshold, generator=gen,
                          interior="raycast", open_side="-y")
    n = len(gd)
    total = float(v.double().sum())
    rng = np.random.default_rng(seed)
    # dense scenes hold hundreds of Gaussians per cell: keep at most PARTICLES_PER_CELL
    # centres per cell (the fill already samples the cells without centres)
    cells = torch.floor((p[:n].double() - p[:n].double().min(0).values) / dx).long()
    keep = np.concatenate([np.flatnonzero(_first_per_cell(cells, PARTICLES_PER_CELL, rng)),
                           np.arange(n, len(p))])
    if len(keep) > max_particles:
        keep = np.sort(rng.choice(keep, max_particles, replace=False))
    particles = p[keep]
    volumes = np.full(len(keep), total / len(keep), np.float32)
    follow = nearest(gd.means, particles, dx)
    return PlyScene(gd, particles.numpy().astype(np.float32), volumes, follow,
                    np.asarray(transform, dtype=np.float64))


# ---------------------------------------------------------------------- motion and rendering
def gaussians_at(scene: PlyScene, positions: np.ndarray, deformation: np.ndarray
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the scene's Gaussians are at one frame → (means (N, 3), F (N, 3, 3)), from that
    frame's particle positions (M, 3) and deformation gradients (M, 3, 3): each Gaussian
    follows ``scene.follow`` affinely (module docstring)."""
    g, f = scene.gaussians, scene.follow.numpy()
    x0 = torch.from_numpy(scene.particles[f]).to(g.means)
    F = torch.from_numpy(np.asarray(deformation)[f]).to(g.means)      # fancy index: a copy
    pos = torch.from_numpy(np.asarray(positions)[f]).to(g.means) + \
        (F @ (g.means - x0)[..., None])[..., 0]
    return pos, F


def orbit_views(scene: PlyScene, n_frames: int, width: int, height: int,
                orbit_deg: float = 60.0, elevation_deg: float = 20.0,
                fov_deg: float = 40.0) -> list[Camera]:
    """One camera per frame on a circle around the object's initial centre, sweeping
    ``orbit_deg`` degrees of azimuth over the video (0: a fixed view), far enough that the
    object's bounding sphere fits the field of view."""
    m = scene.gaussians.means.double()
    lo, hi = m.min(0).values, m.max(0).values
    centre = ((lo + hi) / 2).numpy()
    radius = float((hi - lo).norm()) / 2 / math.sin(math.radians(fov_deg) / 2) * 1.15
    cams = []
    for k in range(n_frames):
        az = math.radians(orbit_deg * k / max(n_frames - 1, 1))
        el = math.radians(elevation_deg)
        eye = centre + radius * np.array([math.cos(el) * math.sin(az), math.sin(el),
                                          math.cos(el) * math.cos(az)])
        cams.append(Camera.look_at(eye, centre, fov_deg, width, height))
    return cams


def render_scene(scene: PlyScene, positions: np.ndarray, deformation: np.ndarray,
                 cameras: Sequence[Camera], background=None, backend: str = "auto"
                 ) -> np.ndarray:
    """(F, H, W, 3) uint8: frame f of the simulated particles ``positions`` (F, M, 3) and
    ``deformation`` (F, M, 3, 3) seen by ``cameras[f]`` (or ``cameras[0]`` for every frame
    when one is given)."""
    from physgm.render import render_video

    frames = []
    for f in range(positions.shape[0]):
        pos, F = gaussians_at(scene, positions[f], deformation[f])
        cam = cameras[f] if len(cameras) > 1 else cameras[0]
        frames.append(render_video(scene.gaussians, pos[None], F[None], cam,
                                   background=background, backend=backend)[0])
    return np.stack(frames)
