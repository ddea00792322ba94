"""The distributed DPO loop on a local Ray cluster: end to end, an actor killed mid-run,
and a learner stopped and resumed (same MLflow run, exact task accounting)."""
import json

import numpy as np
import pytest
import ray
import torch

from physgm.config import load_config

N_SCENES = 6


def small_cfg(tmp, **over):
    sets = [f"out_dir={tmp}/runs", f"data.path={tmp}/data.zarr", "data.image_size=32",
            "data.video_frames=6", "data.max_particles=600", "data.n_views=2",
            "data.val_fraction=0.0", "data.test_fraction=0.3", "render.width=32",
            "render.height=32", "sim.grid_res=24", "dpo.k=3", "dpo.n_actors=2",
            "dpo.batch_pairs=2", "dpo.checkpoint_every=1", "dpo.epochs=2",
            "dpo.log_videos_every=2", "model.image_size=32"]
    return load_config(None, sets + [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny synthetic dataset and a randomly initialised 'pretrained' checkpoint."""
    from physgm.data.store import assign_splits, list_scenes, open_store, set_splits, write_scene
    from physgm.data.synth import generate_scene
    from physgm.model import PhysGM, save_model

    tmp = tmp_path_factory.mktemp("dpo")
    cfg = small_cfg(tmp)
    root = open_store(cfg.data.path, "w")
    for i in range(N_SCENES):
        res = generate_scene(i, cfg)
        write_scene(root, res.scene.scene_id, res.scene)
    set_splits(root, assign_splits(list_scenes(root), 0.0, 0.3))
    torch.manual_seed(0)
    save_model(cfg.run_dir / "checkpoints" / "final", PhysGM(cfg.model), cfg)
    yield tmp
    if ray.is_initialized():
        ray.shutdown()


def _metric_steps(cfg, run_id, key="dpo/loss"):
    from runtime.tracking import client

    return [m.step for m in client(cfg).get_metric_history(run_id, key)]


def test_dpo_end_to_end_counts_every_task_once(workdir):
    from learner.dpo import run_dpo
    from physgm.model import load_model

    cfg = small_cfg(workdir, name="e2e")
    (cfg.run_dir / "checkpoints").mkdir(parents=True)
    (cfg.run_dir / "checkpoints" / "final").symlink_to(workdir / "runs/quickstart/checkpoints/final")
    s = run_dpo(cfg, show=False)
    n_train = N_SCENES - 2
    assert s["tasks_done"] == 2 * n_train  # every scene once per epoch …
    assert set(s["coverage"].values()) == {2} and len(s["coverage"]) == n_train  # … exactly
    assert s["pairs_learned"] + s["stale_dropped"] == s["pairs_received"]
    assert s["steps"] >= s["pairs_learned"] // 2 and s["steps"] > 0
    assert s["policy_version"] == s["steps"]
    assert _metric_steps(cfg, s["mlflow_run_id"]) == list(range(1, s["steps"] + 1))
    model, _ = load_model(s["checkpoint"])  # the DPO model is a loadable checkpoint
    assert model.physics_head is not None

    from learner.evaluate import format_table, mlflow_metrics, run_comparison

    summary, rows = run_comparison(cfg, str(cfg.run_dir / "checkpoints" / "final"),
                                   s["checkpoint"], n_scenes=2)
    assert summary["n_scenes"] == len(rows) == 2 and 0.0 <= summary["win_rate"] <= 1.0
    for name in ("pretrained", "dpo"):
        assert summary[name]["reward"] <= 0.0 and 0.0 <= summary[name]["material_ok"] <= 1.0
    assert "w/ DPO" in format_table(summary)
    assert set(mlflow_metrics(summary)) >= {"eval/win_rate", "eval/video_reward/dpo",
                                            "eval/E_mae_log10/pretrained"}

    # `physgm run`'s eval stage: the test split, then fresh scenes (data.seed + 1)
    from pipeline.run import fresh_eval_config, stage_eval
    from physgm.data.store import list_scenes, open_store, scene_attrs
    from runtime.tracking import client

    cfg = small_cfg(workdir, name="e2e", **{"dpo.eval_fresh_scenes": 2, "dpo.eval_scenes": 2})
    said = []
    out = stage_eval(cfg, None, lambda msg, transient=False: said.append(msg))
    fresh = fresh_eval_config(cfg)
    assert fresh.data.seed == cfg.data.seed + 1 and fresh.data.path.startswith(str(cfg.run_dir))
    fresh_ids = list_scenes(open_store(fresh.data.path))
    assert len(fresh_ids) == 2 and out["fresh"]["summary"]["n_scenes"] == 2
    train_root, fresh_root = open_store(cfg.data.path), open_store(fresh.data.path)
    assert all(scene_attrs(fresh_root, i)["true"] != scene_attrs(train_root, i)["true"]
               for i in fresh_ids)  # other scenes than the training store's
    assert (cfg.run_dir / "eval_table.txt").is_file()
    assert (cfg.run_dir / "eval_fresh_table.txt").read_text() == out["fresh"]["table"] + "\n"
    metrics = client(cfg).get_run(out["mlflow_run_id"]).data.metrics
    assert {"eval/win_rate", "eval/fresh/win_rate", "eval/fresh/video_reward/dpo"} <= set(metrics)
    assert sum("w/ DPO" in m for m in said) == 2


def test_killed_actor_is_restarted_and_no_task_is_lost_or_doubled(workdir):
    from learner.dpo import run_dpo

    cfg = small_cfg(workdir, name="kill", **{"dpo.epochs": 3})
    killed = []

    def kill_busy_actor(orch):
        if not killed and orch.in_flight:
            a, _ = next(iter(orch.in_flight.values()))
            ray.kill(orch.actors[a], no_restart=False)  # crash; Ray restarts it
            killed.append(a)

    s = run_dpo(cfg, str(workdir / "runs/quickstart/checkpoints/final"), show=False,
                on_step=kill_busy_actor)
    assert killed and s["actor_failures"] >= 1
    n_train = N_SCENES - 2
    assert s["tasks_done"] == 3 * n_train
    assert set(s["coverage"].values()) == {3}
    assert s["pairs_learned"] + s["stale_dropped"] == s["pairs_received"]


def test_learner_stopped_then_resumed_continues_in_the_same_run(workdir):
    """(With the quickstart's mirrored couples, so the loop runs that mode too.)"""
    from learner.dpo import run_dpo
    from learner.state import load_state
    from runtime.tracking import client

    ckpt = str(workdir / "runs/quickstart/checkpoints/final")
    mirrored = {"dpo.k": 4, "dpo.sampling": "mirrored", "dpo.pair_mode": "mirrored"}
    cfg = small_cfg(workdir, name="resume", **{"dpo.steps": 2}, **mirrored)
    first = run_dpo(cfg, ckpt, show=False)
    assert first["steps"] == 2
    saved = load_state(cfg.run_dir)
    assert saved.step == 2 and saved.pending  # unfinished tasks are kept for the resume
    from learner.state import STATE_FILE, checkpoint_dir

    raw = json.loads((checkpoint_dir(cfg.run_dir) / STATE_FILE).read_text())
    assert isinstance(raw["pending"][0], dict) and raw["step"] == 2  # plain data, no classes
    assert len(saved.losses) == 2
    cfg2 = small_cfg(workdir, name="resume", **mirrored)
    second = run_dpo(cfg2, ckpt, resume=True, show=False)
    assert second["mlflow_run_id"] == first["mlflow_run_id"]
    assert second["steps"] > 2
    assert second["tasks_done"] == 2 * (N_SCENES - 2)
    assert set(second["coverage"].values()) == {2}
    assert _metric_steps(cfg2, second["mlflow_run_id"]) == list(range(1, second["steps"] + 1))
    losses = [m.value for m in sorted(client(cfg2).get_metric_history(
        second["mlflow_run_id"], "dpo/loss"), key=lambda m: m.step)]
    assert load_state(cfg2.run_dir).losses == pytest.approx(losses)  # the history survives resume
    if second["steps"] >= 3:
        assert second["loss_trend"]["first"]["mean"] == pytest.approx(
            np.mean(losses[:second["steps"] // 3]))
