"""Forward-only 3DGS rasterizer in warp (CPU and CUDA): the torch backend's image, faster.

Same conventions as ``torch_backend`` (EWA projection by ``project_gaussians`` in torch,
α_i = min(0.99, o_i·exp(−½ dᵢᵀΣ'ᵢ⁻¹dᵢ)), α < 1/255 skipped, a pixel stops before its
transmittance would fall to 1e-4, front to back by camera z with a stable sort, colour
Σ w_i c_i + T·background, alpha 1 − T, expected depth Σ w_i z_i / alpha). No gradients.

Work split: torch projects, drops invalid Gaussians, sorts them by depth and bins them into
tiles (vectorised: ``bin_frames``), packing each (tile, Gaussian) pair's 2D conic and
opacity contiguously; one warp kernel launched over (tiles × tile pixels) then walks each
pixel's tile list front to back with early termination (``draw``). A video's F frames are binned together (global tile = frame · tiles + tile)
and drawn by one launch, so the per-launch and per-op overheads are paid once per video.

Thread safety: a CPU graph capture in physgm.sim records warp operations from every
thread, so arrays are wrapped and kernels launched under ``physgm.sim.stepper.WARP_LOCK``
(held only for the launch). With ``threads`` > 1 the calling thread holds the lock while
its helper threads launch their share of the tiles: no capture can open meanwhile.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Optional

import torch

from physgm.render.projection import ALPHA_MIN, project_gaussians
from physgm.render.torch_backend import ALPHA_MAX, T_MIN
from physgm.sim.stepper import WARP_LOCK  # importing physgm.sim initialises warp quietly

import warp as wp  # noqa: E402  (after physgm.sim: no banner)

_ALPHA_MIN = wp.constant(ALPHA_MIN)
_ALPHA_MAX = wp.constant(ALPHA_MAX)
_T_MIN = wp.constant(T_MIN)
# exp is only evaluated where α can reach 1/255: power ≤ ln(255·o) + this margin (far above
# float rounding), so the cut-off decision itself is still the exact one, o·exp(−power) < 1/255
SKIP_MARGIN = 1e-3
# tile edge [px]: 8 measured fastest on CPU at 64²/96² (shorter lists per pixel than 16, less
# binning than 4); the image does not depend on it
TILE_SIZE = 8

wp.set_module_options({"enable_backward": False})


class Binned(NamedTuple):
    """Depth-sorted, tile-binned Gaussians of F frames (M drawn Gaussians of all frames,
    L (tile, Gaussian) pairs), float32 / int32.

    pairs (2L, 4): for pair k, row 2k = (u, v [px], ½a, b) and row 2k + 1 = (½c, s, o, 0),
    with (a, b, c) the upper triangle of Σ'⁻¹ [1/px²], o the opacity and s = ln(255·o) +
    margin the power beyond which α < 1/255 for sure (exp is skipped there; the exact test
    decides the rest). Pairs run tile by tile, front to back within a tile (stable).
    gid (L,) the pair's Gaussian (row of feat); feat (M, 4) rgb and camera z [m];
    tile_start (F·tiles + 1,) offsets of each global tile (frame · tiles + tile) in the pairs."""

    pairs: torch.Tensor
    gid: torch.Tensor
    feat: torch.Tensor
    tile_start: torch.Tensor


@wp.kernel
def _raster(pairs: wp.array(dtype=wp.vec4), gid: wp.array(dtype=int),
            feat: wp.array(dtype=wp.vec4), tile_start: wp.array(dtype=int),
            tiles_x: int, n_tiles: int, n_gtiles: int, ts: int, width: int, height: int,
            tile_offset: int, tile_stride: int, bg: wp.vec3,
            rgb: wp.array(dtype=wp.vec3), alpha: wp.array(dtype=float),
            depth: wp.array(dtype=float)):
    """One thread per pixel of tiles tile_offset, tile_offset + tile_stride, ... (global
    tile = frame · n_tiles + tile); writes rgb/alpha/depth at frame · H·W + y · W + x."""
    tid = wp.tid()
    P = ts * ts
    gt = (tid // P) * tile_stride + tile_offset
    if gt >= n_gtiles:
        return
    local = tid % P
    frame = gt // n_tiles
    tile = gt % n_tiles
    x = (tile % tiles_x) * ts + local % ts
    y = (tile // tiles_x) * ts + local // ts
    if x >= width or y >= height:
        return
    px = float(x) + 0.5
    py = float(y) + 0.5
    T = float(1.0)
    acc = wp.vec4(0.0, 0.0, 0.0, 0.0)
    for k in range(tile_start[gt], tile_start[gt + 1]):
        m = pairs[2 * k]
        dx = px - m[0]
        dy = py - m[1]
        q = pairs[2 * k + 1]
        power = dx * (m[2] * dx + m[3] * dy) + q[0] * dy * dy        # ½ dᵀΣ'⁻¹d, as torch
        if power > q[1]:
            continue
        raw = q[2] * wp.exp(-power)
        if raw < _ALPHA_MIN:
            continue
        a = wp.min(raw, _ALPHA_MAX)
        next_T = T * (1.0 - a)
        if next_T <= _T_MIN:
            break
        acc = acc + feat[gid[k]] * (a * T)
        T = next_T
    out = frame * width * height + y * width + x
    rgb[out] = wp.vec3(acc[0], acc[1], acc[2]) + T * bg
    a_out = 1.0 - T
    alpha[out] = a_out
    depth[out] = acc[3] / wp.max(a_out, 1e-10)


def bin_frames(means: torch.Tensor, covs: torch.Tensor, opacities: torch.Tensor,
               colors: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor, width: int,
               height: int, tile_size: int = TILE_SIZE, keep: Optional[torch.Tensor] = None) -> Binned:
    """Project F frames of N Gaussians, sort each frame front to back (stable) and bin them.

    means (F, N, 3) [m], covs (F, N, 3, 3) [m²], opacities (N,), colors (N, 3), K (3, 3),
    w2c (4, 4); keep (F, N) bool or None: rows to draw (others, e.g. non-finite, are left
    out). Pure torch (no grad); the Gaussian lists equal ``torch_backend``'s per frame."""
    n_frames, n = means.shape[:2]
    ts = int(tile_size)
    tiles_x, tiles_y = math.ceil(width / ts), math.ceil(height / ts)
    n_tiles = tiles_x * tiles_y
    with torch.no_grad():
        means, covs = means.reshape(-1, 3), covs.reshape(-1, 3, 3)
        if keep is not None:
            keep = keep.reshape(-1)
            means = torch.where(keep[:, None], means, torch.zeros_like(means))
            covs = torch.where(keep[:, None, None], covs, torch.eye(3).to(covs))
        opac_all = opacities.repeat(n_frames)
        proj = project_gaussians(means, covs, opac_all, K, w2c, width, height)
        valid = proj.valid if keep is None else proj.valid & keep
        idx = torch.nonzero(valid).squeeze(1)
        # one stable sort by depth over all frames: within a frame (one tile list) the order
        # and its ties are exactly those of a per-frame stable sort
        z = proj.depths[idx]
        # positive floats sort like their bit patterns as ints (z ≥ the near plane > 0); an
        # integer sort is 2× faster than a float one on the CPU
        key = z.view(torch.int32 if z.dtype == torch.float32 else torch.int64)
        order = torch.index_select(idx, 0, torch.sort(key, stable=True)[1])
        m2d = torch.index_select(proj.means2d, 0, order)
        radii = torch.index_select(proj.radii, 0, order)
        u, v = m2d[:, 0], m2d[:, 1]
        rx, ry = radii[:, 0].to(u), radii[:, 1].to(u)
        x0 = torch.floor((u - rx) / ts).clamp(0, tiles_x - 1).long()
        x1 = torch.floor((u + rx) / ts).clamp(0, tiles_x - 1).long()
        y0 = torch.floor((v - ry) / ts).clamp(0, tiles_y - 1).long()
        y1 = torch.floor((v + ry) / ts).clamp(0, tiles_y - 1).long()
        nx = x1 - x0 + 1
        counts = nx * (y1 - y0 + 1)
        base = (order // n) * n_tiles + y0 * tiles_x + x0              # first global tile
        start = torch.cumsum(counts, 0) - counts
        g = torch.repeat_interleave(torch.arange(len(order), device=u.device), counts)
        per_pair = torch.index_select(torch.stack([base, nx, start], 1), 0, g)
        local = torch.arange(len(g), device=u.device) - per_pair[:, 2]
        tile = per_pair[:, 0] + (local // per_pair[:, 1]) * tiles_x + local % per_pair[:, 1]
        tile, perm = torch.sort(tile.to(torch.int32), stable=True)     # then depth order
        per_tile = torch.bincount(tile, minlength=n_frames * n_tiles)
        tile_start = torch.zeros(n_frames * n_tiles + 1, dtype=torch.int32, device=u.device)
        tile_start[1:] = torch.cumsum(per_tile, 0)
        f32 = torch.float32
        gid = torch.index_select(g, 0, perm)
        conic = torch.index_select(proj.conics, 0, order).to(f32)
        o = torch.index_select(opac_all, 0, order).to(f32)
        skip = torch.log(o.clamp_min(ALPHA_MIN) / ALPHA_MIN) + SKIP_MARGIN
        per_g = torch.stack([m2d[:, 0].to(f32), m2d[:, 1].to(f32), 0.5 * conic[:, 0],
                             conic[:, 1], 0.5 * conic[:, 2], skip, o, torch.zeros_like(o)], 1)
        feat = torch.cat([torch.index_select(colors, 0, order % n),
                          torch.index_select(proj.depths, 0, order)[:, None]], 1).to(f32)
        return Binned(torch.index_select(per_g, 0, gid).reshape(-1, 4), gid.to(torch.int32),
                      feat.contiguous(), tile_start)


_POOL: Optional[ThreadPoolExecutor] = None


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL._max_workers < threads - 1:
        _POOL = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="warp-render")
    return _POOL


def draw(binned: Binned, n_frames: int, width: int, height: int,
         background: Optional[torch.Tensor] = None, tile_size: int = TILE_SIZE, threads: int = 1):
    """Composite binned Gaussians: rgb (F, H, W, 3), alpha (F, H, W), depth (F, H, W) [m],
    float32 on the binned tensors' device. ``threads`` > 1 (CPU) splits the tiles between
    that many concurrent launches (tile t goes to launch t mod threads)."""
    ts = int(tile_size)
    tiles_x, tiles_y = math.ceil(width / ts), math.ceil(height / ts)
    n_gtiles = n_frames * tiles_x * tiles_y
    dev = binned.feat.device
    rgb = torch.empty(n_frames, height, width, 3, dtype=torch.float32, device=dev)
    alpha = torch.empty(n_frames, height, width, dtype=torch.float32, device=dev)
    depth = torch.empty_like(alpha)
    bg = (0.0, 0.0, 0.0) if background is None else [float(b) for b in background.cpu()]
    threads = max(1, min(int(threads), n_gtiles)) if dev.type == "cpu" else 1
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)         # the inputs are written by torch's stream
    with WARP_LOCK:
        wdev = wp.device_from_torch(dev)

        def wrap(t: torch.Tensor, dtype):
            return wp.from_torch(t, dtype=dtype, requires_grad=False)

        arrays = [wrap(binned.pairs, wp.vec4), wrap(binned.gid, wp.int32),
                  wrap(binned.feat, wp.vec4), wrap(binned.tile_start, wp.int32)]
        outs = [wrap(rgb.view(-1, 3), wp.vec3), wrap(alpha.view(-1), wp.float32),
                wrap(depth.view(-1), wp.float32)]

        def launch(offset: int) -> None:
            dim = math.ceil((n_gtiles - offset) / threads) * ts * ts
            wp.launch(_raster, dim=dim, device=wdev,
                      inputs=[*arrays, tiles_x, tiles_x * tiles_y, n_gtiles, ts, width, height,
                              offset, threads, wp.vec3(*bg)], outputs=outs)

        if threads == 1:
            launch(0)
        else:
            wp.load_module(_raster.module, device=wdev)      # compile once, on this thread
            futures = [_pool(threads).submit(launch, t) for t in range(1, threads)]
            launch(0)
            for fut in futures:
                fut.result()
        if dev.type == "cuda":
            wp.synchronize_device(wdev)
    return rgb, alpha, depth


