"""Supervised pretraining of PhysGM: DeepSpeed data-parallel workers under Ray Train.

    for step in 1..S:                       (each worker, its own shard of training scenes;
                                             one input view count V per batch, the same on
                                             every worker, each V of pretrain.views equally
                                             often)
        for each of A accumulation micro-batches:
            predict Gaussians + π(m, z | images), render into the target views,
            loss = Σ w·(rgb, alpha, material CE, parameter NLL/MSE vs the ANNOTATOR's labels)
            backward                        (DeepSpeed averages gradients across workers)
        clip, AdamW, LR schedule            (DeepSpeed, at the accumulation boundary)
        every log_every:        mean metrics over workers → MLflow (rank 0)
        every val_every:        held-out scenes vs the TRUE parameters → MLflow (rank 0),
                                material accuracy also at each V of pretrain.report_views
        every checkpoint_every: full checkpoint (all ranks; atomic)
    final checkpoint → runs/<name>/checkpoints/final (``physgm.model.load_model`` reads it)

Scenes come from the pretraining store (``data.pretrain_store()``: image-only scenes, its
train split for training, its val split for validation) when ``data.pretrain_scenes`` > 0,
else from ``data.path``. ``run_pretrain`` is the driver: MLflow run, resume point, Ray
Train ``TorchTrainer`` (or one in-process worker with ``use_ray=False``), final checkpoint
as an artifact.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from physgm.config import RunConfig, dump_config
from physgm.model import PhysGM
from pretrain.checkpoint import (TrainState, latest_checkpoint, load_checkpoint,
                                 prune_checkpoints, read_state, save_checkpoint, step_name)
from pretrain.engine import build_engine
from pretrain.loader import ShardedBatches, collate_fn, open_scenes, stream
from pretrain.step import pretrain_step, resize_targets, to_device
from pretrain.validate import METRICS, material_by_views, psnr, validate
from runtime import tracking

STAGE = "pretrain"


def checkpoint_root(cfg: RunConfig) -> Path:
    return cfg.run_dir / "checkpoints"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group (DeepSpeed's, or Ray Train's)."""
    d = torch.distributed
    return (d.get_rank(), d.get_world_size()) if d.is_initialized() else (0, 1)


class WindowMeans:
    """Running sums of per-step scalars, averaged over workers when read."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.count = 0

    def add(self, values: dict[str, float]) -> None:
        """One step's scalars (a physics-only step has no image terms: each key is averaged
        over the steps that had it)."""
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1
        self.count += 1

    def mean_over_workers(self, device: torch.device) -> dict[str, float]:
        """Collective (call on every rank): the window's means, averaged over workers (the
        workers take the same steps, so they hold the same keys)."""
        keys = sorted(self.sums)
        t = torch.tensor([self.sums[k] / max(1, self.counts[k]) for k in keys],
                         dtype=torch.float64, device=device)
        d = torch.distributed
        if d.is_initialized() and d.get_world_size() > 1:
            d.all_reduce(t)
            t /= d.get_world_size()
        self.sums, self.counts, self.count = {}, {}, 0
        return dict(zip(keys, t.tolist()))


def _batch_scalars(out, batch) -> dict[str, float]:
    """Training-batch figures: loss terms, PSNR of the target renders, material accuracy
    against the labels it is trained on."""
    scalars = {("loss" if k == "total" else f"loss_{k}"): v for k, v in out.scalars().items()}
    if out.rgb is not None:
        target = batch["target_images"]
        if tuple(target.shape[-2:]) != tuple(out.rgb.shape[2:4]):  # rendered at render_size
            target = resize_targets(batch, out.rgb.shape[2])["target_images"]
        target = target.permute(0, 1, 3, 4, 2).flatten(0, 1)
        scalars["train_psnr"] = float(psnr(out.rgb.detach().flatten(0, 1), target).mean())
    pred = out.out.physics.logits.detach().argmax(-1)
    scalars["train_label_acc"] = float((pred == batch["material"]).float().mean())
    return scalars


def _progress_bar(total: int, start: int):
    """The in-process run's bar (a Ray Train run shows ``pretrain.progress`` on the driver)."""
    from tqdm import tqdm

    return tqdm(desc=STAGE, total=total, initial=start, unit="step", dynamic_ncols=True)


