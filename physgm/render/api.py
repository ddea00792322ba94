"""The one renderer entry point: ``rasterize`` (one image) and ``render_video`` (a simulated
sequence), dispatching to the gsplat (CUDA), torch (any device, differentiable) or warp
(forward only, CPU/CUDA) backend."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from physgm.camera import Camera
from physgm.gaussians import Gaussians
from physgm.render.gsplat_backend import gsplat_available, rasterize_gsplat
from physgm.render.torch_backend import rasterize_tiled

BACKENDS = ("auto", "torch", "gsplat", "warp")
FRAMES_PER_LAUNCH = 16       # render_video on warp: frames binned and drawn per launch


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


def resolve_backend(backend: str, device: torch.device, differentiable: bool = True) -> str:
    """"auto" → "gsplat" when CUDA, gsplat and CUDA tensors are all there; otherwise "torch"
    when gradients may be needed (``differentiable``) or the tensors are not on the CPU,
    else "warp" (forward only)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown render backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        if device.type == "cuda" and gsplat_available():
            return "gsplat"
        return "warp" if device.type == "cpu" and not differentiable else "torch"
    return backend


def _no_grad_inputs(tensors: Sequence[torch.Tensor]) -> None:
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise RuntimeError('render backend "warp" is forward only, but an input requires grad: '
                           'use backend="torch" (or "auto") for gradients, or render under '
                           "torch.no_grad() / with detached Gaussians")


def _view(camera: Camera, width: Optional[int], height: Optional[int], like: torch.Tensor):
    """(width, height, K, w2c) of ``camera`` at the requested size (intrinsics rescaled, same
    field of view), K and w2c in ``like``'s dtype and device."""
    if not isinstance(camera, Camera):
        raise TypeError(f"camera must be a physgm.camera.Camera, got {type(camera).__name__}")
    width = camera.width if width is None else int(width)
    height = camera.height if height is None else int(height)
    if width <= 0 or height <= 0:
        raise ValueError(f"render size must be positive, got {width}x{height}")
    if (width, height) != (camera.width, camera.height):
        camera = camera.scaled(width, height)
    return width, height, camera.K.to(like), camera.w2c.to(like)


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
            "warp" (forward only: RuntimeError if an input requires grad while grad mode is
            on), or "auto" (gsplat when CUDA is available and the tensors are on it, else
            torch, so gradients flow).
        tile_size: tile edge [px] of the torch and gsplat backends (warp uses its own,
            ``warp_backend.TILE_SIZE``; the image does not depend on the tiling).

    Returns:
        RenderOutput(rgb (H, W, 3), alpha (H, W), depth (H, W)).
    """
    like = gaussians.means
    width, height, K, w2c = _view(camera, width, height, like)
    bg = _background(background, like)
    args = (gaussians.means, gaussians.covariances(), gaussians.opacities, gaussians.colors,
            K, w2c, width, height, bg)
    chosen = resolve_backend(backend, like.device)
    if chosen == "gsplat":
        return RenderOutput(*rasterize_gsplat(*args, tile_size=tile_size))
    if chosen == "warp":
        _no_grad_inputs(args[:4])
        from physgm.render.warp_backend import rasterize_warp
        return RenderOutput(*rasterize_warp(*args))
    return RenderOutput(*rasterize_tiled(*args, tile_size=tile_size))


def _frames(x, name: str, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x) if torch.is_tensor(x) else torch.from_numpy(np.asarray(x))
    if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != tuple(shape):
        raise ValueError(f"render_video {name} must be (F, {', '.join(map(str, shape))}), got "
                         f"{tuple(t.shape)}; pass the simulation rows of the Gaussians' "
                         "particles (the first N rows of fill_particles output)")
    return t.to(like)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    x = torch.nan_to_num(x, nan=0.0).clamp(0.0, 1.0)
    return (x * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def render_video(gaussians: Gaussians, positions: Union[np.ndarray, torch.Tensor],
                 deformation: Union[np.ndarray, torch.Tensor, None], camera: Camera,
                 width: Optional[int] = None, height: Optional[int] = None, background=None,
                 backend: str = "auto", progress: bool = False, tile_size: int = 16,
                 with_alpha: bool = False, frames_per_launch: int = FRAMES_PER_LAUNCH):
    """Render a simulated sequence: frame f shows Gaussian i at ``positions[f, i]`` with
    covariance F Σ Fᵀ (F = ``deformation[f, i]``; None keeps Σ). Always without gradients.

    Args:
        positions: (F, N, 3) [m], N = len(gaussians) (Gaussian i follows particle i).
        deformation: (F, N, 3, 3) deformation gradients, or None.
        backend: as in ``rasterize``, except that "auto" picks "warp" for CPU tensors (no
            gradients are needed here); gsplat stays the choice on CUDA when available.
        with_alpha: also return the alpha (F, H, W) uint8.
        frames_per_launch: frames the warp backend bins and draws together in one launch.
        Other arguments as in ``rasterize``.

    Returns (F, H, W, 3) uint8 (and the (F, H, W) uint8 alpha with ``with_alpha``). A
    Gaussian whose position or deformation is NaN/Inf in a frame (or whose deformed
    covariance overflows) is left out of that frame.
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
        if resolve_backend(backend, like.device, differentiable=False) == "warp":
            rgb, alpha = _video_warp(g0, pos, defo, camera, width, height, background,
                                     progress, frames_per_launch)
            return (rgb, alpha) if with_alpha else rgb
        rgb, alpha = [], []
        for f in tqdm(range(pos.shape[0]), desc="render", disable=not progress):
            ok = torch.isfinite(pos[f]).all(-1)
            if defo is not None:
                ok &= torch.isfinite(defo[f]).all(-1).all(-1)
            g = g0.subset(ok).deform(pos[f][ok], None if defo is None else defo[f][ok])
            g = g.subset(torch.isfinite(g.covs).all(-1).all(-1))
            out = rasterize(g, camera, width, height, background, backend, tile_size)
            rgb.append(_to_uint8(out.rgb))
            alpha.append(_to_uint8(out.alpha))
        return (np.stack(rgb), np.stack(alpha)) if with_alpha else np.stack(rgb)


