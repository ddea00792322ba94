"""Generate a synthetic dataset into a zarr store: scenes in parallel, resumable.

Workers (a spawn-context process pool of ``data.workers``; in-process when 1) each build
whole scenes and write them into the store themselves (each scene is its own group, so the
workers never write the same file; the parent writes only the root's attributes: the
generator settings before, the splits after). A single writer in the parent was the
bottleneck of image-only synthesis (a scene's ~15 small arrays take ~0.1 s to write, about
as long as drawing and rendering the scene), and a scene no longer travels back to it
through a pipe. Several stores made one after another can share one pool
(``worker_pool``; each new pool costs its workers' start-up: torch, warp and its kernels,
~3-5 s on 2 cores). A scene whose group exists with ``complete`` set is skipped on a
re-run; a partially written one is deleted and redone. The splits are recomputed over all
complete scenes at the end.

``data.image_only`` makes a store of image-only scenes (no simulation, no video; for
pretraining): it is part of the generator settings, so one store never mixes both kinds.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from physgm.config import RunConfig

# Settings that change what a scene looks like: a store must not mix two of them.
_VOLATILE = {"path", "n_scenes", "workers", "device", "max_attempts", "val_fraction",
             "test_fraction", "pretrain_scenes", "pretrain_path", "pretrain_seed"}


@dataclass
class SynthReport:
    """What a ``synthesize`` call did. ``scenes_per_min`` counts the scenes written by this
    call over its wall time (pool start-up included)."""

    path: str
    requested: int
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    redone: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    resampled: int = 0
    resample_statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    workers: int = 1
    image_only: bool = False

    @property
    def scenes_per_min(self) -> float:
        return 60.0 * len(self.written) / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict:
        return {"path": self.path, "requested": self.requested, "written": len(self.written),
                "skipped": len(self.skipped), "redone": len(self.redone),
                "failed": len(self.failed), "resampled": self.resampled,
                "resample_statuses": self.resample_statuses, "workers": self.workers,
                "image_only": self.image_only,
                "wall_s": round(self.wall_s, 2), "scenes_per_min": round(self.scenes_per_min, 2)}


def generator_signature(cfg: RunConfig) -> dict:
    """The settings a store's scenes were generated with (root attribute ``generator``)."""
    data = {k: v for k, v in cfg.data.model_dump(mode="json").items() if k not in _VOLATILE}
    sim = cfg.sim.model_dump(mode="json", exclude={"n_frames", "device", "threads"})
    render = cfg.render.model_dump(mode="json", include={"backend", "tile_size"})
    return {"data": data, "sim": sim, "render": render}


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: store has {va!r}, config has {vb!r}")
    return out


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawn-context processes for ``synthesize(..., pool=)`` (use it
    as a context manager: leaving it shuts the workers down)."""
    import multiprocessing as mp

    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                               initializer=_init_worker)


def _work(index: int, cfg_json: dict, out: str):
    """Pool task: build scene ``index`` and write it into the store ``out`` → (index,
    SceneResult without its scene) or (index, the error message)."""
    from physgm.data.store import open_store, write_scene
    from physgm.data.synth import SceneGenerationError, generate_scene, scene_id

    cfg = RunConfig.model_validate(cfg_json)
    try:
        result = generate_scene(index, cfg)
    except SceneGenerationError as err:
        return index, str(err)
    write_scene(open_store(out, "r+"), scene_id(index), result.scene)
    result.scene = None  # written: only the counts go back to the parent
    return index, result


def synthesize(out: str | Path, cfg: RunConfig, n_scenes: Optional[int] = None,
               workers: Optional[int] = None,
               on_progress: Optional[Callable[[int, int], None]] = None,
               pool: Optional[ProcessPoolExecutor] = None) -> SynthReport:
    """Make scenes 0 … n_scenes−1 of ``cfg.data`` in the store ``out`` (created if needed).

    Args:
        n_scenes: default ``cfg.data.n_scenes``; workers: default ``cfg.data.workers``.
        on_progress: callback(done, total) after each scene (skipped ones count as done).
        pool: a ``worker_pool`` to build the scenes in (left running for the next store;
            ``workers`` is then only reported); default: a pool of ``workers`` for this
            call, or none when ``workers`` is 1.
    Raises:
        StoreError when ``out`` holds scenes made with different generator settings.
    """
    from physgm.data.store import (SPLITS, StoreError, assign_splits, delete_scene,
                                   list_scenes, open_store, scene_attrs, set_splits, splits)
    from physgm.data.synth import SceneResult, scene_id

    t0 = time.perf_counter()
    n = cfg.data.n_scenes if n_scenes is None else int(n_scenes)
    workers = cfg.data.workers if workers is None else int(workers)
    if n < 1 or workers < 1:
        raise ValueError(f"need n_scenes ≥ 1 and workers ≥ 1, got {n} and {workers}")
    root = open_store(out, "a")
    signature = generator_signature(cfg)
    stored = root.attrs.get("generator")
    if stored and list_scenes(root, complete_only=False):
        # stores written before data.image_only existed hold full scenes
        stored = {**stored, "data": {"image_only": False, **stored.get("data", {})}}
        diff = _differences(stored, signature)
        if diff:
            raise StoreError(f"{out} holds scenes generated with other settings; use a new "
                             "--out or the same config:\n  " + "\n  ".join(diff))
    root.attrs["generator"] = signature
    report = SynthReport(path=str(out), requested=n, workers=workers,
                         image_only=cfg.data.image_only)
    todo = []
    present, complete = set(list_scenes(root, complete_only=False)), set(list_scenes(root))
    for i in range(n):
        sid = scene_id(i)
        if sid in complete:
            report.skipped.append(sid)
            continue
        if sid in present:
            delete_scene(root, sid)
            report.redone.append(sid)
        todo.append(i)
    done = len(report.skipped)
    if on_progress:
        on_progress(done, n)

    def record(index: int, result) -> None:
        nonlocal done
        sid = scene_id(index)
        if isinstance(result, SceneResult):  # the worker wrote it
            report.written.append(sid)
            report.resampled += result.resampled
            for status in result.failures:
                report.resample_statuses[status] = report.resample_statuses.get(status, 0) + 1
        else:
            report.failed[sid] = result
        done += 1
        if on_progress:
            on_progress(done, n)

    cfg_json, target = cfg.model_dump(mode="json"), str(out)

    def run_in(executor: ProcessPoolExecutor) -> None:
        pending = {executor.submit(_work, i, cfg_json, target) for i in todo}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                record(*fut.result())

    if pool is not None and todo:
        run_in(pool)
    elif workers == 1 or len(todo) <= 1:
        for i in todo:
            record(*_work(i, cfg_json, target))
    else:
        with worker_pool(min(workers, len(todo))) as own:
            run_in(own)

    # Synthetic scenes are re-split; scenes brought in by `data convert` keep their split.
    previous = splits(root) if root.attrs.get("splits") else {s: [] for s in SPLITS}
    ids = [i for i in list_scenes(root) if scene_attrs(root, i).get("source") == "synthetic"]
    new = assign_splits(ids, cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.seed)
    synthetic = set(ids)
    set_splits(root, {s: sorted(new[s] + [i for i in previous[s] if i not in synthetic])
                      for s in SPLITS})
    root.attrs["split_fractions"] = {"val": cfg.data.val_fraction,
                                     "test": cfg.data.test_fraction, "seed": cfg.data.seed}
    report.wall_s = time.perf_counter() - t0
    return report
