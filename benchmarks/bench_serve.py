"""Benchmark: the HTTP endpoint on a local Ray Serve deployment (random-init model).

1. ``POST /v1/predict``: ``--requests`` requests from ``--concurrency`` client threads,
   once with batching on (``serve.max_batch_size``) and once off (max_batch_size 1, applied
   to the running replica through its user_config), same replica, same run: p50/p95
   latency [ms] and requests/s.
2. ``POST /v1/simulate`` for each ``--sim-sizes`` entry GRID:FRAMES:PARTICLES:VIEWS:IMAGE
   (grid cells per axis, frames, particle budget, input views, model image size [px]; the
   quickstart object, and a larger one): client wall time and the server's split (prepare,
   simulate, render, encode). Per-pixel Gaussians bound the object: VIEWS·IMAGE² times
   the foreground fraction (about 0.3 here).

The client runs on the same machine as the server (it shares the cores). One JSON line:

    python benchmarks/bench_serve.py [--requests 200] [--concurrency 16]
        [--sim-sizes 32:16:5000:2:64,64:25:40000:4:128] [--no-sim]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

DEFAULT_SIM = ((32, 16, 5000, 2, 64), (64, 25, 40000, 4, 128))


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _views(n: int, size: int = 128) -> list:
    """``n`` PNG views of a shaded ball (the demo's snow-ball sample style)."""
    from PIL import Image

    yy, xx = np.mgrid[:size, :size] / size - 0.5
    r2 = xx ** 2 + yy ** 2
    img = np.zeros((size, size, 3), np.uint8)
    shade = np.clip(1.0 - 2.5 * ((xx + 0.1) ** 2 + (yy + 0.1) ** 2), 0.3, 1.0)
    img[r2 < 0.1] = (np.array([220, 120, 60])[None] * shade[r2 < 0.1, None]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return [("images", (f"v{i}.png", buf.getvalue(), "image/png")) for i in range(n)]


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))]


