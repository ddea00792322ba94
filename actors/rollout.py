"""One DPO rollout without Ray: sample K parameter sets from the policy for a scene,
simulate each with MPM, render each from the ground-truth video camera, and turn rewards
into winner/loser pairs. The Ray actor (``sim_actor.py``) wraps these functions."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from physgm.camera import Camera
from physgm.config import MPMConfig
from physgm.gaussians import Gaussians
from physgm.materials import MATERIALS, PhysParams, denormalize


@dataclass
class RolloutScene:
    """What an actor needs to re-simulate a scene with other parameters.

    particles (N, 3) [m] and volumes (N,) [m³] for the MPM; gaussians: the object's
    Gaussians, Gaussian i following particle i (i < len(gaussians)); camera: the GT video
    camera; reference (T, H, W, 3) uint8: the GT video; velocity (3,) [m/s] initial.
    """

    scene_id: str
    particles: np.ndarray
    volumes: np.ndarray
    gaussians: Gaussians
    camera: Camera
    reference: np.ndarray
    sim: MPMConfig
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    reference_alpha: Optional[np.ndarray] = None
    true: Optional[PhysParams] = None  # the physics that made the reference (evaluation only)

    @property
    def n_frames(self) -> int:
        return int(self.reference.shape[0])


@dataclass
class Candidate:
    """One sampled parameter set and its video (None when the simulation failed)."""

    material: int
    z: np.ndarray  # (P,) normalised parameters as sampled (before clipping)
    params: PhysParams
    video: Optional[np.ndarray]
    status: str
    sim_s: float
    render_s: float
    message: str = ""


@dataclass
class Pair:
    """A preference pair for the learner: chosen = higher video reward."""

    task_id: str
    scene_id: str
    chosen_material: int
    chosen_z: np.ndarray
    rejected_material: int
    rejected_z: np.ndarray
    chosen_reward: float
    rejected_reward: float
    policy_version: int


def task_seed(base_seed: int, task_id: str) -> int:
    """A stable 63-bit seed per (run seed, task): a redone task samples the same K sets."""
    digest = hashlib.sha256(f"{base_seed}:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_candidates(dist, k: int, seed: int, mode: str = "independent"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """K draws from a batch-of-one PhysicsDistribution: (materials (K,), z (K, P)); ``mode``
    as ``PhysicsDistribution.sample`` (``dpo.sampling``)."""
    gen = torch.Generator(device=dist.logits.device).manual_seed(seed)
    materials, z = dist.sample(k, generator=gen, mode=mode)
    return materials[0].cpu().numpy(), z[0].float().cpu().numpy()


def simulate_and_render(scene: RolloutScene, material: int, z: np.ndarray, width: int,
                        height: int, backend: str = "auto") -> Candidate:
    """Simulate the scene's object with one sampled parameter set and render the video.

    A simulation that is not "ok" (unstable, escaped) gives ``video=None``: the reward
    service scores it with the failure reward; the error never propagates."""
    from physgm.render import render_video
    from physgm.sim import simulate

    params = denormalize(MATERIALS[int(material)], z)
    sim_cfg = scene.sim.model_copy(update={"n_frames": scene.n_frames - 1})
    t0 = time.perf_counter()
    result = simulate(scene.particles, params, sim_cfg, volumes=scene.volumes,
                      velocities=scene.velocity)
    sim_s = time.perf_counter() - t0
    if result.status != "ok":
        return Candidate(int(material), z, params, None, result.status, sim_s, 0.0,
                         result.message)
    n = len(scene.gaussians)
    t1 = time.perf_counter()
    video = render_video(scene.gaussians, result.positions[:, :n], result.deformation[:, :n],
                         scene.camera, width, height, backend=backend)
    return Candidate(int(material), z, params, video, "ok", sim_s, time.perf_counter() - t1)


def simulate_and_score(scene: RolloutScene, scorer, material: int, z: np.ndarray, width: int,
                       height: int, backend: str = "auto"):
    """One parameter set simulated, rendered and scored in-process against the scene's
    reference (``scorer``: a ``reward.scorer.RewardScorer`` whose reference for
    ``scene.scene_id`` is prepared) → (Candidate, RewardResult); a failed simulation gets
    the scorer's failure reward. The DPO actors score K videos at once via the reward
    service instead."""
    cand = simulate_and_render(scene, material, z, width, height, backend)
    res = (scorer.failed(cand.status, cand.message) if cand.video is None
           else scorer.score_batch(scene.scene_id, [cand.video])[0])
    return cand, res


def make_pairs(rewards: np.ndarray, mode: str = "best_worst", margin: float = 0.0
               ) -> list[tuple[int, int]]:
    """Indices (chosen, rejected) from K rewards (higher = better).

    best_worst: the best against the worst, if their rewards differ by more than
    ``margin``; margin: every (i, j) with rewards[i] − rewards[j] > margin; mirrored: within
    each couple (2c, 2c + 1) of mirrored samples, the better against the worse if they
    differ by more than ``margin``."""
    r = np.asarray(rewards, np.float64)
    if r.ndim != 1 or len(r) < 2:
        raise ValueError(f"make_pairs needs ≥ 2 rewards, got shape {r.shape}")
    if mode == "best_worst":
        best, worst = int(np.argmax(r)), int(np.argmin(r))
        return [(best, worst)] if r[best] - r[worst] > margin else []
    if mode == "margin":
        return [(i, j) for i in range(len(r)) for j in range(len(r)) if r[i] - r[j] > margin]
    if mode == "mirrored":
        if len(r) % 2:
            raise ValueError(f"mirrored pairs need an even number of rewards, got {len(r)}")
        couples = [(i, i + 1) if r[i] >= r[i + 1] else (i + 1, i) for i in range(0, len(r), 2)]
        return [(w, l) for w, l in couples if r[w] - r[l] > margin]
    raise ValueError(f"pair mode must be 'best_worst', 'margin' or 'mirrored', got '{mode}'")


def build_pairs(task_id: str, scene_id: str, candidates: list[Candidate], rewards: np.ndarray,
                version: int, indices: list[tuple[int, int]]) -> list[Pair]:
    """One Pair per (chosen, rejected) candidate index pair of ``make_pairs``."""
    return [Pair(task_id, scene_id, candidates[w].material, candidates[w].z,
                 candidates[l].material, candidates[l].z, float(rewards[w]), float(rewards[l]),
                 version) for w, l in indices]
