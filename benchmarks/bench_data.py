"""Benchmark: synthetic scene generation (`physgm data synth`) throughput, full scenes
(views + simulated GT video) beside image-only scenes (`--image-only`: views, object,
physics and labels, no simulation, no video; what pretraining reads).

Generates ``--scenes`` full scenes and ``--image-only-scenes`` image-only ones (default 4×
as many: the process pool's start-up, several seconds on a busy machine, would otherwise
dominate the fast kind) of the given config into a temporary store for each worker count
of ``--workers`` and each kind of ``--kinds``, and reports scenes per minute (pool start-up
included), the CPU seconds per scene (this process and its workers, user + system: less
sensitive than the wall time to other jobs on a shared machine), the mean seconds per scene
spent in simulation, the store size, and per worker count the ratio image-only / full of
scenes per minute (``image_only_speedup``) and of CPU time per scene
(``image_only_cpu_speedup``). Prints one JSON line:

    python benchmarks/bench_data.py [--config configs/quickstart.yaml] [--scenes 12]
        [--image-only-scenes 48] [--workers 1,2] [--kinds full,image_only]
        [--set data.image_size=64 ...]
"""
from __future__ import annotations

import argparse
import json as _json
import os
import platform
import resource
import tempfile
from pathlib import Path
from typing import Sequence

KINDS = ("full", "image_only")


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2 ** 20


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _one(cfg, kind: str, scenes: int, workers: int) -> dict:
    from physgm.data.build import synthesize
    from physgm.data.store import open_store, scene_attrs

    cfg = cfg.model_copy(deep=True)
    cfg.data.image_only = kind == "image_only"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.zarr"
        cpu0 = _cpu_s()
        report = synthesize(out, cfg, n_scenes=scenes, workers=workers)
        cpu = _cpu_s() - cpu0  # the pool's workers have exited: their time is counted
        root = open_store(out)
        sim_s = [scene_attrs(root, sid)["sim"].get("sim_wall_s", 0.0) for sid in report.written]
        return {"kind": kind, "workers": workers,
                **{k: v for k, v in report.summary().items()
                   if k in ("written", "resampled", "wall_s", "scenes_per_min")},
                "cpu_s_per_scene": round(cpu / max(len(report.written), 1), 3),
                "sim_s_per_scene": round(sum(sim_s) / max(len(sim_s), 1), 3),
                "store_mb": round(_size_mb(out), 2)}


def ratios(rows: list[dict], key: str = "scenes_per_min") -> dict[str, float]:
    """{workers: image-only ÷ full ``key``} where both kinds ran (for a cost such as
    ``cpu_s_per_scene``: full ÷ image-only, so that > 1 means image-only is cheaper)."""
    by = {(r["kind"], r["workers"]): r[key] for r in rows}
    cost = key != "scenes_per_min"
    out = {}
    for (kind, w), full in by.items():
        image = by.get(("image_only", w))
        if kind == "full" and image is not None and (image if cost else full) > 0:
            out[str(w)] = round(full / image if cost else image / full, 2)
    return out


def run(config: str | None, scenes: int, workers: Sequence[int], overrides: list[str],
        kinds: Sequence[str] = KINDS, image_only_scenes: int | None = None) -> dict:
    from physgm.config import load_config

    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be among {', '.join(KINDS)}, got {list(kinds)}")
    counts = {"full": scenes, "image_only": 4 * scenes if image_only_scenes is None
              else image_only_scenes}
    if min(counts.values()) < 1 or not workers or min(workers) < 1:
        raise ValueError(f"need scenes ≥ 1 of each kind and worker counts ≥ 1, got {counts} "
                         f"and {list(workers)}")
    cfg = load_config(config, overrides)
    rows = [_one(cfg, kind, counts[kind], w) for w in workers for kind in kinds]
    return {"benchmark": "data_synth", "config": config, "scenes": counts,
            "image_size": cfg.data.image_size, "video_frames": cfg.data.video_frames,
            "n_views": cfg.data.n_views, "grid_res": cfg.sim.grid_res,
            "cpu_count": os.cpu_count(), "machine": platform.machine(), "results": rows,
            "image_only_speedup": ratios(rows),
            "image_only_cpu_speedup": ratios(rows, "cpu_s_per_scene")}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/quickstart.yaml")
    parser.add_argument("--scenes", type=int, default=12, help="full scenes per run")
    parser.add_argument("--image-only-scenes", type=int, default=None,
                        help="image-only scenes per run (default 4 × --scenes)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma-separated: full, image_only")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", action="store_true", help="(always one JSON line)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    result = run(args.config, args.scenes, [int(w) for w in args.workers.split(",")],
                 args.overrides, [k for k in args.kinds.split(",") if k],
                 args.image_only_scenes)
    print(_json.dumps(result))
    return result


if __name__ == "__main__":
    main()