def load_test(url: str, n: int, concurrency: int, views: int) -> dict:
    """``n`` predict requests from ``concurrency`` threads → latency percentiles, rate."""
    import requests

    files = _views(views)
    sessions = [requests.Session() for _ in range(concurrency)]

    def one(i: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        r = sessions[i % concurrency].post(url + "/v1/predict", files=files, timeout=300)
        return time.perf_counter() - t0, r.status_code

    with ThreadPoolExecutor(concurrency) as pool:
        t0 = time.perf_counter()
        out = list(pool.map(one, range(n)))
        wall = time.perf_counter() - t0
    lat = [t for t, code in out if code == 200]
    return {"requests": n, "ok": len(lat), "concurrency": concurrency,
            "p50_ms": round(1e3 * statistics.median(lat), 1) if lat else None,
            "p95_ms": round(1e3 * _percentile(lat, 95), 1) if lat else None,
            "requests_per_s": round(len(lat) / wall, 2)}


def _model_stats() -> dict:
    from ray import serve

    h = serve.get_deployment_handle("PhysGMModel", app_name="physgm")
    return h.info.remote().result(timeout_s=60)


def _mean_batch(before: dict, after: dict) -> float:
    grown = {int(k): after.get(k, 0) - before.get(k, 0) for k in after}
    calls = sum(grown.values())
    return round(sum(k * v for k, v in grown.items()) / calls, 2) if calls else 0.0


def _model_ms(before: dict, after: dict) -> float:
    """Model time per predict request [ms] on the replica between two ``info()`` calls."""
    n = after["counters"]["requests"] - before["counters"]["requests"]
    dt = after["counters"]["predict_s"] - before["counters"]["predict_s"]
    return round(1e3 * dt / n, 2) if n else 0.0


def bench_serve(requests_n: int = 200, concurrency: int = 16, views: int = 2,
                sim_sizes=DEFAULT_SIM, sim_repeats: int = 2, batch_size: int = 8) -> dict:
    import ray
    import requests
    from ray import serve

    from physgm.config import build_config
    from runtime.distributed import free_port
    from runtime.ray_cluster import ensure_ray
    from serving.deploy import hot_swap, start
    from serving.model_source import ModelSource

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base = {"serve": {"port": port, "max_batch_size": batch_size, "request_timeout_s": 600}}
    cfg = build_config(base)
    source = ModelSource("random")
    ensure_ray(logs=Path(tempfile.mkdtemp(prefix="physgm-bench-serve-")))
    result = {"benchmark": "serve", "machine": f"{platform.machine()} {os.cpu_count()} CPU",
              "model": {k: getattr(cfg.model, k) for k in ("image_size", "dim", "depth",
                                                           "backbone_depth")},
              "views": views}
    try:
        t0 = time.perf_counter()
        start(cfg, source)
        result["deploy_s"] = round(time.perf_counter() - t0, 1)
        predict = {}
        for label, size in (("batched", batch_size), ("unbatched", 1)):
            cfg_b = build_config({"serve": {**base["serve"], "max_batch_size": size}})
            hot_swap(cfg_b, source)          # live batching setting, same replica
            _log(f"predict load test, {label} (max_batch_size={size}) …")
            load_test(url, 2 * concurrency, concurrency, views)          # warm-up
            before = _model_stats()
            predict[label] = {"max_batch_size": size,
                              **load_test(url, requests_n, concurrency, views)}
            after = _model_stats()
            predict[label]["mean_batch"] = _mean_batch(before["batch_sizes"],
                                                       after["batch_sizes"])
            predict[label]["model_ms_per_request"] = _model_ms(before, after)
        result["predict"] = predict
        sims = []
        for grid, frames, particles, n_views, image in sim_sizes:
            cfg_s = build_config({"model": {"image_size": image},
                                  "serve": {**base["serve"], "max_particles": particles,
                                            "sim": {"grid_res": grid, "n_frames": frames}}})
            _log(f"simulate: grid {grid}³, {frames} frames, ≤{particles} particles, "
                 f"{n_views} views of {image}² …")
            hot_swap(cfg_s, source)          # new sim settings: new simulation replica
            runs = []
            for _ in range(sim_repeats):
                t = time.perf_counter()
                r = requests.post(url + "/v1/simulate", files=_views(n_views), timeout=900)
                wall = time.perf_counter() - t
                if r.status_code != 200:
                    raise RuntimeError(f"simulate failed: {r.status_code} {r.text[:300]}")
                runs.append((wall, r))
            wall, r = sorted(runs, key=lambda x: x[0])[len(runs) // 2]
            sims.append({"grid": grid, "frames": frames, "max_particles": particles,
                         "views": n_views, "image_px": image,
                         "particles": int(r.headers["X-Sim-Particles"]),
                         "substeps_per_frame": int(r.headers["X-Sim-Substeps"]),
                         "status": r.headers["X-Sim-Status"], "wall_s": round(wall, 2),
                         "server_s": json.loads(r.headers["X-Sim-Timings"]),
                         "video_kb": round(len(r.content) / 1024, 1)})
        result["simulate"] = sims
    finally:
        serve.shutdown()
        ray.shutdown()
    return result


def _parse_sim(text: str) -> list[tuple[int, int, int, int, int]]:
    try:
        out = [tuple(int(v) for v in item.split(":")) for item in text.split(",") if item]
        if not all(len(t) == 5 for t in out):
            raise ValueError
        return out
    except ValueError:
        raise SystemExit("--sim-sizes expects GRID:FRAMES:PARTICLES:VIEWS:IMAGE[,...] such as "
                         f"32:16:5000:2:64, got {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="physgm bench serve", description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--views", type=int, default=2, help="views per predict request")
    ap.add_argument("--batch-size", type=int, default=8, help="max_batch_size when batching")
    ap.add_argument("--sim-sizes", type=_parse_sim, default=list(DEFAULT_SIM))
    ap.add_argument("--sim-repeats", type=int, default=2)
    ap.add_argument("--no-sim", action="store_true")
    ap.add_argument("--json", action="store_true", help="(always one JSON line)")
    ns = ap.parse_args(argv)
    out = bench_serve(ns.requests, ns.concurrency, ns.views, [] if ns.no_sim else ns.sim_sizes,
                      ns.sim_repeats, ns.batch_size)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
