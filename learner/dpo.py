"""``physgm dpo``: set up the DPO system on a Ray cluster and run the orchestrator.

Reads the pretrained checkpoint (default ``runs/<name>/checkpoints/final``), caches the
frozen encoder's global tokens of every scene, starts the reward service, the learner
actor and the simulation actors, and runs ``learner.orchestrator.Orchestrator``. Writes
``runs/<name>/checkpoints/dpo`` (the whole model with the DPO physics head), loadable by
``physgm.model.load_model`` like the pretrained one.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import ray

from physgm.config import RunConfig


def cpus_needed(cfg: RunConfig) -> float:
    """Logical CPUs the DPO roles reserve: actors, learner, reward replicas."""
    return (cfg.dpo.n_actors * cfg.dpo.actor_cpus + 1.0
            + cfg.reward.replicas * cfg.reward.num_cpus)


def ensure_ray(cfg: Optional[RunConfig] = None) -> None:
    """Connect to the cluster of ``RAY_ADDRESS`` or start a local one (no dashboard).

    Locally the logical CPU count is at least what the roles reserve, so that a 2-core
    machine can host 2 actors + learner + reward (they take turns on the cores)."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return
    cpus = max(os.cpu_count() or 1, int(cpus_needed(cfg) + 0.999) if cfg else 0)
    # address="local": always a fresh local instance, never a stray cluster on this host
    ray.init(address="local", num_cpus=cpus, include_dashboard=False)


def pretrained_path(cfg: RunConfig, checkpoint: Optional[str]) -> Path:
    path = Path(checkpoint) if checkpoint else cfg.run_dir / "checkpoints" / "final"
    if not path.exists():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path} (run `physgm pretrain "
                                f"--config …` first, or pass --checkpoint)")
    return path


def dpo_checkpoint_path(cfg: RunConfig) -> Path:
    return cfg.run_dir / "checkpoints" / "dpo"


def setup(cfg: RunConfig, checkpoint: Optional[str]):
    """Model, tokens, reward service and learner actor (everything but the sim actors)."""
    from actors.scenes import encode_scenes, scene_split
    from learner.learner import LearnerCore
    from physgm.model import load_model
    from reward.service import start_reward_service

    model, model_cfg = load_model(pretrained_path(cfg, checkpoint), "cpu")
    scene_ids = scene_split(cfg, "train")
    eval_ids = scene_split(cfg, "test")
    tokens = encode_scenes(model, cfg, scene_ids + eval_ids,
                           cache=cfg.run_dir / "dpo" / "tokens.pt")
    use_gpu = cfg.dpo.learner_gpus > 0
    learner = ray.remote(LearnerCore).options(
        num_cpus=1, num_gpus=cfg.dpo.learner_gpus,
        resources=dict(cfg.dpo.learner_resources)).remote(
        model.physics_head.state_dict(), model_cfg, cfg.dpo, tokens, cfg.dpo.seed, use_gpu)
    return SimpleNamespace(model=model, model_cfg=model_cfg, scene_ids=scene_ids,
                           eval_ids=eval_ids, tokens=tokens, tokens_ref=ray.put(tokens),
                           learner=learner, reward_handle=start_reward_service(cfg.reward))


def run_dpo(cfg: RunConfig, checkpoint: Optional[str] = None, resume: bool = False,
            parent_run_id: Optional[str] = None, show: bool = True,
            on_step: Optional[Callable] = None) -> dict:
    """Run (or resume) DPO; returns a summary with counts, timings and the output path."""
    from learner.artifacts import DPOTracker
    from learner.eval_stats import loss_trend
    from learner.orchestrator import Orchestrator
    from learner.state import DPOState, checkpoint_dir, load_state
    from physgm.model import save_model
    from pretrain.tracking import start_run

    ensure_ray(cfg)
    t0 = time.perf_counter()
    state = load_state(cfg.run_dir) if resume else DPOState()
    env = setup(cfg, checkpoint)
    if resume:
        ray.get(env.learner.load.remote(str(checkpoint_dir(cfg.run_dir) / "learner")))
    with start_run(cfg, "dpo", parent_run_id=parent_run_id, run_id=state.mlflow_run_id) as run:
        import mlflow

        state.mlflow_run_id = run.info.run_id
        orch = Orchestrator(cfg, env, state, DPOTracker(mlflow, fps=1.0 / cfg.sim.frame_dt),
                            on_step=_progress(cfg, show, on_step))
        try:
            orch.run()
        except KeyboardInterrupt:
            orch.checkpoint()
            raise
        finally:
            orch.shutdown()
        env.model.physics_head.load_state_dict(ray.get(env.learner.weights.remote()))
        _release(env)
        out = save_model(dpo_checkpoint_path(cfg), env.model, cfg,
                         extra={"stage": "dpo", "step": state.step, "version": state.version})
        elapsed = time.perf_counter() - t0
        summary = {"steps": state.step, "policy_version": state.version,
                   "tasks_done": len(state.done_tasks), "pairs_received": state.pairs_received,
                   "pairs_learned": state.pairs_learned, "stale_dropped": state.stale_dropped,
                   "duplicates": state.duplicates, "failed_sims": state.failed_sims,
                   "actor_failures": state.actor_failures, "coverage": dict(state.coverage),
                   "wall_s": round(elapsed, 1), "timings": orch.timings,
                   "pairs_per_hour": round(state.pairs_received / max(elapsed, 1e-9) * 3600, 1),
                   "checkpoint": str(out.parent if out.is_file() else out),
                   "mlflow_run_id": state.mlflow_run_id,
                   "last_metrics": getattr(orch, "last_metrics", {}),
                   "loss_trend": loss_trend(state.losses) if len(state.losses) >= 3 else None}
        mlflow.log_dict(summary, "dpo_summary.json")
    return summary


def _release(env) -> None:
    """Free the learner and the reward service. Serve is shut down too: the DPO loop ran it
    without an HTTP proxy, and the Ray instance may host the model's HTTP app next."""
    from ray import serve

    ray.kill(env.learner, no_restart=True)
    serve.delete("reward")
    serve.shutdown()


def _progress(cfg: RunConfig, show: bool, extra: Optional[Callable]):
    """A per-step callback printing step, loss, reward accuracy and pairs/s."""
    def callback(orch) -> None:
        if show:
            m = orch.last_metrics
            print(f"  dpo step {orch.state.step:4d} · loss {m['loss']:.4f} · acc "
                  f"{m['rewards/accuracies']:.2f} · margin {m['rewards/margins']:+.4f} · "
                  f"video reward {m['video_reward/mean']:.4f} · v{orch.state.version} · "
                  f"{len(orch.state.done_tasks)} tasks", flush=True)
        if extra is not None:
            extra(orch)
    return callback
