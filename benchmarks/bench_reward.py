"""Reward throughput: videos scored per second, per backend, batched vs unbatched.

    python benchmarks/bench_reward.py [--backends classical,sam2_cotracker] [--k 8]

- unbatched: each candidate scored on its own, the reference recomputed every time (what a
  reward without a reference cache costs);
- batched: the reference prepared once per scene, then ``score_batch`` over K candidates;
- split: seconds per reference vs per candidate inside the batched run.

sam2_cotracker runs on random weights at small sizes (no checkpoints here), so its
figures show the cost of the code path, not of the released model sizes. Prints one JSON
line. The default run takes about a minute on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

# On a shared machine, OpenMP threads that spin while a peer waits for a busy core make
# torch 10-40x slower; passive waiting keeps the figures repeatable (set before torch loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from reward import RewardScorer
from reward.synthetic import falling_disc  # noqa: E402

SETTINGS = {
    "classical": dict(cfg={"backend": "classical"}, frames=16, size=64),
    "sam2_cotracker": dict(cfg={"backend": "sam2_cotracker", "random_init": True,
                                "device": "cpu", "sam2_image_size": 128,
                                "cotracker_resolution": (64, 64), "grid_size": 6},
                           frames=8, size=64),
}


def candidates(k: int, frames: int, size: int) -> list[np.ndarray]:
    """K distinct candidates: shifts, delays and other bounciness of the reference disc."""
    out = []
    for i in range(k):
        out.append(falling_disc(frames, size, shift=(1 + i % 4, 0), delay=i // 4,
                                restitution=0.4 + 0.05 * i))
    return out


def bench_backend(name: str, k: int) -> dict:
    spec = SETTINGS[name]
    frames, size = spec["frames"], spec["size"]
    ref = falling_disc(frames, size)
    cands = candidates(k, frames, size)
    start = time.perf_counter()
    scorer = RewardScorer(spec["cfg"])
    build_s = time.perf_counter() - start
    scorer.score(cands[0], ref)                           # warm-up (lazy inits, allocator)

    start = time.perf_counter()
    unbatched = []
    for cand in cands:
        scorer.cache = type(scorer.cache)(scorer.cfg.cache_size)   # no reference reuse
        unbatched.append(scorer.score(cand, ref))
    unbatched_s = time.perf_counter() - start

    scorer.timings.update(reference_s=0.0, candidate_s=0.0, references=0, candidates=0)
    start = time.perf_counter()
    scorer.prepare_reference("bench", ref)
    batched = scorer.score_batch("bench", cands)
    batched_s = time.perf_counter() - start
    assert [r.reward for r in batched] == [r.reward for r in unbatched]
    return {
        "k": k, "frames": frames, "size": size, "build_s": round(build_s, 3),
        "unbatched_videos_per_s": round(k / unbatched_s, 3),
        "batched_videos_per_s": round(k / batched_s, 3),
        "batched_over_unbatched": round(unbatched_s / batched_s, 3),
        "reference_s": round(scorer.timings["reference_s"], 4),
        "candidate_s_each": round(scorer.timings["candidate_s"] / k, 4),
        "reward_range": [round(min(r.reward for r in batched), 4),
                         round(max(r.reward for r in batched), 4)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="physgm bench reward",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="classical,sam2_cotracker")
    parser.add_argument("--k", type=int, default=8, help="candidates per scene")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="(always one JSON line)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"bench": "reward", "machine": f"{platform.machine()} {os.cpu_count()} CPU",
              "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    for name in args.backends.split(","):
        if name not in SETTINGS:
            raise SystemExit(f"unknown backend '{name}': use {','.join(SETTINGS)}")
        result[name] = bench_backend(name, args.k if name == "classical" else max(2, args.k // 2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
