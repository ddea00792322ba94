"""The one renderer entry point: ``rasterize`` (one image) and ``render_video`` (a simulated
sequence), dispatching to the gsplat (CUDA) or torch (CPU) backend."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from physgm.camera import Camera
from physgm.gaussians import Gaussians
from physgm.render.gsplat_backend import gsplat_available, rasterize_gsplat
from physgm.render.torch_backend import rasterize_tiled

BACKENDS = ("auto", "torch", "gsplat")


class RenderOutput(NamedTuple):
    """rgb (H, W, 3) in [0, 1] (background where alpha < 1); alpha (H, W) in [0, 1];
    depth (H, W) [m]: expected camera-frame z of the drawn Gaussians, Σ w_i z_i / alpha
    (gsplat's "ED"; 0 where alpha = 0)."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


def _background(background, like: torch.Tensor) -> Optional[torch.Tensor]:
    if background is None:
        return None
    bg = torch.as_tensor(background if torch.is_tensor(background) else np.asarray(background,
                                                                                 dtype=np.float64))
    if bg.numel() != 3 or not bool(torch.isfinite(bg).all()):
        raise ValueError(f"background must be 3 finite RGB values in [0, 1], got {background!r}")
    return bg.reshape(3).to(like)


def resolve_backend(backend: str, device: torch.device) -> str:
    """"auto" → "gsplat" when CUDA, gsplat and CUDA tensors are all there, else "torch"."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "gsplat" if device.type == "cuda" and gsplat_available() else "torch"
    return backend


def rasterize(gaussians: Gaussians, camera: Camera, width: Optional[int] = None,
              height: Optional[int] = None, background=None, backend: str = "auto",
              tile_size: int = 16) -> RenderOutput:
    """Render Gaussians seen by ``camera`` into a ``width`` × ``height`` image.

    Args:
        gaussians: N Gaussians (activated values; ``covs`` used when set). Their device and
            dtype set the output's; gradients flow to means, scales, quats, opacities, colors.
        camera: pinhole camera. If (width, height) differ from the camera's size, its
            intrinsics are rescaled to the requested size (same field of view).
        width, height: image size [px]; None takes the camera's.
        background: RGB (3,) in [0, 1] shown where alpha < 1; None is black.
        backend: "torch" (tiled, any device), "gsplat" (CUDA only; RuntimeError otherwise),
            or "auto" (gsplat when CUDA is available and the tensors are on it).
        tile_size: tile edge [px] of either backend.

    Returns:
        RenderOutput(rgb (H, W, 3), alpha (H, W), depth (H, W)).
    """
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a physgm.camera.Camera, got {type(camera).__name__}")
    width = camera.width if width is None else int(width)
    height = camera.height if height is None else int(height)
    if width <= 0 or height <= 0:
        raise ValueError(f"render size must be positive, got {width}x{height}")
    if (width, height) != (camera.width, camera.height):
        camera = camera.scaled(width, height)
    like = gaussians.means
    K = camera.K.to(like)
    w2c = camera.w2c.to(like)
    bg = _background(background, like)
    args = (gaussians.means, gaussians.covariances(), gaussians.opacities, gaussians.colors,
            K, w2c, width, height, bg)
    if resolve_backend(backend, like.device) == "gsplat":
        return RenderOutput(*rasterize_gsplat(*args, tile_size=tile_size))
    return RenderOutput(*rasterize_tiled(*args, tile_size=tile_size))


def _frames(x, name: str, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x) if torch.is_tensor(x) else torch.from_numpy(np.asarray(x))
    if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != tuple(shape):
        raise ValueError(f"render_video {name} must be (F, {', '.join(map(str, shape))}), got "
                         f"{tuple(t.shape)}; pass the simulation rows of the Gaussians' "
                         "particles (the first N rows of fill_particles output)")
    return t.to(like)


def render_video(gaussians: Gaussians, positions: Union[np.ndarray, torch.Tensor],
                 deformation: Union[np.ndarray, torch.Tensor, None], camera: Camera,
                 width: Optional[int] = None, height: Optional[int] = None, background=None,
                 backend: str = "auto", progress: bool = False,
                 tile_size: int = 16) -> np.ndarray:
    """Render a simulated sequence: frame f shows Gaussian i at ``positions[f, i]`` with
    covariance F Σ Fᵀ (F = ``deformation[f, i]``; None keeps Σ).

    Args:
        positions: (F, N, 3) [m], N = len(gaussians) (Gaussian i follows particle i).
        deformation: (F, N, 3, 3) deformation gradients, or None.
        Other arguments as in ``rasterize``.

    Returns (F, H, W, 3) uint8. A Gaussian whose position or deformation is NaN/Inf in a
    frame (or whose deformed covariance overflows) is left out of that frame.
    """
    with torch.no_grad():
        g0 = gaussians.detach()
        like = g0.means
        pos = _frames(positions, "positions", (len(g0), 3), like)
        defo = None if deformation is None else _frames(deformation, "deformation",
                                                        (len(g0), 3, 3), like)
        if defo is not None and defo.shape[0] != pos.shape[0]:
            raise ValueError(f"render_video: {pos.shape[0]} position frames but "
                             f"{defo.shape[0]} deformation frames")
        if pos.shape[0] == 0:
            raise ValueError("render_video needs at least one frame")
        out = []
        for f in tqdm(range(pos.shape[0]), desc="render", disable=not progress):
            ok = torch.isfinite(pos[f]).all(-1)
            if defo is not None:
                ok &= torch.isfinite(defo[f]).all(-1).all(-1)
            g = g0.subset(ok).deform(pos[f][ok], None if defo is None else defo[f][ok])
            g = g.subset(torch.isfinite(g.covs).all(-1).all(-1))
            rgb = rasterize(g, camera, width, height, background, backend, tile_size).rgb
            rgb = torch.nan_to_num(rgb, nan=0.0).clamp(0.0, 1.0)
            out.append((rgb * 255.0 + 0.5).to(torch.uint8).cpu().numpy())
        return np.stack(out)
