"""Forward-only 3DGS rasterizer in warp (CPU and CUDA): the torch backend's image, faster.

Same conventions as ``torch_backend`` (EWA projection by ``project_gaussians`` in torch,
α_i = min(0.99, o_i·exp(−½ dᵢᵀΣ'ᵢ⁻¹dᵢ)), α < 1/255 skipped, a pixel stops before its
transmittance would fall to 1e-4, front to back by camera z with a stable sort, colour
Σ w_i c_i + T·background, alpha 1 − T, expected depth Σ w_i z_i / alpha). No gradients.

Work split: torch projects, drops invalid Gaussians, sorts them by depth and bins them into
8 × 8-pixel tiles (vectorised: ``bin_frames``), packing each (tile, Gaussian) pair's 2D
mean, conic and opacity contiguously; one warp kernel launched over (tiles × tile rows)
then walks each tile's list front to back for the 8 pixels of a row, with early
termination (``draw``). A video's F frames are binned together (global tile = frame ·
tiles + tile) and drawn by one launch, so the per-op and per-launch overheads are paid once
per video (measured ~2× faster than a launch per frame at 64² and 96²).

Thread safety: a CPU graph capture in physgm.sim records warp operations from every
thread, so arrays are wrapped and the kernel launched under ``physgm.sim.stepper.WARP_LOCK``
(held only for the launch). One launch runs on one CPU thread: splitting the tiles between
2 concurrent launches measured no faster on a shared 2-core machine (0.6–1.0×), so it is
not done; parallel renders come from parallel actors/workers.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from physgm.render.projection import ALPHA_MIN, project_gaussians, tile_boxes
from physgm.render.torch_backend import ALPHA_MAX, T_MIN
from physgm.sim.stepper import WARP_LOCK  # importing physgm.sim initialises warp quietly

import warp as wp  # noqa: E402  (after physgm.sim: no banner)

_ALPHA_MIN = wp.constant(ALPHA_MIN)
_ALPHA_MAX = wp.constant(ALPHA_MAX)
_T_MIN = wp.constant(T_MIN)
# exp is only evaluated where α can reach 1/255: power ≤ ln(255·o) + this margin (far above
# float rounding), so the cut-off decision itself is still the exact one, o·exp(−power) < 1/255
SKIP_MARGIN = 1e-3
# tile edge [px], also the pixels one kernel thread draws (a tile row): 8 measured fastest on
# CPU at 64²/96² (shorter lists per pixel than 16, less binning than 4; rows of 8 pixels
# sharing the loads 1.5× faster than one pixel per thread); the image does not depend on it
TILE_SIZE = wp.constant(8)
_RowVec = wp.types.vector(length=8, dtype=float)
_RowMat = wp.types.matrix(shape=(8, 4), dtype=float)

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
            tiles_x: int, n_tiles: int, width: int, height: int, bg: wp.vec3,
            rgb: wp.array(dtype=wp.vec3), alpha: wp.array(dtype=float),
            depth: wp.array(dtype=float)):
    """One thread per tile row (TILE_SIZE pixels) of every global tile (frame · n_tiles +
    tile); writes rgb/alpha/depth at frame · H·W + y · W + x. The row's pixels share each pair's loads and
    a Gaussian is skipped for the whole row when it reaches none of them."""
    tid = wp.tid()
    gt = tid // TILE_SIZE
    frame = gt // n_tiles
    tile = gt % n_tiles
    x0 = (tile % tiles_x) * TILE_SIZE
    y = (tile // tiles_x) * TILE_SIZE + tid % TILE_SIZE
    if y >= height:
        return
    py = float(y) + 0.5
    T = _RowVec(1.0)
    live = _RowVec(1.0)              # 0 once a pixel is done (transmittance would reach T_MIN)
    n_live = int(TILE_SIZE)
    power = _RowVec(0.0)
    acc = _RowMat(0.0)               # per pixel Σ w_i (r, g, b, z)
    for k in range(tile_start[gt], tile_start[gt + 1]):
        m = pairs[2 * k]             # u, v, ½a, b
        q = pairs[2 * k + 1]         # ½c, skip power, opacity, -
        dy = py - m[1]
        b_dy = m[3] * dy
        c_dy = q[0] * dy * dy
        nearest = float(1e30)
        for j in range(TILE_SIZE):
            dx = float(x0 + j) + 0.5 - m[0]
            pj = dx * (m[2] * dx + b_dy) + c_dy                # ½ dᵀΣ'⁻¹d, as torch
            power[j] = pj
            if live[j] > 0.0:
                nearest = wp.min(nearest, pj)
        if nearest > q[1]:
            continue
        f = feat[gid[k]]
        for j in range(TILE_SIZE):
            if live[j] > 0.0 and power[j] <= q[1]:
                raw = q[2] * wp.exp(-power[j])
                if raw >= _ALPHA_MIN:
                    a = wp.min(raw, _ALPHA_MAX)
                    next_T = T[j] * (1.0 - a)
                    if next_T <= _T_MIN:
                        live[j] = 0.0
                        n_live -= 1
                    else:
                        acc[j] = acc[j] + f * (a * T[j])
                        T[j] = next_T
        if n_live == 0:
            break
    for j in range(TILE_SIZE):
        x = x0 + j
        if x < width:
            out = frame * width * height + y * width + x
            r = acc[j]
            rgb[out] = wp.vec3(r[0], r[1], r[2]) + T[j] * bg
            a_out = 1.0 - T[j]
            alpha[out] = a_out
            depth[out] = r[3] / wp.max(a_out, 1e-10)


def bin_frames(means: torch.Tensor, covs: torch.Tensor, opacities: torch.Tensor,
               colors: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor, width: int,
               height: int, keep: Optional[torch.Tensor] = None) -> Binned:
    """Project F frames of N Gaussians, sort each frame front to back (stable) and bin them.

    means (F, N, 3) [m], covs (F, N, 3, 3) [m²], opacities (N,), colors (N, 3), K (3, 3),
    w2c (4, 4); keep (F, N) bool or None: rows to draw (others, e.g. non-finite, are left
    out). Pure torch (no grad); the Gaussian lists equal ``torch_backend``'s per frame."""
    n_frames, n = means.shape[:2]
    ts = int(TILE_SIZE)
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
        x0, y0, nx, counts = tile_boxes(m2d, radii, ts, tiles_x, tiles_y)
        dev = m2d.device
        base = (order // n) * n_tiles + y0 * tiles_x + x0              # first global tile
        start = torch.cumsum(counts, 0) - counts
        g = torch.repeat_interleave(torch.arange(len(order), device=dev), counts)
        per_pair = torch.index_select(torch.stack([base, nx, start], 1), 0, g)
        local = torch.arange(len(g), device=dev) - per_pair[:, 2]
        tile = per_pair[:, 0] + (local // per_pair[:, 1]) * tiles_x + local % per_pair[:, 1]
        tile, perm = torch.sort(tile.to(torch.int32), stable=True)     # then depth order
        per_tile = torch.bincount(tile, minlength=n_frames * n_tiles)
        tile_start = torch.zeros(n_frames * n_tiles + 1, dtype=torch.int32, device=dev)
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


def draw(binned: Binned, n_frames: int, width: int, height: int,
         background: Optional[torch.Tensor] = None):
    """Composite binned Gaussians in one launch: rgb (F, H, W, 3), alpha (F, H, W),
    depth (F, H, W) [m], float32 on the binned tensors' device; background (3,) or None
    (black)."""
    tiles_x, tiles_y = math.ceil(width / TILE_SIZE), math.ceil(height / TILE_SIZE)
    dev = binned.feat.device
    rgb = torch.empty(n_frames, height, width, 3, dtype=torch.float32, device=dev)
    alpha = torch.empty(n_frames, height, width, dtype=torch.float32, device=dev)
    depth = torch.empty_like(alpha)
    bg = wp.vec3(0.0, 0.0, 0.0) if background is None else wp.vec3(*background.tolist())
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)         # the inputs are written on torch's stream

    def wrap(t: torch.Tensor, dtype):
        return wp.from_torch(t, dtype=dtype, requires_grad=False)

    with WARP_LOCK:                         # no sim graph capture may record this launch
        wdev = wp.device_from_torch(dev)
        wp.launch(_raster, dim=n_frames * tiles_x * tiles_y * TILE_SIZE, device=wdev,
                  inputs=[wrap(binned.pairs, wp.vec4), wrap(binned.gid, wp.int32),
                          wrap(binned.feat, wp.vec4), wrap(binned.tile_start, wp.int32),
                          tiles_x, tiles_x * tiles_y, width, height, bg],
                  outputs=[wrap(rgb.view(-1, 3), wp.vec3), wrap(alpha.view(-1), wp.float32),
                           wrap(depth.view(-1), wp.float32)])
        if dev.type == "cuda":
            wp.synchronize_device(wdev)
    return rgb, alpha, depth


def rasterize_warp(means, covs, opacities, colors, K, w2c, width: int, height: int,
                   background: Optional[torch.Tensor] = None):
    """One image; same inputs and outputs as ``torch_backend.rasterize_dense`` (outputs in
    the means' dtype), without gradients."""
    binned = bin_frames(means[None], covs[None], opacities, colors, K, w2c, width, height)
    rgb, alpha, depth = draw(binned, 1, width, height, background)
    return rgb[0].to(means.dtype), alpha[0].to(means.dtype), depth[0].to(means.dtype)


def rasterize_warp_frames(means, covs, opacities, colors, K, w2c, width: int, height: int,
                          background: Optional[torch.Tensor] = None,
                          keep: Optional[torch.Tensor] = None):
    """F frames in one launch: means (F, N, 3), covs (F, N, 3, 3), keep (F, N) bool or None;
    rest as ``rasterize_warp``. Returns rgb (F, H, W, 3), alpha (F, H, W), depth (F, H, W),
    float32."""
    binned = bin_frames(means, covs, opacities, colors, K, w2c, width, height, keep)
    return draw(binned, means.shape[0], width, height, background)
