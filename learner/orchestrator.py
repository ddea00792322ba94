"""The distributed DPO loop, top to bottom.

    pretrained checkpoint ─► frozen encoder: global tokens per scene (cached, object store)
    policy vN weights (object store, put there by the learner) ─► sim actors: K samples →
        MPM → render → reward service → pairs            (physgm.dpo steps 1–4)
    actors ─► bounded queue of rollouts (put blocks when full) ─► orchestrator
    orchestrator: dedupe by task id, drop stale pairs, batch ─► learner (DeepSpeed, steps
        5–6) ─► vN+1

Fault tolerance: actors restart (``max_restarts``); a task whose actor died is submitted
again and its pairs are counted once (by task id). The learner and this loop's progress
are checkpointed together every ``dpo.checkpoint_every`` steps and on Ctrl-C;
``run_dpo(..., resume=True)`` continues from there in the same MLflow run.
"""
from __future__ import annotations

import time
import uuid
from collections import deque
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import ray

from learner.artifacts import DPOLog
from learner.curve import clear_snapshots, save_snapshot, snapshot_path
from learner.dpo import DPOSetup
from learner.state import DPOState, build_tasks, save_state
from physgm.config import RunConfig
from runtime.ray_cluster import wait_ready


def _drain(queue, timeout: float) -> list:
    """All rollouts in the queue (waits up to ``timeout`` s for the first one)."""
    from ray.util.queue import Empty

    items = []
    try:
        items.append(queue.get(block=True, timeout=timeout))
        while True:
            items.append(queue.get_nowait())
    except Empty:
        pass
    return items


