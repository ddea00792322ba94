"""CUDA backend: gsplat's fused rasterizer with the torch backend's conventions.

gsplat is imported lazily here (it JIT-compiles CUDA kernels on first use and has no CPU
path). Same camera and depth conventions as the torch backend: OpenCV pinhole camera,
near plane 0.01 m, 0.3 px² low-pass ("classic" mode), colours as activated RGB (no SH),
render mode "RGB+ED" (depth Σ w_i z_i / alpha). gsplat clamps α at 0.999 where the torch
backend uses 3DGS's 0.99, so the two differ slightly at the centres of opaque Gaussians.
"""
from __future__ import annotations

from typing import Optional

import torch

from physgm.render.projection import EPS2D, NEAR_PLANE


def gsplat_available() -> bool:
    """True when CUDA is usable and the gsplat package is importable."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def rasterize_gsplat(means, covs, opacities, colors, K, w2c, width: int, height: int,
                     background: Optional[torch.Tensor] = None, tile_size: int = 16):
    """Render with ``gsplat.rasterization``.

    means (N, 3) [m], covs (N, 3, 3) [m²], opacities (N,), colors (N, 3), K (3, 3), w2c (4, 4)
    (world→camera), background (3,) or None (black). Inputs on the CPU are moved to the
    GPU and the outputs moved back. Returns rgb (H, W, 3), alpha (H, W), depth (H, W) [m].

    Raises RuntimeError without CUDA or without gsplat (use backend="torch" there)."""
    if not torch.cuda.is_available():
        raise RuntimeError('backend="gsplat" needs a CUDA GPU and none is available; '
                           'use backend="torch" (or "auto") on this machine')
    try:
        import gsplat
    except ImportError as err:
        raise RuntimeError(f'backend="gsplat" needs the gsplat package ({err}); install '
                           'gsplat or use backend="torch"') from None

    out_device, out_dtype = means.device, means.dtype
    dev = means.device if means.device.type == "cuda" else torch.device("cuda")

    def gpu(x: torch.Tensor) -> torch.Tensor:
        return x.to(device=dev, dtype=torch.float32).contiguous()

    bg = None if background is None else gpu(background).reshape(1, 3)
    renders, alphas, _ = gsplat.rasterization(
        gpu(means), None, None, gpu(opacities), gpu(colors),  # quats/scales: covars wins
        gpu(w2c)[None], gpu(K)[None], int(width), int(height),
        near_plane=NEAR_PLANE, eps2d=EPS2D, sh_degree=None, packed=False,
        tile_size=int(tile_size), backgrounds=bg, render_mode="RGB+ED",
        rasterize_mode="classic", covars=gpu(0.5 * (covs + covs.transpose(1, 2))),
    )
    rgb = renders[0, ..., :3]
    depth = renders[0, ..., 3]
    alpha = alphas[0, ..., 0]
    return tuple(x.to(device=out_device, dtype=out_dtype) for x in (rgb, alpha, depth))
