"""What crosses the object store in the DPO loop (driver → actor → queue → driver →
learner), and how it is written into a checkpoint: plain dicts of str/int/float/lists, so a
checkpoint does not depend on where these classes live (``to_dict`` / ``from_dict``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Task:
    """One unit of work: ``task_id`` is unique per (epoch, position in the scene list)."""

    task_id: str
    scene_id: str
    epoch: int
    index: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        return cls(str(d["task_id"]), str(d["scene_id"]), int(d["epoch"]), int(d["index"]))


@dataclass
class Pair:
    """A preference pair for the learner: chosen = higher video reward.

    ``*_material``: index into ``physgm.materials.MATERIALS``; ``*_z`` (P,) float32: the
    normalised continuous parameters as sampled; ``policy_version``: the weights that sampled
    them (the learner drops pairs older than ``dpo.max_staleness`` versions)."""

    task_id: str
    scene_id: str
    chosen_material: int
    chosen_z: np.ndarray
    rejected_material: int
    rejected_z: np.ndarray
    chosen_reward: float
    rejected_reward: float
    policy_version: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["chosen_z"] = np.asarray(self.chosen_z, np.float32).tolist()
        d["rejected_z"] = np.asarray(self.rejected_z, np.float32).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Pair":
        return cls(str(d["task_id"]), str(d["scene_id"]), int(d["chosen_material"]),
                   np.asarray(d["chosen_z"], np.float32), int(d["rejected_material"]),
                   np.asarray(d["rejected_z"], np.float32), float(d["chosen_reward"]),
                   float(d["rejected_reward"]), int(d["policy_version"]))


@dataclass
class RolloutResult:
    """What an actor puts in the queue for one task: its pairs, the K rewards and statuses,
    timings, and (only when asked) a winner/loser pair's videos for the MLflow artifact.

    ``scoring_failed``: candidates whose reward could not be computed (reward service error,
    lost replica): they are in no pair and their rewards are NaN; ``failed_sims``: simulations
    that blew up or escaped (scored with the failure reward: a real outcome, learnable)."""

    task_id: str
    scene_id: str
    policy_version: int
    pairs: list[Pair]
    rewards: list[float]
    statuses: list[str]
    timings: dict = field(default_factory=dict)
    actor: str = ""
    videos: dict = field(default_factory=dict)
    scoring_failed: int = 0
    failed_sims: int = 0