def _video_warp(g0: Gaussians, pos: torch.Tensor, defo: Optional[torch.Tensor],
                camera: Camera, width, height, background, progress: bool,
                frames_per_launch: int) -> tuple[np.ndarray, np.ndarray]:
    """render_video on the warp backend: frames_per_launch frames per kernel launch.
    pos (F, N, 3), defo (F, N, 3, 3) or None. Returns rgb (F, H, W, 3), alpha (F, H, W) uint8."""
    from physgm.render.warp_backend import rasterize_warp_frames

    width, height, K, w2c = _view(camera, width, height, pos)
    bg = _background(background, pos)
    cov0 = g0.covariances()
    step = max(1, int(frames_per_launch))
    rgb, alpha = [], []
    for f0 in tqdm(range(0, pos.shape[0], step), desc="render", disable=not progress):
        p = pos[f0:f0 + step]
        keep = torch.isfinite(p).all(-1)
        if defo is None:
            covs = cov0.expand(p.shape[0], *cov0.shape)
        else:
            d = defo[f0:f0 + step]
            keep &= torch.isfinite(d).all(-1).all(-1)
            covs = d @ cov0 @ d.transpose(-1, -2)
        keep &= torch.isfinite(covs).all(-1).all(-1)
        out = rasterize_warp_frames(p, covs, g0.opacities, g0.colors, K, w2c, width, height,
                                    bg, keep=keep)
        rgb.append(_to_uint8(out[0]))
        alpha.append(_to_uint8(out[1]))
    return np.concatenate(rgb), np.concatenate(alpha)
