"""EWA projection of 3D Gaussians to screen-space 2D Gaussians (pure torch math).

Zwicker et al. 2001 / 3DGS (Kerbl et al. 2023): with W the world-to-camera rotation and
J the Jacobian of the perspective projection at the camera-frame mean t,
Σ' = J W Σ Wᵀ Jᵀ + 0.3·I (the 0.3 px² low-pass). Like 3DGS and gsplat, J is evaluated at
t with x/z, y/z clamped to 1.3× the half field of view, so Gaussians far off-screen do not
blow up.

The screen-space support of a Gaussian is where it can reach α ≥ 1/255, i.e. where
dᵀΣ'⁻¹d ≤ 2·ln(255·o) (opacity-aware, ≤ 3.33σ as in gsplat): the tile box covers exactly
that region, so tiling never changes the image.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

NEAR_PLANE = 0.01          # [m] Gaussians with camera z below this are culled
EPS2D = 0.3                # [px²] low-pass added to the 2D covariance diagonal
ALPHA_MIN = 1.0 / 255.0    # contributions below this alpha are skipped


class Projected(NamedTuple):
    """Screen-space Gaussians (all (N, ...) in input order).

    means2d (N, 2) [px] (u right, v down; pixel i's centre at i + 0.5); conics (N, 3) the
    upper triangle (a, b, c) of Σ'⁻¹ [1/px²]; depths (N,) camera z [m]; radii (N, 2) integer
    half-extents of the support box [px] along u and v; valid (N,) bool (in front of the near
    plane, positive-definite Σ', opacity ≥ 1/255, box overlapping the image)."""

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor
    valid: torch.Tensor


def project_gaussians(means: torch.Tensor, covs: torch.Tensor, opacities: torch.Tensor,
                      K: torch.Tensor, w2c: torch.Tensor, width: int, height: int,
                      near_plane: float = NEAR_PLANE, eps2d: float = EPS2D) -> Projected:
    """Project Gaussians (means (N, 3) [m], covs (N, 3, 3) [m²], opacities (N,)) through a
    pinhole camera (K (3, 3) [px], w2c (4, 4)) onto a width × height image."""
    R, tvec = w2c[:3, :3], w2c[:3, 3]
    t = means @ R.T + tvec                                               # (N, 3) camera frame
    fx, fy, cx, cy, skew = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    z = t[:, 2]
    valid = z >= near_plane
    z_safe = torch.where(valid, z, torch.ones_like(z))

    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    tx = z_safe * torch.minimum(torch.maximum(t[:, 0] / z_safe, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(t[:, 1] / z_safe, -lim_y_neg), lim_y_pos)
    zero = torch.zeros_like(z_safe)
    J = torch.stack([fx / z_safe, skew / z_safe, -(fx * tx + skew * ty) / z_safe ** 2,
                     zero, fy / z_safe, -fy * ty / z_safe ** 2], -1).reshape(-1, 2, 3)
    M = J @ R                                                            # (N, 2, 3)
    cov2d = M @ covs @ M.transpose(1, 2)
    a = cov2d[:, 0, 0] + eps2d
    b = 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0])
    c = cov2d[:, 1, 1] + eps2d
    det = a * c - b * b
    valid = valid & (det > 0) & (opacities >= ALPHA_MIN)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], -1)

    u = (fx * t[:, 0] + skew * t[:, 1]) / z_safe + cx
    v = fy * t[:, 1] / z_safe + cy
    means2d = torch.stack([u, v], -1)

    with torch.no_grad():
        extend = torch.sqrt(2.0 * torch.log(opacities.clamp_min(ALPHA_MIN) / ALPHA_MIN))
        extend = extend.clamp(max=3.33)
        rx = torch.ceil(extend * a.clamp_min(0).sqrt())
        ry = torch.ceil(extend * c.clamp_min(0).sqrt())
        on_screen = (u + rx > 0) & (u - rx < width) & (v + ry > 0) & (v - ry < height)
        valid = valid & on_screen & (rx > 0) & (ry > 0) & torch.isfinite(means2d).all(-1)
        radii = torch.stack([rx, ry], -1).long() * valid[:, None]
    return Projected(means2d, conics, z, radii, valid)


def tile_boxes(means2d: torch.Tensor, radii: torch.Tensor, tile: int, tiles_x: int,
               tiles_y: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x0, y0, nx, counts) (N,) long: the first tile column and row each Gaussian's support
    box (``radii`` [px] around ``means2d`` (N, 2) [px]) overlaps, how many columns, and how
    many tiles in all, on a ``tiles_x`` × ``tiles_y`` grid of ``tile``-px tiles."""
    u, v = means2d[:, 0].detach(), means2d[:, 1].detach()
    rx, ry = radii[:, 0].to(u), radii[:, 1].to(u)
    x0 = torch.floor((u - rx) / tile).clamp(0, tiles_x - 1).long()
    x1 = torch.floor((u + rx) / tile).clamp(0, tiles_x - 1).long()
    y0 = torch.floor((v - ry) / tile).clamp(0, tiles_y - 1).long()
    y1 = torch.floor((v + ry) / tile).clamp(0, tiles_y - 1).long()
    nx = x1 - x0 + 1
    return x0, y0, nx, nx * (y1 - y0 + 1)
