"""Benchmark: synthetic scene generation (`physgm data synth`) throughput.

Generates ``--scenes`` scenes of the given config into a temporary store with each worker
count of ``--workers`` and reports scenes per minute (pool start-up included), the mean
seconds per scene spent in simulation, and the store size. Prints one JSON line:

    python benchmarks/bench_data.py [--config configs/quickstart.yaml] [--scenes 12]
        [--workers 1,2] [--set data.image_size=64 ...]
"""
from __future__ import annotations

import argparse
import json as _json
import os
import platform
import tempfile
from pathlib import Path
from typing import Sequence


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2 ** 20


def run(config: str | None, scenes: int, workers: Sequence[int], overrides: list[str]) -> dict:
    from physgm.config import load_config
    from physgm.data.build import synthesize
    from physgm.data.store import open_store, scene_attrs

    cfg = load_config(config, overrides)
    rows = []
    for w in workers:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.zarr"
            report = synthesize(out, cfg, n_scenes=scenes, workers=w)
            root = open_store(out)
            sim_s = [scene_attrs(root, sid)["sim"]["sim_wall_s"] for sid in report.written]
            rows.append({"workers": w, **{k: v for k, v in report.summary().items()
                                          if k in ("written", "resampled", "wall_s",
                                                   "scenes_per_min")},
                         "sim_s_per_scene": round(sum(sim_s) / max(len(sim_s), 1), 3),
                         "store_mb": round(_size_mb(out), 2)})
    return {"benchmark": "data_synth", "config": config, "scenes": scenes,
            "image_size": cfg.data.image_size, "video_frames": cfg.data.video_frames,
            "n_views": cfg.data.n_views, "grid_res": cfg.sim.grid_res,
            "cpu_count": os.cpu_count(), "machine": platform.machine(), "results": rows}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", action="store_true", help="(always one JSON line)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    result = run(args.config, args.scenes, [int(w) for w in args.workers.split(",")],
                 args.overrides)
    print(_json.dumps(result))
    return result


if __name__ == "__main__":
    main()
