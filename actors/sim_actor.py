"""Ray simulation actor: one DPO task = one scene → steps 1–4 of ``physgm.dpo`` (K parameter
sets sampled from the current policy, K MPM simulations and renders, K rewards from the
reward service, winner/loser pairs) → the result pushed to the learner's bounded queue
(``put`` blocks when it is full: that is the back-pressure on the actors)."""
from __future__ import annotations

import time

import numpy as np
import ray
import torch

from physgm.config import RunConfig
from physgm.dpo import (make_pairs, sample_candidates, score_candidates, simulate_and_render,
                        task_seed)
from runtime.messages import Pair, RolloutResult, Task


def build_pairs(task: Task, candidates: list, rewards: np.ndarray, version: int,
                indices: list[tuple[int, int]]) -> list[Pair]:
    """One Pair message per (chosen, rejected) candidate index pair of ``make_pairs``."""
    return [Pair(task.task_id, task.scene_id, candidates[w].material, candidates[w].z,
                 candidates[l].material, candidates[l].z, float(rewards[w]), float(rewards[l]),
                 version) for w, l in indices]


class SimActorCore:
    """The actor's logic, runnable without Ray for tests. ``reward_client``: a
    ``reward.service.RewardClient`` (or anything with its ``score_candidates`` and
    ``failure_reward``)."""

    def __init__(self, cfg: RunConfig, model_cfg, tokens: dict, reward_client, name: str = ""):
        from physgm.model.physics_head import PhysicsHead

        torch.set_num_threads(1)
        self.cfg, self.tokens, self.reward, self.name = cfg, tokens, reward_client, name
        self.threads = max(1, int(cfg.dpo.actor_cpus))
        self.head = PhysicsHead(model_cfg).eval()
        self.version = -1
        self.scenes: dict = {}

    def _scene(self, scene_id: str):
        from runtime.scenes import load_rollout_scene

        if scene_id not in self.scenes:
            self.scenes[scene_id] = load_rollout_scene(self.cfg, scene_id, self.threads,
                                                       trajectory=False)
        return self.scenes[scene_id]

    def set_weights(self, weights: dict, version: int) -> None:
        if version != self.version:
            self.head.load_state_dict(weights)
            self.version = version

    def rollout(self, task: Task, weights: dict, version: int, keep_videos: bool = False
                ) -> RolloutResult:
        dpo = self.cfg.dpo
        t0 = time.perf_counter()
        self.set_weights(weights, version)
        scene = self._scene(task.scene_id)
        with torch.no_grad():  # a copy of the tokens: object-store arrays are read-only
            dist = self.head(torch.tensor(self.tokens[task.scene_id]).float()[None]).distribution()
        materials, z = sample_candidates(dist, dpo.k, task_seed(dpo.seed, task.task_id),
                                         dpo.sampling, dpo.material, dpo.mirror_blocks)
        t1 = time.perf_counter()
        w, h = scene.reference.shape[2], scene.reference.shape[1]
        backend = self.cfg.render.backend
        if dpo.batch_candidates:
            cands, _ = simulate_and_render(scene, materials, z, w, h, backend)
        else:
            cands = [simulate_and_render(scene, [m], z[i:i + 1], w, h, backend)[0][0]
                     for i, m in enumerate(materials)]
        t2 = time.perf_counter()
        rewards, _ = score_candidates(
            lambda videos: self.reward.score_candidates(task.scene_id, scene.reference, videos),
            cands, self.reward.failure_reward)
        t3 = time.perf_counter()
        indices = make_pairs(rewards, dpo.pair_mode, dpo.reward_margin)
        pairs = build_pairs(task, cands, rewards, version, indices)
        videos = {}
        if keep_videos and pairs:  # the pair with the widest reward gap, as it was learned
            best, worst = max(indices, key=lambda wl: rewards[wl[0]] - rewards[wl[1]])
            videos = {"reference": scene.reference, "chosen": cands[best].video,
                      "rejected": cands[worst].video,
                      "chosen_params": cands[best].params.model_dump(mode="json"),
                      "rejected_params": cands[worst].params.model_dump(mode="json")}
        failed_sims = sum(c.video is None for c in cands)
        return RolloutResult(
            task.task_id, task.scene_id, version, pairs, rewards.tolist(),
            [c.status for c in cands],
            {"sample_s": t1 - t0, "sim_s": sum(c.sim_s for c in cands),
             "render_s": sum(c.render_s for c in cands), "reward_s": t3 - t2,
             "total_s": time.perf_counter() - t0},
            self.name, videos, scoring_failed=int(np.isnan(rewards).sum()),
            failed_sims=failed_sims)


@ray.remote
class SimActor:
    """Ray wrapper: runs a task and pushes the result into the bounded queue.

    Its constructor takes the scene tokens as an ObjectRef (resolved by Ray): on a restart
    after a crash Ray calls it again with the same arguments."""

    def __init__(self, cfg: RunConfig, model_cfg, tokens: dict, reward_handle, name: str):
        from reward.service import RewardClient

        self.core = SimActorCore(cfg, model_cfg, tokens, RewardClient(reward_handle, cfg.reward),
                                 name)

    def run(self, task: Task, weights: dict, version: int, queue, keep_videos: bool = False
            ) -> str:
        result = self.core.rollout(task, weights, version, keep_videos)
        queue.put(result, block=True)  # blocks while the learner is behind
        return task.task_id

    def ping(self) -> str:
        return self.core.name
