"""Benchmark: pretraining throughput and peak memory, DeepSpeed engine vs plain PyTorch.

Both variants train the same PhysGM (same seed, same initial weights) on the same rendered
toy batches with the same full step (forward, render into the target views, losses,
backward, clip, AdamW, warm-up + cosine LR): once through ``pretrain.engine.build_engine``
(DeepSpeed, ZeRO stage ``--zero-stage``, one worker) and once as a plain PyTorch loop
(``pretrain.engine.build_plain``). Each variant runs in its own fresh process, so its peak
memory is its own: peak RSS on CPU (``ru_maxrss``), ``torch.cuda.max_memory_allocated`` on
GPU. Reported: samples/s (median step time after ``--warmup`` steps), peak memory, the
DeepSpeed/plain ratios and the largest loss difference between the two runs (same maths,
so it should be ~0). Prints one JSON line:

    python benchmarks/bench_pretrain.py [--steps 8] [--batch-size 4] [--views 2] [--size 64]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("plain", "deepspeed")


def _rss_mib() -> float:
    """Peak resident set size of this process so far [MiB] (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run_variant(variant: str, args: dict) -> dict:
    """Child process: build model and batches, train ``steps`` steps, return the figures."""
    import torch

    torch.set_num_threads(args["threads"])
    from physgm.config import ModelConfig, PretrainConfig
    from physgm.model import PhysGM
    from pretrain.engine import build_engine, build_plain
    from pretrain.step import pretrain_step, to_device
    from pretrain.synthetic import synthetic_batch

    gpu = args["gpu"] and torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    mcfg = ModelConfig(**args["model"])
    pcfg = PretrainConfig(steps=args["steps"], warmup_steps=1, batch_size=args["batch_size"],
                          zero_stage=args["zero_stage"], use_gpu=gpu, bf16=False)
    batches = [to_device(synthetic_batch(args["batch_size"], args["views"], 1, args["size"],
                                         seed=100 * i), device) for i in range(2)]
    torch.manual_seed(0)
    model = PhysGM(mcfg).to(device)
    base_mib = _rss_mib()
    if gpu:
        torch.cuda.reset_peak_memory_stats()
        base_mib = torch.cuda.memory_allocated() / 2 ** 20
    if variant == "deepspeed":
        engine = build_engine(model, pcfg)
        call, dtype = engine.model, engine.dtype

        def update(loss):
            engine.backward_step(loss)
    else:
        opt, sched = build_plain(model, pcfg)
        call, dtype = model, None

        def update(loss):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), pcfg.grad_clip)
            opt.step()
            sched.step()
    times, losses = [], []
    for step in range(args["steps"]):
        if gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = pretrain_step(call, batches[step % 2], pcfg.loss_weights, backend=args["backend"],
                            compute_dtype=dtype, input_targets=pcfg.input_targets)
        update(out.loss)
        if gpu:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(float(out.loss.detach()))
    timed = times[args["warmup"]:] or times
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if gpu else _rss_mib()
    return {"variant": variant, "step_s": statistics.median(timed),
               "samples_per_s": args["batch_size"] / statistics.median(timed),
               "peak_mem_mib": round(peak, 1), "mem_before_training_mib": round(base_mib, 1),
               "training_mem_mib": round(peak - base_mib, 1),
               "memory": "cuda_max_allocated" if gpu else "peak_rss",
               "losses": [round(v, 6) for v in losses],
               "params": sum(p.numel() for p in model.parameters())}


def _spawn(variant: str, args: dict) -> dict:
    """Run one variant in a fresh interpreter (its peak memory is its own)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS=str(args["threads"]), DS_ACCELERATOR=os.environ.get(
        "DS_ACCELERATOR", "cuda" if args["gpu"] else "cpu"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    for var in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(var, None)          # a parent's process group: the child makes its own
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", variant,
                           "--child-args", json.dumps(args)], env=env, cwd=root,
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"{variant} variant failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def bench_pretrain(steps: int = 8, warmup: int = 2, batch_size: int = 4, views: int = 2,
                   size: int = 64, zero_stage: int = 2, threads: int = 1, gpu: bool = False,
                   model: dict | None = None, backend: str = "auto", json_out: bool = True
                   ) -> dict:
    """Run both variants (each in a fresh process) and return the comparison dict."""
    if steps <= warmup:
        raise SystemExit(f"--steps ({steps}) must exceed --warmup ({warmup})")
    args = dict(steps=steps, warmup=warmup, batch_size=batch_size, views=views, size=size,
                zero_stage=zero_stage, threads=threads, gpu=gpu, backend=backend,
                model=model or {"image_size": size})
    results = {variant: _spawn(variant, args) for variant in VARIANTS}
    plain, ds = results["plain"], results["deepspeed"]
    loss_diff = max(abs(a - b) for a, b in zip(plain["losses"], ds["losses"]))
    out = {"benchmark": "pretrain", "device": "cuda" if gpu else "cpu", "threads": threads,
           "machine": platform.machine(), "steps": steps, "warmup": warmup,
           "batch_size": batch_size, "views": views, "image_px": size, "zero_stage": zero_stage,
           "params": plain["params"],
           "results": {k: {m: v for m, v in r.items() if m not in ("losses", "params")}
                       for k, r in results.items()},
           "ratio_samples_per_s_deepspeed_over_plain":
               round(ds["samples_per_s"] / plain["samples_per_s"], 3),
           "ratio_peak_mem_deepspeed_over_plain":
               round(ds["peak_mem_mib"] / plain["peak_mem_mib"], 3),
           "ratio_training_mem_deepspeed_over_plain":
               round(ds["training_mem_mib"] / max(plain["training_mem_mib"], 1e-9), 3),
           "max_loss_diff": loss_diff}
    if json_out:
        print(json.dumps(out))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="physgm bench pretrain", description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--size", type=int, default=64, help="image side [px] (quickstart: 64)")
    ap.add_argument("--zero-stage", type=int, default=2, choices=(0, 1, 2, 3))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--gpu", action="store_true", help="run on CUDA (DeepSpeed in fp32)")
    ap.add_argument("--json", action="store_true", help="(always one JSON line)")
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--child-args", help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.child:
        print(json.dumps(_run_variant(ns.child, json.loads(ns.child_args))))
        return
    bench_pretrain(ns.steps, ns.warmup, ns.batch_size, ns.views, ns.size, ns.zero_stage,
                   ns.threads, ns.gpu)


if __name__ == "__main__":
    main()
