"""Progress of a DPO run and its atomic checkpoint on disk.

A checkpoint directory holds ``state.pkl`` (this dataclass: step, policy version, progress
through the task list, unfinished tasks, buffered pairs, counters, MLflow run id) and the
learner's DeepSpeed checkpoint (``learner/``). It is written to a temporary directory
and renamed into place, so a kill at any moment leaves the previous checkpoint intact.
"""
from __future__ import annotations

import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np


@dataclass
class DPOState:
    step: int = 0
    version: int = 0
    next_task: int = 0  # index of the first never-submitted task in the task list
    done_tasks: set = field(default_factory=set)
    pending: list = field(default_factory=list)  # submitted but unconsumed: redone on resume
    buffer: list = field(default_factory=list)  # pairs not yet learned from
    coverage: dict = field(default_factory=dict)  # scene_id -> tasks consumed
    pairs_received: int = 0
    pairs_learned: int = 0
    stale_dropped: int = 0
    duplicates: int = 0
    failed_sims: int = 0
    reward_errors: int = 0
    actor_failures: int = 0
    rewards_sum: float = 0.0
    rewards_count: int = 0
    mlflow_run_id: Optional[str] = None
    wall_s: float = 0.0
    losses: list = field(default_factory=list)  # dpo/loss of every learner step so far


def build_tasks(scene_ids: list[str], epochs: int, seed: int):
    """Every scene once per epoch, in a seeded order per epoch."""
    from actors.sim_actor import Task

    tasks = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(scene_ids))
        for i, j in enumerate(order):
            sid = scene_ids[int(j)]
            tasks.append(Task(f"e{epoch}-{i:05d}-{sid}", sid, epoch, i))
    return tasks


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "dpo" / "checkpoint"


def save_state(run_dir: Path, state: DPOState, learner_save) -> Path:
    """Write ``state`` and the learner (``learner_save(directory)``) atomically."""
    final = checkpoint_dir(run_dir)
    tmp = final.with_name("checkpoint.tmp")
    old = final.with_name("checkpoint.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    learner_save(str(tmp / "learner"))
    with open(tmp / "state.pkl", "wb") as fh:
        pickle.dump(state, fh)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(run_dir: Path) -> DPOState:
    path = checkpoint_dir(run_dir) / "state.pkl"
    if not path.is_file():
        old = checkpoint_dir(run_dir).with_name("checkpoint.old") / "state.pkl"
        if old.is_file():  # killed between the two renames of save_state
            checkpoint_dir(run_dir).with_name("checkpoint.old").rename(checkpoint_dir(run_dir))
            path = checkpoint_dir(run_dir) / "state.pkl"
        else:
            raise FileNotFoundError(f"no DPO checkpoint to resume under {checkpoint_dir(run_dir)}: "
                                    "run `physgm dpo` without --resume first")
    with open(path, "rb") as fh:
        state = pickle.load(fh)
    if not hasattr(state, "losses"):  # a checkpoint from before the loss history was kept
        state.losses = []
    return state