def train_worker(config: dict) -> dict:
    """Ray Train's ``train_loop_per_worker``; alone it is a one-worker run.

    ``config``: ``cfg`` (RunConfig as a dict), ``run_id`` (MLflow), ``resume_from``
    (checkpoint or None), ``progress`` (bool), ``in_ray`` (bool: a Ray Train worker),
    ``stop_at`` (optional step after which this invocation checkpoints and stops, to resume
    later). Returns the latest metrics (rank 0; {} elsewhere)."""
    cfg = RunConfig.model_validate(config["cfg"])
    p = cfg.pretrain
    in_ray = bool(config.get("in_ray"))
    if config.get("cwd"):  # Ray Train starts workers elsewhere: relative config paths
        os.chdir(config["cwd"])  # (data.path, out_dir) mean the driver's directory
    torch.set_num_threads(max(1, int(p.cpus_per_worker)))
    seed_everything(cfg.seed)
    render = dict(background=tuple(cfg.render.background), backend=cfg.render.backend,
                  tile_size=cfg.render.tile_size)

    # 1. model and DeepSpeed engine (same initial weights everywhere: same seed)
    engine = build_engine(PhysGM(cfg.model), p)
    rank, world = _rank_and_world()
    state = TrainState(world_size=world, mlflow_run_id=config.get("run_id"))
    if config.get("resume_from"):
        state = load_checkpoint(config["resume_from"], engine)
        state.mlflow_run_id = config.get("run_id") or state.mlflow_run_id
    else:
        seed_everything(cfg.seed + 1009 * rank)     # per-worker randomness from here on

    # 2. data: this worker's shard of the training scenes, ANNOTATOR labels only
    size = cfg.model.image_size
    store = pretrain_data(cfg)
    train_set = open_scenes(store, "train", p.views, p.n_targets, cfg.seed, "label", size)
    order = ShardedBatches(len(train_set), p.batch_size, rank, world, cfg.seed, views=p.views)
    batches = stream(train_set, order, state.epoch, state.index, collate_fn(), p.loader_workers)
    # ZeRO-3 gathers weights in every forward, so then every rank must run validation
    validator = rank == 0 or p.zero_stage == 3
    val_set = open_scenes(store, "val", (p.val_views, p.val_views), p.n_targets,
                          cfg.seed, "label", size) if validator else None
    stop_at = min(p.steps, config.get("stop_at") or p.steps)
    run_id = state.mlflow_run_id if rank == 0 else None
    bar = _progress_bar(p.steps, state.step) if rank == 0 and config.get("progress") \
        and not in_ray else None
    window, tic = WindowMeans(), time.perf_counter()

    # 3. the loop
    while state.step < stop_at:
        for _ in range(p.grad_accum):
            epoch, index, batch = next(batches)
            batch = to_device(batch, engine.device)
            out = pretrain_step(engine.model, batch, p.loss_weights, **render,
                                compute_dtype=engine.dtype, input_targets=p.input_targets,
                                render_size=p.render_size,
                                render=state.step % p.image_loss_every == 0,
                                depth=state.step % p.depth_every == 0)
            engine.backward_step(out.loss)
            state.epoch, state.index = order.advance(epoch, index)
            window.add(_batch_scalars(out, batch))
        state.step += 1
        state.samples += p.batch_size * p.grad_accum * world
        last = state.step == p.steps
        metrics: dict[str, float] = {}

        if state.step % p.log_every == 0 or state.step == stop_at:
            seen = p.batch_size * world * window.count
            metrics.update(window.mean_over_workers(engine.device))
            now = time.perf_counter()
            metrics["samples_per_s"] = seen / max(now - tic, 1e-9)
            metrics["lr"], tic = engine.lr, now
        if validator and (state.step % p.val_every == 0 or last):
            val = validate(engine.model, _val_batches(val_set, p.batch_size), engine.device,
                           engine.dtype, **render, max_scenes=p.val_scenes,
                           loss_weights=p.loss_weights)
            metrics.update({k: val[k] for k in METRICS if k in val}, val_loss=val["loss"])
            metrics.update({f"annotator/{k}": v for k, v in val["annotator"].items()})
            by_views = material_by_views(engine.model, val_set, p.report_views, p.batch_size,
                                         engine.device, engine.dtype, p.val_scenes)
            metrics.update({k: v for k, v in by_views.items() if k.startswith("material_acc")})
        if rank == 0 and metrics:
            state.metrics.update(metrics)
            if run_id:
                tracking.log_metrics(cfg, run_id, {f"{STAGE}/{k}": v for k, v in metrics.items()},
                                     state.step)
        if last or state.step % p.checkpoint_every == 0 or state.step == stop_at:
            target = checkpoint_root(cfg) / ("final" if last else step_name(state.step))
            save_checkpoint(target, engine, cfg, state)
            if rank == 0 and not last:
                prune_checkpoints(checkpoint_root(cfg), p.keep_checkpoints)
        if bar is not None:
            bar.update(1)
            if "loss" in metrics:
                bar.set_description(f"{STAGE} loss {metrics['loss']:.4f}")
    if bar is not None:
        bar.close()
    if in_ray:
        _report(cfg, state, rank)
    return dict(state.metrics) if rank == 0 else {}