def rasterize_warp(means, covs, opacities, colors, K, w2c, width: int, height: int,
                   background: Optional[torch.Tensor] = None, tile_size: int = TILE_SIZE,
                   threads: int = 1):
    """One image; same inputs and outputs as ``torch_backend.rasterize_dense`` (outputs in
    the means' dtype), without gradients."""
    binned = bin_frames(means[None], covs[None], opacities, colors, K, w2c, width, height,
                        tile_size)
    rgb, alpha, depth = draw(binned, 1, width, height, background, tile_size, threads)
    return rgb[0].to(means.dtype), alpha[0].to(means.dtype), depth[0].to(means.dtype)


def rasterize_warp_frames(means, covs, opacities, colors, K, w2c, width: int, height: int,
                          background: Optional[torch.Tensor] = None, tile_size: int = TILE_SIZE,
                          keep: Optional[torch.Tensor] = None, threads: int = 1):
    """F frames in one launch: means (F, N, 3), covs (F, N, 3, 3), keep (F, N) bool or None;
    rest as ``rasterize_warp``. Returns rgb (F, H, W, 3), alpha (F, H, W), depth (F, H, W),
    float32."""
    binned = bin_frames(means, covs, opacities, colors, K, w2c, width, height, tile_size, keep)
    return draw(binned, means.shape[0], width, height, background, tile_size, threads)
