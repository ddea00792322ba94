"""Full training checkpoints: exact resumption of a DeepSpeed pretraining run.

One checkpoint is a directory (``checkpoints/step_000100``, ``checkpoints/final``):

    model.pt, config.json   PhysGM weights + configs (``physgm.model.save_model``), so the
                            directory is what ``physgm.model.load_model`` reads
    trainer_state.json      step, data position (epoch, index), world size, MLflow run id, …
    rng/rank_<r>.pt         python / numpy / torch (and CUDA) RNG states of each worker
    deepspeed/              DeepSpeed's own files: module, optimizer (ZeRO partitions) and
                            LR-scheduler states

Atomic: every rank writes into ``.tmp-<name>`` beside the target; after a barrier rank 0
renames it into place, so a reader (or a resumed run) only ever sees complete checkpoints.
All ranks must call ``save_checkpoint``/``load_checkpoint`` (DeepSpeed saves collectively);
across machines the checkpoint root must be shared storage.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from physgm.config import RunConfig
from physgm.model import save_model
from runtime.distributed import capture_rng, full_state_dict, restore_rng

STATE_FILE = "trainer_state.json"
DS_DIR, DS_TAG = "deepspeed", "state"


@dataclass
class TrainState:
    """Where training stands. ``step``: optimizer steps done; ``epoch`` and ``index``: the
    data position, i.e. the next micro-batch is number ``index`` of epoch ``epoch`` of this
    worker's shard; ``samples``: training scenes seen by all workers together."""

    step: int = 0
    epoch: int = 0
    index: int = 0
    samples: int = 0
    world_size: int = 1
    mlflow_run_id: Optional[str] = None
    metrics: dict = field(default_factory=dict)


# ---------------------------------------------------------------- helpers
def _dist():
    d = torch.distributed
    return d if d.is_available() and d.is_initialized() else None


def _rank() -> int:
    d = _dist()
    return d.get_rank() if d else 0


def _barrier() -> None:
    d = _dist()
    if d and d.get_world_size() > 1:
        d.barrier()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def step_name(step: int) -> str:
    return f"step_{step:07d}"


# ---------------------------------------------------------------- save / load
def save_checkpoint(target: Union[str, Path], engine, cfg: RunConfig, state: TrainState) -> Path:
    """Write the full checkpoint of ``engine`` (a ``pretrain.engine.Engine``) and ``state``
    to the directory ``target``, replacing it atomically. Collective: call on every rank."""
    target = Path(target)
    tmp = target.with_name(f".tmp-{target.name}")
    rank = _rank()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "rng").mkdir(parents=True)
    _barrier()
    engine.ds.save_checkpoint(str(tmp / DS_DIR), tag=DS_TAG)
    torch.save(capture_rng(), tmp / "rng" / f"rank_{rank}.pt")
    _save_weights(tmp, engine, cfg, state, rank)
    if rank == 0:
        _write_json(tmp / STATE_FILE, asdict(state))
    _barrier()
    if rank == 0:
        old = target.with_name(f".old-{target.name}")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.replace(old)
        tmp.replace(target)
        shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return target


def _save_weights(directory: Path, engine, cfg: RunConfig, state: TrainState, rank: int) -> None:
    """model.pt via ``save_model`` on rank 0; ZeRO-3 gathers the partitioned weights first
    (``full_state_dict`` is collective then: every rank calls it)."""
    extra = {"step": state.step, "samples": state.samples, "stage": "pretrain"}
    partitioned = getattr(engine.ds, "zero_optimization_partition_weights", lambda: False)()
    weights = full_state_dict(engine.ds) if partitioned or rank == 0 else None
    if rank == 0:
        save_model(directory, engine.module, cfg, extra=extra, state_dict=weights)


def read_state(path: Union[str, Path]) -> TrainState:
    """The ``TrainState`` of a checkpoint directory."""
    f = Path(path) / STATE_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{path} is not a pretraining checkpoint (no {STATE_FILE}); "
                                "pass a directory written by `physgm pretrain`")
    return TrainState(**json.loads(f.read_text()))


def load_checkpoint(path: Union[str, Path], engine) -> TrainState:
    """Restore module, optimizer, scheduler and this rank's RNG states from ``path`` into
    ``engine``; returns the ``TrainState``. Collective: call on every rank. A different
    world size than the one saved raises (ZeRO partitions do not match)."""
    path = Path(path)
    state = read_state(path)
    world = _dist().get_world_size() if _dist() else 1
    if state.world_size != world:
        raise ValueError(f"{path} was written by {state.world_size} worker(s), this run has "
                         f"{world}: resume with --set pretrain.num_workers={state.world_size}")
    loaded, _ = engine.ds.load_checkpoint(str(path / DS_DIR), tag=DS_TAG,
                                          load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    if loaded is None:
        raise FileNotFoundError(f"no DeepSpeed state under {path / DS_DIR}")
    rng = path / "rng" / f"rank_{_rank()}.pt"
    restore_rng(torch.load(rng, weights_only=True))
    return state


def list_checkpoints(root: Union[str, Path]) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as (step, path), oldest first ('final' last among
    equal steps)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        if d.is_dir() and not d.name.startswith(".") and (d / STATE_FILE).is_file():
            found.append((read_state(d).step, d.name == "final", d))
    return [(s, d) for s, _, d in sorted(found)]


def latest_checkpoint(root: Union[str, Path]) -> Optional[Path]:
    """The newest complete checkpoint under ``root`` (None when there is none)."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def prune_checkpoints(root: Union[str, Path], keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` step checkpoints ('final' is never deleted);
    returns the deleted paths. Call on rank 0 only."""
    steps = [d for _, d in list_checkpoints(root) if d.name.startswith("step_")]
    doomed = steps[:-keep] if keep > 0 else steps
    for d in doomed:
        shutil.rmtree(d, ignore_errors=True)
    return doomed