def pretrain_data(cfg: RunConfig) -> str:
    """The store pretraining reads: the pretraining store when ``data.pretrain_scenes`` > 0,
    else ``data.path``."""
    return cfg.data.pretrain_store() or cfg.data.path


def _val_batches(dataset, batch_size: int):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn())


def _report(cfg: RunConfig, state: TrainState, rank: int) -> None:
    """Ray Train V2 keeps ``Result.metrics`` only for reports that carry a checkpoint."""
    import ray.train

    metrics = {f"{STAGE}/{k}": v for k, v in state.metrics.items()} if rank == 0 else {}
    metrics["step"] = state.step
    latest = latest_checkpoint(checkpoint_root(cfg)) if rank == 0 else None
    ckpt = ray.train.Checkpoint.from_directory(str(latest)) if latest is not None else None
    ray.train.report(metrics, checkpoint=ckpt)


# ---------------------------------------------------------------- driver
def resume_point(cfg: RunConfig, resume: bool, fresh: bool) -> Optional[Path]:
    """The checkpoint to resume from (None: start anew), deleting old ones with ``fresh``.
    Existing checkpoints without either flag are an error: say which flag to pass."""
    root = checkpoint_root(cfg)
    latest = latest_checkpoint(root)
    if fresh and root.exists():
        shutil.rmtree(root)
        return None
    if latest is not None and not resume:
        raise FileExistsError(f"{root} already holds checkpoints (newest: {latest.name}); pass "
                              "--resume to continue that run, --fresh to start over, or "
                              "--set name=<new name>")
    return latest if resume else None


