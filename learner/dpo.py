"""``physgm dpo``: set up the DPO system on a Ray cluster and run the orchestrator.

Reads the pretrained checkpoint (default ``runs/<name>/checkpoints/final``), caches the
frozen encoder's global tokens of every scene, starts the reward service, the learner
actor and the simulation actors, and runs ``learner.orchestrator.Orchestrator``. Writes
``runs/<name>/checkpoints/dpo`` (the whole model with the DPO physics head), loadable by
``physgm.model.load_model`` like the pretrained one.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import ray

from physgm.config import ModelConfig, RunConfig


@dataclass
class DPOSetup:
    """Everything the orchestrator drives, but the sim actors (it starts those itself).

    ``model``: the pretrained PhysGM (CPU; its physics head receives the final weights);
    ``scene_ids``: the training scenes (the train split of data.path); ``tokens``: {scene id: (G, D)
    float32} global tokens of the frozen encoder, and ``tokens_ref`` the same in the object
    store (each actor gets the one copy); ``learner``: the ``LearnerCore`` Ray actor;
    ``reward_handle``: the reward service's Serve DeploymentHandle."""

    model: Any
    model_cfg: ModelConfig
    scene_ids: list[str]
    tokens: dict
    tokens_ref: ray.ObjectRef
    learner: Any
    reward_handle: Any


def pretrained_path(cfg: RunConfig, checkpoint: Optional[str]) -> Path:
    """``checkpoint``, else ``dpo.init_checkpoint``, else runs/<name>/checkpoints/final."""
    path = Path(checkpoint or cfg.dpo.init_checkpoint or cfg.run_dir / "checkpoints" / "final")
    if not path.exists():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path} (run `physgm pretrain "
                                f"--config …` first, or pass --checkpoint)")
    return path


def dpo_checkpoint_path(cfg: RunConfig) -> Path:
    return cfg.run_dir / "checkpoints" / "dpo"


def build_setup(cfg: RunConfig, checkpoint: Optional[str]) -> DPOSetup:
    """Model, tokens, reward service and learner actor (everything but the sim actors)."""
    from learner.learner import LearnerCore
    from physgm.model import load_model
    from reward.service import start_reward_service
    from runtime.ray_cluster import wait_ready, wait_serve_app
    from runtime.scenes import encode_scenes, scene_split

    model, model_cfg = load_model(pretrained_path(cfg, checkpoint), "cpu")
    scene_ids = scene_split(cfg, "train")
    tokens = encode_scenes(model, cfg, scene_ids,
                           cache=cfg.run_dir / "dpo" / "tokens.pt")
    use_gpu = cfg.dpo.learner_gpus > 0
    learner = ray.remote(LearnerCore).options(
        num_cpus=1, num_gpus=cfg.dpo.learner_gpus,
        resources=dict(cfg.dpo.learner_resources)).remote(
        model.physics_head.state_dict(), model_cfg, cfg.dpo, tokens, cfg.dpo.seed, use_gpu)
    reward = start_reward_service(cfg.reward)
    wait_ready({"the learner": learner.ready.remote()}, "the DPO learner to start")
    wait_serve_app("reward", "the reward service")
    return DPOSetup(model=model, model_cfg=model_cfg, scene_ids=scene_ids,
                    tokens=tokens, tokens_ref=ray.put(tokens), learner=learner,
                    reward_handle=reward)


def run_dpo(cfg: RunConfig, checkpoint: Optional[str] = None, resume: bool = False,
            parent_run_id: Optional[str] = None, show: bool = True,
            on_step: Optional[Callable] = None) -> dict:
    """Run (or resume) DPO; returns a summary with counts, timings and the output path."""
    from learner.state import DPOState, load_state
    from runtime.ray_cluster import check_stage_fits, ensure_ray, log_dir

    ensure_ray(cfg, log_dir(cfg))
    check_stage_fits(cfg, "dpo")
    t0 = time.perf_counter()
    state = load_state(cfg.run_dir) if resume else DPOState()
    setup = build_setup(cfg, checkpoint)
    try:
        summary = _loop(cfg, setup, state, resume, parent_run_id, show, on_step, t0)
    except BaseException:
        _release(setup)  # a failed run leaves no learner or reward service behind
        raise
    return summary


