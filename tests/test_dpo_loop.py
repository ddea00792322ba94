"""The distributed DPO loop on a local Ray cluster: end to end, an actor killed mid-run,
and a learner stopped and resumed (same MLflow run, exact task accounting)."""
import json

import numpy as np
import pytest
import ray

from dpo_fixtures import N_SCENES, make_world, small_cfg


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny synthetic dataset and a randomly initialised 'pretrained' checkpoint."""
    tmp = tmp_path_factory.mktemp("dpo")
    make_world(tmp)
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

    from learner.eval_summary import format_table, mlflow_metrics
    from learner.evaluate import run_comparison

    summary, rows = run_comparison(cfg, str(cfg.run_dir / "checkpoints" / "final"),
                                   s["checkpoint"], n_scenes=2)
    assert summary["n_scenes"] == len(rows) == 2 and 0.0 <= summary["win_rate"] <= 1.0
    for name in ("pretrained", "dpo"):
        assert summary[name]["reward"] <= 0.0 and 0.0 <= summary[name]["material_ok"] <= 1.0
    assert "w/ DPO" in format_table(summary)
    assert set(mlflow_metrics(summary)) >= {"eval/win_rate", "eval/video_reward/dpo",
                                            "eval/E_mae_log10/pretrained"}

    # `physgm run`'s data and eval stages: a validation and a final test store, each with
    # its own seed, then w/o vs w/ DPO on both
    from physgm.data.store import list_scenes, open_store, scene_attrs
    from pipeline.run import held_out_config, stage_eval, synthesize_held_out
    from runtime.tracking import client

    cfg = small_cfg(workdir, name="e2e", **{"eval.val_scenes": 2, "eval.test_scenes": 2})
    said = []
    say = lambda msg, transient=False: said.append(msg)  # noqa: E731
    synthesize_held_out(cfg, say)
    out = stage_eval(cfg, None, say)
    val, test = held_out_config(cfg, "val"), held_out_config(cfg, "test")
    seeds = {cfg.data.seed, val.data.seed, test.data.seed}
    assert len(seeds) == 3 and test.data.path == str(workdir / "test.zarr")  # beside data.path
    stores = {name: open_store(c.data.path) for name, c in (("train", cfg), ("val", val),
                                                              ("test", test))}
    trues = {name: [str(scene_attrs(root, i)["true"]) for i in list_scenes(root)]
             for name, root in stores.items()}
    assert len(trues["val"]) == len(trues["test"]) == 2
    assert not set(trues["test"]) & (set(trues["train"]) | set(trues["val"]))  # disjoint
    assert out["test"]["summary"]["n_scenes"] == 2 and "per_material" in out["test"]["summary"]
    assert (cfg.run_dir / "eval_test_table.txt").read_text() == out["test"]["table"] + "\n"
    assert (cfg.run_dir / "eval_val_table.txt").is_file()
    metrics = client(cfg).get_run(out["mlflow_run_id"]).data.metrics
    assert {"eval/win_rate", "eval/video_reward/dpo", "eval/val/win_rate",
            "eval/particle_dist/dpo"} <= set(metrics)
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