def run_pretrain(cfg: RunConfig, resume: bool = False, fresh: bool = False,
                 parent_run_id: Optional[str] = None, use_ray: bool = True,
                 progress: bool = True, stop_at: Optional[int] = None) -> dict:
    """Pretrain ``cfg.model`` on ``pretrain_data(cfg)``; returns a summary (status, step, latest
    metrics, checkpoint, MLflow run id, wall time). Needs a scene store (`physgm data
    synth`). ``stop_at`` ends this invocation after that step with a checkpoint (status
    "stopped"; continue with ``resume=True``)."""
    start = time.perf_counter()
    resume_from = resume_point(cfg, resume, fresh)
    prior = read_state(resume_from) if resume_from else None
    if prior is not None and prior.step >= cfg.pretrain.steps:
        return {"status": "already_done", "step": prior.step, "metrics": prior.metrics,
                "checkpoint": str(resume_from), "mlflow_run_id": prior.mlflow_run_id}
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "config.yaml").write_text(dump_config(cfg))
    run = tracking.start_run(cfg, STAGE, parent_run_id=parent_run_id,
                             run_id=prior.mlflow_run_id if prior else None)
    run_id = run.info.run_id
    config = {"cfg": cfg.model_dump(mode="json"), "run_id": run_id, "stop_at": stop_at,
              "resume_from": str(resume_from) if resume_from else None, "progress": progress}
    status = "FAILED"
    try:
        if use_ray:
            from pretrain.progress import watch_training

            with watch_training(cfg, run_id, cfg.pretrain.steps, prior.step if prior else 0,
                                show=progress):
                metrics = _fit_ray(cfg, {**config, "in_ray": True, "cwd": os.getcwd()})
        else:
            metrics = _fit_local(config)
        latest = latest_checkpoint(checkpoint_root(cfg))
        state = read_state(latest)
        done = state.step >= cfg.pretrain.steps
        if done:
            tracking.log_artifacts(cfg, run_id, latest, "checkpoints/final")
            tracking.log_artifacts(cfg, run_id, _config_dir(cfg), "config")
        status = "FINISHED" if done else "KILLED"
    finally:
        import mlflow

        mlflow.end_run(status=status)
    return {"status": "ok" if done else "stopped", "step": state.step,
            "metrics": metrics or state.metrics, "checkpoint": str(latest),
            "mlflow_run_id": run_id, "tracking_uri": tracking.tracking_uri(cfg),
            "resumed_from": str(resume_from) if resume_from else None,
            "wall_s": round(time.perf_counter() - start, 1)}


def _config_dir(cfg: RunConfig) -> Path:
    d = cfg.run_dir / "pretrain_config"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(dump_config(cfg))
    return d


def _fit_local(config: dict) -> dict:
    """One in-process worker (no Ray): debugging, tests, single-core machines."""
    return train_worker(config)


def _fit_ray(cfg: RunConfig, config: dict) -> dict:
    from ray.train import RunConfig as RayRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    from runtime.ray_cluster import check_stage_fits, ensure_ray, log_dir

    p = cfg.pretrain
    ensure_ray(cfg, log_dir(cfg))
    check_stage_fits(cfg, "pretrain")
    trainer = TorchTrainer(
        train_worker, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=p.num_workers, use_gpu=p.use_gpu,
                                     resources_per_worker={"CPU": p.cpus_per_worker,
                                                           **p.resources_per_worker}),
        run_config=RayRunConfig(name=f"{cfg.name}-{STAGE}",
                                storage_path=str((cfg.run_dir / "ray").resolve()),
                                worker_runtime_env={"env_vars": _worker_env(cfg)}))
    # Ray Train installs its own SIGINT handler (abort the training run) and leaves it in
    # place: restore ours after fit, or a Ctrl-C in a later stage of `physgm run` (DPO) is
    # swallowed instead of checkpointing and exiting.
    previous = signal.getsignal(signal.SIGINT)
    try:
        result = trainer.fit()
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
    metrics = result.metrics or {}
    return {k[len(STAGE) + 1:]: v for k, v in metrics.items() if k.startswith(f"{STAGE}/")}


def _worker_env(cfg: RunConfig) -> dict[str, str]:
    """The training workers' environment on top of ``runtime.ray_cluster.worker_env``."""
    from runtime.ray_cluster import worker_env

    env = {**worker_env(), "OMP_NUM_THREADS": str(max(1, int(cfg.pretrain.cpus_per_worker)))}
    if not cfg.pretrain.use_gpu:
        env["DS_ACCELERATOR"] = "cpu"
    return env
