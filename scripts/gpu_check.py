"""GPU readiness of physgm in one run, one JSON line (scripts/gpu_check.sh calls it).

    python scripts/gpu_check.py [--budget-s 420] [--particles 1000000] [--skip NAME,...]
    python scripts/gpu_check.py --dry-run      # the same code paths on the CPU, tiny sizes

Checks, each timed and each allowed to fail on its own (its error goes into the JSON):
- ``mpm``: warp CUDA MLS-MPM throughput [particle-substeps/s] at ~1 M particles, jelly
  (elastic) and sand (plastic return map), one object; and K = 16 objects of 100 k
  particles batched at the paper's settings (frame 1/25 s, 50 frames), timed;
- ``render``: gsplat against the torch rasterizer on one scene (PSNR of the two images);
- ``learner``: one DeepSpeed bf16 DPO learner step on the paper-size physics head;
- ``pretrain``: one DeepSpeed bf16 pretraining step of the paper-size PhysGM (random-init
  DINOv3 ViT-L/16, 24 × 1024 transformer, 4 views of 512²), its time and peak memory.
Checks run in that order until ``--budget-s`` is spent; those left are reported skipped.
``--dry-run`` runs every check on the CPU at toy sizes (the torch rasterizer against itself,
the quickstart model) so that tests/test_gpu_check.py keeps this script from rotting on
machines without a GPU; its figures mean nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
import traceback

import numpy as np
import torch


def _cube(n: int, grid: int, centre_y: float = 0.3):
    """~``n`` particles in a cube at half-cell spacing on a ``grid``³ unit domain."""
    from physgm.sim import sample_shape

    spacing = 0.5 / grid
    side = round(n ** (1 / 3)) * spacing
    return sample_shape("cube", (0.5, max(centre_y, side / 2 + 4.0 / grid), 0.5), side, spacing)


def check_mpm(n: int, device: str = "cuda", k: int = 16, per: int = 100_000,
              frames: int = 50) -> dict:
    from physgm.config import MPMConfig
    from physgm.materials import PhysParams
    from physgm.sim import simulate, simulate_batch

    out = {}
    grid = 256 if n >= 500_000 else (128 if n >= 50_000 else 32)
    x = _cube(n, grid)
    warm = MPMConfig(grid_res=grid, device=device, n_frames=1)
    simulate(x[:1000], PhysParams.default("jelly"), warm)  # compile the kernels
    for material in ("jelly", "sand"):
        cfg = MPMConfig(grid_res=grid, device=device, n_frames=3)
        r = simulate(x, PhysParams.default(material), cfg)
        out[f"{material}_particles"] = int(x.shape[0])
        out[f"{material}_status"] = r.status
        out[f"{material}_pss"] = r.particle_substeps / max(r.wall_s, 1e-9)
    grid = 128 if per >= 50_000 else 32
    xs = [_cube(per, grid) for _ in range(k)]
    rng = np.random.default_rng(0)
    params = [PhysParams.default("jelly", E=float(10 ** rng.uniform(4.5, 5.5))) for _ in range(k)]
    cfg = MPMConfig(grid_res=grid, device=device, frame_dt=1 / 25, n_frames=frames)
    t0 = time.perf_counter()
    results = simulate_batch(xs, params, cfg)
    wall = time.perf_counter() - t0
    work = sum(r.particle_substeps for r in results)
    out.update(batch_k=k, batch_particles_each=per, batch_frames=frames, batch_wall_s=wall,
               batch_pss=work / max(wall, 1e-9),
               batch_statuses=sorted({r.status for r in results}))
    return out


def check_render(backends=("torch", "gsplat"), n: int = 20_000, size: int = 256) -> dict:
    from physgm.camera import orbit_cameras
    from physgm.gaussians import Gaussians
    from physgm.render import rasterize

    g = torch.Generator().manual_seed(0)
    gs = Gaussians(means=torch.rand(n, 3, generator=g) * 0.4 + 0.3,
                   scales=torch.rand(n, 3, generator=g) * 0.01 + 0.002,
                   quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                   opacities=torch.rand(n, generator=g) * 0.8 + 0.1,
                   colors=torch.rand(n, 3, generator=g))
    cam = orbit_cameras(1, 1.2, 20.0, target=(0.5, 0.5, 0.5), width=size, height=size)[0]
    out = {}
    images = []
    for backend in backends:
        t0 = time.perf_counter()
        images.append(rasterize(gs, cam, size, size, backend=backend).rgb.float().cpu())
        out[f"{backend}_s"] = time.perf_counter() - t0
    mse = float(((images[0] - images[-1]) ** 2).mean())
    out["psnr_db"] = 10 * math.log10(1.0 / max(mse, 1e-12))
    return out


def _config(dry: bool):
    from physgm.config import load_config

    return load_config("configs/quickstart.yaml" if dry else "configs/paper.yaml")


def check_learner(dry: bool = False) -> dict:
    from learner.learner import LearnerCore
    from physgm.model.physics_head import PhysicsHead
    from runtime.messages import Pair

    cfg = _config(dry)
    mc, dc = cfg.model, cfg.dpo
    head = PhysicsHead(mc)
    rng = np.random.default_rng(0)
    tokens = {f"s{i}": rng.normal(size=(mc.n_physics_tokens, mc.dim)).astype(np.float32)
              for i in range(dc.batch_pairs)}
    pairs = [Pair(f"t{i}", f"s{i}", i % 5, rng.normal(0, .5, 8).astype(np.float32), (i + 1) % 5,
                  rng.normal(0, .5, 8).astype(np.float32), -.1, -.6, 0)
             for i in range(dc.batch_pairs)]
    learner = LearnerCore(head.state_dict(), mc, dc, tokens, use_gpu=not dry, bf16=True)
    first = learner.step(pairs)
    _sync()
    t0 = time.perf_counter()
    learner.step(pairs)
    _sync()
    return {"step_s": time.perf_counter() - t0, "pairs": dc.batch_pairs,
            "step0_margin": first["rewards/margins"], "dtype": str(
                next(learner.engine.module.parameters()).dtype)}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def check_pretrain(dry: bool = False) -> dict:
    from physgm.model import PhysGM
    from pretrain.engine import build_engine
    from pretrain.step import pretrain_step, to_device
    from pretrain.synthetic import synthetic_batch

    cfg = _config(dry)
    p = cfg.pretrain.model_copy(update={"num_workers": 1, "use_gpu": not dry})
    if not dry:
        torch.cuda.reset_peak_memory_stats()
    engine = build_engine(PhysGM(cfg.model, load_backbone=False), p, total_steps=10)
    batch = to_device(synthetic_batch(p.batch_size, n_views=4, size=cfg.model.image_size),
                      engine.device)
    times = []
    for _ in range(2):
        _sync()
        t0 = time.perf_counter()
        out = pretrain_step(engine.model, batch, p.loss_weights,
                            backend="torch" if dry else "gsplat", compute_dtype=engine.dtype)
        engine.backward_step(out.loss)
        _sync()
        times.append(time.perf_counter() - t0)
    peak = 0.0 if dry else torch.cuda.max_memory_allocated() / 2 ** 30
    return {"step_s": times[-1], "first_step_s": times[0], "batch": p.batch_size, "views": 4,
            "size": cfg.model.image_size, "loss": float(out.loss), "peak_gib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=420.0)
    ap.add_argument("--particles", type=int, default=1_000_000)
    ap.add_argument("--skip", default="", help="comma-separated checks to skip")
    ap.add_argument("--dry-run", action="store_true", help="CPU, toy sizes (tests)")
    args = ap.parse_args()
    dry = args.dry_run
    skip = set(filter(None, args.skip.split(",")))
    result = {"benchmark": "gpu_check", "machine": platform.node(),
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "torch": torch.__version__}
    t_start = time.perf_counter()
    if dry:
        checks = {"mpm": lambda: check_mpm(2000, "cpu", k=2, per=500, frames=2),
                  "render": lambda: check_render(("torch", "torch"), 500, 64),
                  "learner": lambda: check_learner(True), "pretrain": lambda: check_pretrain(True)}
    else:
        checks = {"mpm": lambda: check_mpm(args.particles), "render": check_render,
                  "learner": check_learner, "pretrain": check_pretrain}
    for name, fn in checks.items():
        if name in skip or time.perf_counter() - t_start > args.budget_s:
            result[name] = {"skipped": True}
            continue
        t0 = time.perf_counter()
        try:
            result[name] = fn()
        except Exception as err:  # noqa: BLE001 - each check reports its own failure
            result[name] = {"error": f"{type(err).__name__}: {err}",
                            "where": traceback.format_exc().strip().splitlines()[-3:]}
        result[name]["wall_s"] = round(time.perf_counter() - t0, 2)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