def _loop(cfg: RunConfig, setup: DPOSetup, state, resume: bool,
          parent_run_id: Optional[str], show: bool, on_step: Optional[Callable],
          t0: float) -> dict:
    """The DPO run on a built setup: resume, the orchestrator's loop in its MLflow run,
    the final weights saved, the summary logged."""
    from learner.artifacts import DPOLog
    from learner.eval_stats import loss_trend
    from learner.orchestrator import Orchestrator
    from learner.state import checkpoint_dir
    from physgm.model import save_model
    from runtime import tracking

    if resume:
        ray.get(setup.learner.load.remote(str(checkpoint_dir(cfg.run_dir) / "learner")))
    with tracking.start_run(cfg, "dpo", parent_run_id=parent_run_id,
                            run_id=state.mlflow_run_id) as run:
        state.mlflow_run_id = run.info.run_id
        log = DPOLog(cfg, run.info.run_id, fps=1.0 / cfg.sim.frame_dt)
        orch = Orchestrator(cfg, setup, state, log, on_step=_progress(show, on_step))
        try:
            orch.run()
        except KeyboardInterrupt:
            orch.checkpoint()
            raise
        finally:
            orch.shutdown()
            if show and orch.state.step:
                print(flush=True)  # end the status line
        setup.model.physics_head.load_state_dict(ray.get(setup.learner.weights.remote()))
        _release(setup)
        out = save_model(dpo_checkpoint_path(cfg), setup.model, cfg,
                         extra={"stage": "dpo", "step": state.step, "version": state.version})
        elapsed = time.perf_counter() - t0
        summary = {"steps": state.step, "policy_version": state.version,
                   "tasks_done": len(state.done_tasks), "pairs_received": state.pairs_received,
                   "pairs_learned": state.pairs_learned, "stale_dropped": state.stale_dropped,
                   "duplicates": state.duplicates, "failed_sims": state.failed_sims,
                   "reward_errors": state.reward_errors,
                   "actor_failures": state.actor_failures, "coverage": dict(state.coverage),
                   "wall_s": round(elapsed, 1), "timings": orch.timings,
                   "pairs_per_hour": round(state.pairs_received / max(elapsed, 1e-9) * 3600, 1),
                   "checkpoint": str(out.parent if out.is_file() else out),
                   "mlflow_run_id": state.mlflow_run_id, "last_metrics": orch.last_metrics,
                   "loss_trend": loss_trend(state.losses) if len(state.losses) >= 3 else None}
        tracking.log_dict(cfg, run.info.run_id, summary, "dpo_summary.json")
    return summary


def _release(setup: DPOSetup) -> None:
    """Free the learner and the reward service. Serve is shut down too: the DPO loop ran it
    without an HTTP proxy, and the Ray instance may host the model's HTTP app next."""
    from ray import serve

    try:
        ray.kill(setup.learner, no_restart=True)
    except ValueError:  # not an actor handle any more
        pass
    serve.shutdown()  # a no-op when Serve is not running


def _progress(show: bool, extra: Optional[Callable]):
    """A per-step callback: one status line (step, loss, reward accuracy, margin, tasks),
    rewritten in place, so a long run does not scroll the console."""
    def callback(orch) -> None:
        if show:
            m = orch.last_metrics
            sys.stdout.write(f"\r  dpo step {orch.state.step:4d} · loss {m['loss']:.4f} · acc "
                             f"{m['rewards/accuracies']:.2f} · margin "
                             f"{m['rewards/margins']:+.4f} · v{orch.state.version} · "
                             f"{len(orch.state.done_tasks)} tasks ")
            sys.stdout.flush()
        if extra is not None:
            extra(orch)
    return callback
