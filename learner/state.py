"""Progress of a DPO run and its atomic checkpoint on disk.

A checkpoint directory holds ``state.json`` (``DPOState`` as plain JSON: step, policy
version, progress through the task list, unfinished tasks, buffered pairs, counters, the
loss history, the MLflow run id) and the learner's DeepSpeed checkpoint (``learner/``).
Plain JSON, so a checkpoint does not depend on where a class lives. It is written to a
temporary directory and renamed into place, so a kill at any moment leaves the previous
checkpoint intact.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import numpy as np

from runtime.messages import Pair, Task

STATE_FILE = "state.json"
FORMAT = "physgm-dpo-state/2"


@dataclass
class DPOState:
    step: int = 0
    version: int = 0
    next_task: int = 0  # index of the first never-submitted task in the task list
    done_tasks: set = field(default_factory=set)
    pending: list = field(default_factory=list)  # [Task] submitted, unconsumed: redone on resume
    buffer: list = field(default_factory=list)  # [Pair] not yet learned from
    coverage: dict = field(default_factory=dict)  # scene_id -> tasks consumed
    pairs_received: int = 0
    pairs_learned: int = 0
    stale_dropped: int = 0
    duplicates: int = 0
    failed_sims: int = 0
    reward_errors: int = 0  # candidates whose scoring failed: in no pair, counted here
    actor_failures: int = 0
    rewards_sum: float = 0.0
    rewards_count: int = 0
    mlflow_run_id: Optional[str] = None
    wall_s: float = 0.0
    losses: list = field(default_factory=list)  # dpo/loss of every learner step so far

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(format=FORMAT, done_tasks=sorted(self.done_tasks),
                 pending=[t.to_dict() for t in self.pending],
                 buffer=[p.to_dict() for p in self.buffer])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DPOState":
        if d.get("format") != FORMAT:
            raise ValueError(f"DPO checkpoint format {d.get('format')!r}, expected {FORMAT!r}: "
                             "it was written by another version; start DPO anew (without "
                             "--resume)")
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in d.items() if k in known})
        state.done_tasks = set(d["done_tasks"])
        state.pending = [Task.from_dict(t) for t in d["pending"]]
        state.buffer = [Pair.from_dict(p) for p in d["buffer"]]
        return state


def build_tasks(scene_ids: list[str], epochs: int, seed: int) -> list[Task]:
    """Every scene once per epoch, in a seeded order per epoch."""
    tasks = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(scene_ids))
        for i, j in enumerate(order):
            sid = scene_ids[int(j)]
            tasks.append(Task(f"e{epoch}-{i:05d}-{sid}", sid, epoch, i))
    return tasks


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "dpo" / "checkpoint"


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a DPO run under ``run_dir`` can be resumed."""
    d = checkpoint_dir(run_dir)
    return (d / STATE_FILE).is_file() or (d.with_name("checkpoint.old") / STATE_FILE).is_file()


def save_state(run_dir: Path, state: DPOState, learner_save) -> Path:
    """Write ``state`` and the learner (``learner_save(directory)``) atomically."""
    final = checkpoint_dir(run_dir)
    tmp = final.with_name("checkpoint.tmp")
    old = final.with_name("checkpoint.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    learner_save(str(tmp / "learner"))
    (tmp / STATE_FILE).write_text(json.dumps(state.to_dict()))
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(run_dir: Path) -> DPOState:
    path = checkpoint_dir(run_dir) / STATE_FILE
    if not path.is_file():
        old = checkpoint_dir(run_dir).with_name("checkpoint.old")
        if (old / STATE_FILE).is_file():  # killed between the two renames of save_state
            old.rename(checkpoint_dir(run_dir))
        else:
            raise FileNotFoundError(f"no DPO checkpoint to resume under {checkpoint_dir(run_dir)}: "
                                    "run `physgm dpo` without --resume first")
    return DPOState.from_dict(json.loads(path.read_text()))
