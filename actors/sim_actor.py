"""Ray simulation actor: one DPO task = one scene → K parameter sets sampled from the
current policy → K MPM simulations and renders → K rewards from the reward service →
winner/loser pairs pushed to the learner's bounded queue (``put`` blocks when it is full:
that is the back-pressure on the actors)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import ray
import torch

from actors.rollout import (Pair, build_pairs, make_pairs, sample_candidates, simulate_and_render,
                            task_seed)
from physgm.config import RunConfig


@dataclass
class Task:
    """One unit of work: ``task_id`` is unique per (epoch, position in the scene list)."""

    task_id: str
    scene_id: str
    epoch: int
    index: int


@dataclass
class RolloutResult:
    task_id: str
    scene_id: str
    policy_version: int
    pairs: list[Pair]
    rewards: list[float]
    statuses: list[str]
    timings: dict = field(default_factory=dict)
    actor: str = ""
    # for logged artifacts: the winner's and loser's videos (only when asked)
    videos: dict = field(default_factory=dict)


class SimActorCore:
    """The actor's logic, runnable without Ray for tests."""

    def __init__(self, cfg: RunConfig, model_cfg, tokens: dict, reward_client, name: str = ""):
        from physgm.model.physics_head import PhysicsHead

        torch.set_num_threads(1)
        self.cfg, self.tokens, self.reward, self.name = cfg, tokens, reward_client, name
        self.sim_cfg = cfg.sim.model_copy(update={"threads": max(1, int(cfg.dpo.actor_cpus))})
        self.head = PhysicsHead(model_cfg).eval()
        self.version = -1
        self.scenes: dict = {}

    def _scene(self, scene_id: str):
        from actors.scenes import load_rollout_scene

        if scene_id not in self.scenes:
            self.scenes[scene_id] = load_rollout_scene(self.cfg, scene_id, self.sim_cfg)
        return self.scenes[scene_id]

    def set_weights(self, weights: dict, version: int) -> None:
        if version != self.version:
            self.head.load_state_dict(weights)
            self.version = version

    def rollout(self, task: Task, weights: dict, version: int, keep_videos: bool = False
                ) -> RolloutResult:
        t0 = time.perf_counter()
        self.set_weights(weights, version)
        scene = self._scene(task.scene_id)
        with torch.no_grad():
            tokens = torch.tensor(self.tokens[task.scene_id]).float()[None]  # a copy: store arrays are read-only
            dist = self.head(tokens).distribution()
        materials, z = sample_candidates(dist, self.cfg.dpo.k,
                                         task_seed(self.cfg.dpo.seed, task.task_id),
                                         self.cfg.dpo.sampling)
        t1 = time.perf_counter()
        w, h = scene.reference.shape[2], scene.reference.shape[1]
        cands = [simulate_and_render(scene, int(m), z[i], w, h, self.cfg.render.backend)
                 for i, m in enumerate(materials)]
        t2 = time.perf_counter()
        # failed simulations are not sent: they get the failure reward (and are counted)
        ok = [i for i, c in enumerate(cands) if c.video is not None]
        errors_before = self.reward.errors
        scored = self.reward.score_candidates(task.scene_id, scene.reference,
                                              [cands[i].video for i in ok]) if ok else []
        rewards = np.full(len(cands), self.reward.failure_reward, np.float64)
        for i, res in zip(ok, scored):
            rewards[i] = res.reward
        t3 = time.perf_counter()
        indices = make_pairs(rewards, self.cfg.dpo.pair_mode, self.cfg.dpo.reward_margin)
        pairs = build_pairs(task.task_id, task.scene_id, cands, rewards, version, indices)
        videos = {}
        if keep_videos and pairs:  # the pair with the widest reward gap, as it was learned
            best, worst = max(indices, key=lambda wl: rewards[wl[0]] - rewards[wl[1]])
            videos = {"reference": scene.reference, "chosen": cands[best].video,
                      "rejected": cands[worst].video,
                      "chosen_params": cands[best].params.model_dump(mode="json"),
                      "rejected_params": cands[worst].params.model_dump(mode="json")}
        return RolloutResult(
            task.task_id, task.scene_id, version, pairs, rewards.tolist(),
            [c.status for c in cands],
            {"sample_s": t1 - t0, "sim_s": sum(c.sim_s for c in cands),
             "render_s": sum(c.render_s for c in cands), "reward_s": t3 - t2,
             "total_s": time.perf_counter() - t0,
             "failed_sims": len(cands) - len(ok), "reward_errors": self.reward.errors - errors_before},
            self.name, videos)


@ray.remote
class SimActor:
    """Ray wrapper: runs a task and pushes the result into the bounded queue."""

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
