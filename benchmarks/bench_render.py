"""Benchmark: the warp backend (forward only) beside the torch backend's tiled rasterizer and
its dense reference, per image and per video.

Same scene for all (random anisotropic Gaussians in a ball, seen from an orbit camera);
reports seconds per frame (median of ``repeats`` after one warm-up; torch and warp are timed
in interleaved rounds so load from other processes hits them alike), frames/s, throughput
in Gaussians × pixels per second, speedups, and the largest difference from the torch
image. The video part renders a ``frames``-frame sequence (the ball drifting and shearing)
with ``render_video``: torch frame by frame, warp with all frames in one launch, and warp
one launch per frame. Run as a script it prints one JSON line:

    python benchmarks/bench_render.py [--sizes 64x1000,96x2000] [--repeats 3] [--frames 16]
"""
from __future__ import annotations

import argparse
import json as _json
import platform
import statistics
import time
from typing import Callable, Sequence

import numpy as np
import torch

from physgm.camera import orbit_cameras
from physgm.gaussians import Gaussians
from physgm.render import rasterize_dense, rasterize_tiled, render_video
from physgm.render.warp_backend import rasterize_warp

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((64, 1000), (96, 2000))


def _scene(n: int, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(n, 3, generator=gen)
    radius = 0.4 * torch.rand(n, 1, generator=gen) ** (1 / 3)
    return Gaussians(means=direction / direction.norm(dim=1, keepdim=True) * radius,
                     scales=torch.rand(n, 3, generator=gen) * 0.03 + 0.005,
                     quats=torch.randn(n, 4, generator=gen),
                     opacities=torch.rand(n, generator=gen) * 0.9 + 0.1,
                     colors=torch.rand(n, 3, generator=gen))


def _median_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function over ``repeats`` interleaved rounds (one warm-up)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for k, fn in fns.items():
        fn()                                                 # warm-up (allocator, caches, jit)
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _trajectory(g: Gaussians, frames: int, seed: int = 1):
    """positions (F, N, 3) [m] and deformation gradients (F, N, 3, 3): drift and shear."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0.0, 1.0, frames)[:, None, None]
    pos = g.means[None] + t * torch.tensor([0.1, -0.2, 0.05])
    defo = torch.eye(3) + 0.15 * t[..., None] * torch.randn(frames, len(g), 3, 3, generator=gen)
    return pos, defo


def bench_render(sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, json: bool = True,
                 repeats: int = 3, tile_size: int = 16, frames: int = 16) -> dict:
    """Time warp vs tiled torch vs dense forward rendering (one image) and warp vs torch
    ``render_video`` (``frames`` frames) for each (image edge [px], Gaussians) in ``sizes``.
    Returns a dict (also printed as one JSON line when ``json``)."""
    rows = []
    for px, n in sizes:
        g = _scene(n)
        cam = orbit_cameras(1, radius=1.6, elevation_deg=20.0, fov_deg=45.0, width=px,
                            height=px)[0]
        args = (g.means, g.covariances(), g.opacities, g.colors, cam.K, cam.w2c, px, px)
        pos, defo = _trajectory(g, frames)
        with torch.no_grad():
            tiled = rasterize_tiled(*args, tile_size=tile_size)
            dense = rasterize_dense(*args)
            warp = rasterize_warp(*args)
            diff = max(float((a - b).abs().max()) for a, b in zip(tiled, dense))
            diff_warp = max(float((a - b).abs().max()) for a, b in zip(warp, tiled))
            # the dense reference on its own: its GB-sized temporaries, freed, would make the
            # next function's allocations fault pages back in
            img = _median_times({"dense": lambda: rasterize_dense(*args)}, repeats)
            img.update(_median_times({"tiled": lambda: rasterize_tiled(*args, tile_size=tile_size),
                                      "warp": lambda: rasterize_warp(*args)}, repeats))

            def video(backend: str, **kw):
                return lambda: render_video(g, pos, defo, cam, backend=backend,
                                            tile_size=tile_size, **kw)

            vid = _median_times({"torch": video("torch"), "warp": video("warp"),
                                 "warp_per_frame": video("warp", frames_per_launch=1)},
                                repeats)
            v_diff = int(np.abs(video("warp")().astype(int) - video("torch")()).max())
        work = n * px * px
        rows.append({"image_px": px, "gaussians": n, "coverage": round(float(tiled[1].mean()), 3),
                     "tiled_s": round(img["tiled"], 4), "dense_s": round(img["dense"], 4),
                     "warp_s": round(img["warp"], 4),
                     "tiled_gauss_px_per_s": round(work / img["tiled"]),
                     "dense_gauss_px_per_s": round(work / img["dense"]),
                     "warp_gauss_px_per_s": round(work / img["warp"]),
                     "ratio_tiled_over_dense": round(img["dense"] / img["tiled"], 2),
                     "speedup_warp_over_tiled": round(img["tiled"] / img["warp"], 2),
                     "max_abs_diff": diff, "warp_max_abs_diff": diff_warp,
                     "video": {"frames": frames,
                               **{f"{k}_s": round(v, 4) for k, v in vid.items()},
                               **{f"{k}_fps": round(frames / v, 1) for k, v in vid.items()},
                               "speedup_warp_over_torch": round(vid["torch"] / vid["warp"], 2),
                               "speedup_one_launch_over_per_frame":
                                   round(vid["warp_per_frame"] / vid["warp"], 2),
                               "max_uint8_diff": v_diff}})
    out = {"benchmark": "render", "backends": ["warp", "torch", "dense"], "device": "cpu",
           "threads": torch.get_num_threads(), "machine": platform.machine(),
           "tile_size": tile_size, "repeats": repeats, "results": rows}
    if json:
        print(_json.dumps(out))
    return out


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        raise SystemExit(f"--sizes expects PXxN[,PXxN...] such as 64x1000, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="physgm bench render", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=_parse_sizes, default=list(DEFAULT_SIZES),
                    help="PXxN pairs (image side x Gaussians), comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=16, help="frames of the video part")
    ap.add_argument("--json", action="store_true", help="(always one JSON line)")
    ns = ap.parse_args(argv)
    bench_render(ns.sizes, json=True, repeats=ns.repeats, frames=ns.frames)


if __name__ == "__main__":
    main()