class Orchestrator:
    """Owns the actors, the learner, the queue and the run's ``DPOState``."""

    def __init__(self, cfg: RunConfig, setup: DPOSetup, state: DPOState, log: DPOLog,
                 on_step: Optional[Callable[["Orchestrator"], None]] = None):
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from actors.sim_actor import SimActor

        self.cfg, self.setup, self.state, self.log, self.on_step = cfg, setup, state, log, on_step
        self.learner = setup.learner
        # The queue lives on the driver's node: the run ends with the driver anyway, and a
        # queue on a (spot) sim node would end it with that node. It needs no CPU.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.queue = Queue(maxsize=cfg.dpo.queue_size,
                           actor_options={"num_cpus": 0, "scheduling_strategy": here})
        nonce = uuid.uuid4().hex[:6]  # names stay unique when runs follow each other
        self.actors = [
            SimActor.options(name=f"physgm-sim-actor-{i}-{nonce}", max_restarts=cfg.dpo.max_restarts,
                             max_task_retries=0, num_cpus=cfg.dpo.actor_cpus,
                             num_gpus=cfg.dpo.actor_gpus, resources=dict(cfg.dpo.actor_resources),
                             scheduling_strategy="SPREAD")  # a lost node takes few actors
            .remote(cfg, setup.model_cfg, setup.tokens_ref, setup.reward_handle, f"actor-{i}")
            for i in range(cfg.dpo.n_actors)]
        wait_ready({f"sim actor {i}": a.ping.remote() for i, a in enumerate(self.actors)},
                   "the simulation actors to start")
        self.weights_ref = self._publish()
        self.want_videos = True
        self.t_start = time.perf_counter()
        self.timings = {"sim_s": 0.0, "render_s": 0.0, "reward_s": 0.0, "learn_s": 0.0,
                        "queue_wait_s": 0.0, "publish_s": 0.0}
        self.last_metrics: dict = {}
        self.todo: deque = deque()  # tasks not yet submitted (redone ones first)
        self.in_flight: dict = {}  # ObjectRef of an actor's run → (actor index, task)
        self.idle: deque = deque(range(len(self.actors)))

    def _publish(self) -> ray.ObjectRef:
        """The learner's current weights as an object-store reference (the learner puts
        them there itself; only the reference passes through this process)."""
        return ray.get(self.learner.publish.remote())[0]

    # -- one learner step --------------------------------------------------------------
    def learn(self, batch: list) -> None:
        st, cfg = self.state, self.cfg
        t0 = time.perf_counter()
        metrics = ray.get(self.learner.step.remote(batch))
        self.timings["learn_s"] += time.perf_counter() - t0
        st.step += 1
        st.pairs_learned += len(batch)
        st.losses.append(float(metrics["loss"]))
        if st.step % cfg.dpo.publish_every == 0:
            t1 = time.perf_counter()
            self.weights_ref = self._publish()
            st.version += 1
            self.timings["publish_s"] += time.perf_counter() - t1
        elapsed = st.wall_s + time.perf_counter() - self.t_start
        metrics.update({
            "video_reward/mean": st.rewards_sum / max(st.rewards_count, 1),
            "pairs_per_s": st.pairs_received / max(elapsed, 1e-9),
            "policy_version": st.version, "staleness/dropped": st.stale_dropped,
            "failed_sims": st.failed_sims, "reward_errors": st.reward_errors,
            "actor_failures": st.actor_failures, "pairs_learned": st.pairs_learned})
        self.log.log_metrics({f"dpo/{k}": v for k, v in metrics.items()}, step=st.step)
        self.last_metrics = metrics
        if st.step % cfg.dpo.log_videos_every == 0:
            self.want_videos = True
        if cfg.eval.curve_every and st.step % cfg.eval.curve_every == 0:
            self.snapshot()
        if st.step % cfg.dpo.checkpoint_every == 0:
            self.checkpoint()
        if self.on_step is not None:
            self.on_step(self)

    # -- consuming rollouts ----------------------------------------------------------
    def consume(self, result) -> None:
        st = self.state
        if result.task_id in st.done_tasks:
            st.duplicates += 1  # a redone task whose first run had already reported
            return
        st.done_tasks.add(result.task_id)
        st.coverage[result.scene_id] = st.coverage.get(result.scene_id, 0) + 1
        st.pairs_received += len(result.pairs)
        st.failed_sims += result.failed_sims
        st.reward_errors += result.scoring_failed  # unscored candidates: in no pair
        scored = [r for r in result.rewards if np.isfinite(r)]
        st.rewards_sum += float(np.sum(scored))
        st.rewards_count += len(scored)
        for key in ("sim_s", "render_s", "reward_s"):
            self.timings[key] += result.timings.get(key, 0.0)
        for pair in result.pairs:
            if pair.policy_version < st.version - self.cfg.dpo.max_staleness:
                st.stale_dropped += 1
            else:
                st.buffer.append(pair)
        if result.videos:
            self.log.log_pair_video(result, st.step)

    def checkpoint(self) -> Path:
        self.state.wall_s += time.perf_counter() - self.t_start
        self.t_start = time.perf_counter()
        self.state.pending = list(self.in_flight_tasks())
        return save_state(self.cfg.run_dir, self.state,
                          lambda d: ray.get(self.learner.save.remote(d)))

    def snapshot(self) -> None:
        """The learner's physics head now → runs/<name>/dpo/curve/ (learner.curve)."""
        save_snapshot(self.cfg.run_dir, self.state.step,
                      ray.get(self.learner.weights.remote()))

    def in_flight_tasks(self):
        return [task for _, task in self.in_flight.values()
                if task.task_id not in self.state.done_tasks] + list(self.todo)

    # -- the loop --------------------------------------------------------------------
    def run(self) -> DPOState:
        cfg, st = self.cfg, self.state
        tasks = build_tasks(self.setup.scene_ids, cfg.dpo.epochs, cfg.dpo.seed)
        self.todo.extend(t for t in st.pending if t.task_id not in st.done_tasks)
        self.todo.extend(tasks[st.next_task:])
        st.next_task = len(tasks)
        st.pending = []
        idle = self.idle
        max_steps = cfg.dpo.steps
        curve = cfg.eval.curve_every
        if curve and st.step == 0:  # a fresh run: no snapshot of an earlier one stays
            clear_snapshots(cfg.run_dir)
            save_snapshot(cfg.run_dir, 0, self.setup.model.physics_head.state_dict())

        def finished() -> bool:
            return max_steps is not None and st.step >= max_steps

        while not finished():
            while idle and self.todo:
                a, task = idle.popleft(), self.todo.popleft()
                ref = self.actors[a].run.remote(task, self.weights_ref, st.version, self.queue,
                                                self.want_videos)
                self.want_videos = False
                self.in_flight[ref] = (a, task)
            t0 = time.perf_counter()
            for result in _drain(self.queue, timeout=0.2):
                self.consume(result)
            self.timings["queue_wait_s"] += time.perf_counter() - t0
            while len(st.buffer) >= cfg.dpo.batch_pairs and not finished():
                batch, st.buffer = st.buffer[:cfg.dpo.batch_pairs], st.buffer[cfg.dpo.batch_pairs:]
                self.learn(batch)
            if self.in_flight:
                ready, _ = ray.wait(list(self.in_flight), num_returns=len(self.in_flight),
                                    timeout=0)
                for ref in ready:
                    a, task = self.in_flight.pop(ref)
                    try:
                        ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as err:
                        st.actor_failures += 1  # the actor restarts; its task is done again
                        self.log.warn(f"{task.task_id} failed on actor {a}: "
                                          f"{type(err).__name__}; resubmitting")
                        if task.task_id not in st.done_tasks:
                            self.todo.appendleft(task)
                    idle.append(a)
            if not self.todo and not self.in_flight and self.queue.empty():
                if st.buffer and not finished():  # the last, partial batch
                    batch, st.buffer = st.buffer, []
                    self.learn(batch)
                break
        if curve and not snapshot_path(cfg.run_dir, st.step).is_file():
            self.snapshot()  # the last step: the head that becomes checkpoints/dpo
        self.checkpoint()
        return st

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
