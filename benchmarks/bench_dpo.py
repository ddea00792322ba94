"""DPO throughput: pairs per hour with 1, 2, … simulation actors on the same scenes, side by
side in one run, plus where the time goes (simulation, rendering, reward, learner, queue
waits, weight publishing) and the size of one weight broadcast. Prints one JSON line.

    physgm bench dpo --actors 1,2 --scenes 8 --epochs 1 [--compare-batching]
    physgm bench dpo --data runs/quickstart/data.zarr --checkpoint runs/quickstart/checkpoints/final

Without --data/--checkpoint a small synthetic dataset and a randomly initialised model are
made in a temporary folder (the throughput does not depend on the weights).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _prepare(tmp: Path, cfg, n_scenes: int) -> str:
    import torch

    from physgm.data.build import synthesize
    from physgm.model import PhysGM, save_model

    synthesize(cfg.data.path, cfg, n_scenes=n_scenes)
    torch.manual_seed(0)
    ckpt = tmp / "model"
    save_model(ckpt, PhysGM(cfg.model), cfg)
    return str(ckpt)


def _weights_bytes(checkpoint: str) -> int:
    import torch

    from physgm.model import load_model

    model, _ = load_model(checkpoint)
    buf = io.BytesIO()
    torch.save(model.physics_head.state_dict(), buf)
    return buf.tell()


def bench(actors: list[int], n_scenes: int, epochs: int, config: str | None,
          overrides: list[str], data: str | None, checkpoint: str | None,
          batching: tuple[bool, ...] = (True,)) -> dict:
    import ray

    from learner.dpo import run_dpo
    from physgm.config import load_config

    tmp = Path(tempfile.mkdtemp(prefix="physgm-bench-dpo-"))
    base = [f"out_dir={tmp}/runs", f"data.path={data or tmp / 'data.zarr'}",
            f"dpo.epochs={epochs}", "data.val_fraction=0.0", "data.test_fraction=0.2"]
    cfg = load_config(config, base + overrides)
    if checkpoint is None:
        checkpoint = _prepare(tmp, cfg, n_scenes)
    rows = []
    for n, batched in [(n, b) for b in batching for n in actors]:
        run_cfg = load_config(config, base + overrides + [
            f"dpo.n_actors={n}", f"dpo.batch_candidates={batched}",
            f"name=actors{n}-{'batched' if batched else 'sequential'}"])
        t0 = time.perf_counter()
        s = run_dpo(run_cfg, checkpoint, show=False)
        wall = time.perf_counter() - t0
        ray.shutdown()  # a fresh local cluster per actor count
        t = s["timings"]
        work = sum(t[k] for k in ("sim_s", "render_s", "reward_s"))
        rows.append({
            "actors": n, "batched": batched, "tasks": s["tasks_done"], "pairs": s["pairs_received"],
            "steps": s["steps"], "wall_s": round(wall, 1), "loop_s": s["wall_s"],
            "pairs_per_hour": s["pairs_per_hour"],
            "learner_step_s": round(t["learn_s"] / max(s["steps"], 1), 4),
            "publish_s": round(t["publish_s"] / max(s["steps"], 1), 4),
            "queue_wait_s": round(t["queue_wait_s"], 1),
            "share": {k[:-2]: round(t[k] / max(work + t["learn_s"], 1e-9), 3)
                      for k in ("sim_s", "render_s", "reward_s", "learn_s")},
        })
    base_rate = rows[0]["pairs_per_hour"] or 1e-9
    for row in rows:
        row["speedup"] = round(row["pairs_per_hour"] / base_rate, 2)
        twin = next((r for r in rows if r["actors"] == row["actors"] and not r["batched"]),
                    None)
        if row["batched"] and twin is not None:
            row["batched_vs_sequential"] = round(
                row["pairs_per_hour"] / max(twin["pairs_per_hour"], 1e-9), 2)
    return {"benchmark": "dpo", "unit": "pairs/hour", "cpu_count": os.cpu_count(),
            "k": cfg.dpo.k, "scenes": n_scenes, "epochs": epochs,
            "weights_bytes": _weights_bytes(checkpoint), "runs": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="physgm bench dpo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--actors", default="1,2", help="actor counts, comma-separated")
    ap.add_argument("--scenes", type=int, default=8, help="synthetic scenes (without --data)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="config override a.b=c (repeatable)")
    ap.add_argument("--data", default=None, help="an existing scene store")
    ap.add_argument("--checkpoint", default=None, help="an existing pretrained checkpoint")
    ap.add_argument("--compare-batching", action="store_true",
                    help="also run each actor count with dpo.batch_candidates=false (the K "
                         "candidates simulated one after another) and report the ratio")
    ap.add_argument("--json", action="store_true", help="(always one JSON line)")
    args = ap.parse_args(argv)
    actors = [int(a) for a in args.actors.split(",")]
    batching = (True, False) if args.compare_batching else (True,)
    print(json.dumps(bench(actors, args.scenes, args.epochs, args.config, args.overrides,
                           args.data, args.checkpoint, batching)), flush=True)


if __name__ == "__main__":
    main()
