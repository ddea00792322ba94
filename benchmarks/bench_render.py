"""Benchmark: the torch backend's tiled rasterizer against its dense reference.

Same scene for both (random anisotropic Gaussians in a ball, seen from an orbit camera);
reports seconds per frame (median of ``repeats`` after one warm-up), throughput in
Gaussians × pixels per second, the tiled/dense throughput ratio, and the largest pixel
difference between the two. Run as a script it prints one JSON line:

    python benchmarks/bench_render.py [--sizes 64x1000,96x2000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json as _json
import platform
import statistics
import time
from typing import Callable, Sequence

import torch

from physgm.camera import orbit_cameras
from physgm.gaussians import Gaussians
from physgm.render import rasterize_dense, rasterize_tiled

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


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()                                                     # warm-up (allocator, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_render(sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES, json: bool = True,
                 repeats: int = 3, tile_size: int = 16) -> dict:
    """Time tiled vs dense forward rendering for each (image edge [px], Gaussians) in
    ``sizes``. Returns a dict (also printed as one JSON line when ``json``)."""
    rows = []
    for px, n in sizes:
        g = _scene(n)
        cam = orbit_cameras(1, radius=1.6, elevation_deg=20.0, fov_deg=45.0, width=px,
                            height=px)[0]
        args = (g.means, g.covariances(), g.opacities, g.colors, cam.K, cam.w2c, px, px)
        with torch.no_grad():
            tiled = rasterize_tiled(*args, tile_size=tile_size)
            dense = rasterize_dense(*args)
            diff = max(float((a - b).abs().max()) for a, b in zip(tiled, dense))
            t_tiled = _median_time(lambda: rasterize_tiled(*args, tile_size=tile_size), repeats)
            t_dense = _median_time(lambda: rasterize_dense(*args), repeats)
        work = n * px * px
        rows.append({"image_px": px, "gaussians": n, "coverage": round(float(tiled[1].mean()), 3),
                     "tiled_s": round(t_tiled, 4), "dense_s": round(t_dense, 4),
                     "tiled_gauss_px_per_s": round(work / t_tiled),
                     "dense_gauss_px_per_s": round(work / t_dense),
                     "ratio_tiled_over_dense": round(t_dense / t_tiled, 2),
                     "max_abs_diff": diff})
    out = {"benchmark": "render", "backend": "torch", "device": "cpu",
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
    ap.add_argument("--json", action="store_true", help="(always one JSON line)")
    ns = ap.parse_args(argv)
    bench_render(ns.sizes, json=True, repeats=ns.repeats)


if __name__ == "__main__":
    main()
