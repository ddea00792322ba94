"""End to end on a tiny synthesised scene store: the training loop learns, ``--resume``
continues exactly, 2 Ray Train workers log to MLflow, and ``physgm eval --json`` reports."""
import json
import os
import signal

import pytest
import torch

from physgm.config import RunConfig, build_config
from physgm.model import load_model
from runtime import tracking
from pretrain.checkpoint import list_checkpoints, read_state
from pretrain.train import run_pretrain
from tiny_model import TINY as TINY_MODEL

# near/far bracket the data's camera distances (0.65–1 m): with the default (0.5, 4) m the
# initial Gaussians lie behind the object and mostly outside the target views
TINY = {**TINY_MODEL, "near": 0.3, "far": 1.5}
DATA = dict(n_scenes=10, n_views=4, image_size=32, video_frames=3, max_particles=400,
            val_fraction=0.2, test_fraction=0.2, workers=2)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from physgm.data.build import synthesize

    path = tmp_path_factory.mktemp("data") / "scenes.zarr"
    cfg = build_config({"data": DATA, "sim": {"grid_res": 24}})
    report = synthesize(path, cfg)
    assert not report.failed
    return path


def _cfg(tmp_path, store, name="t", relative=False, **pretrain) -> RunConfig:
    p = dict(steps=8, warmup_steps=2, batch_size=2, lr=2e-3, views=[1, 3], n_targets=1,
             log_every=2, val_every=4, checkpoint_every=4, keep_checkpoints=1, num_workers=1)
    p.update(pretrain)
    out_dir, data = str(tmp_path / "runs"), str(store)
    if relative:  # paths as a user writes them in a YAML: relative to the current directory
        out_dir, data = "runs", os.path.relpath(store, tmp_path)
    return build_config({"name": name, "out_dir": out_dir, "model": TINY,
                         "data": {**DATA, "path": data}, "pretrain": p,
                         "render": {"backend": "torch"}})


@pytest.fixture(autouse=True)
def _own_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _history(cfg, run_id, key):
    return [m.value for m in sorted(tracking.client(cfg).get_metric_history(run_id, key),
                                    key=lambda m: m.step)]


def test_local_run_learns_and_writes_a_loadable_final_checkpoint(tmp_path, store):
    cfg = _cfg(tmp_path, store, steps=24, val_every=12, log_every=4, checkpoint_every=12)
    out = run_pretrain(cfg, use_ray=False, progress=False)
    assert out["status"] == "ok" and out["step"] == 24
    losses = _history(cfg, out["mlflow_run_id"], "pretrain/loss")
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0], losses
    for key in ("psnr", "material_acc", "E_mae_log10", "nu_mae", "annotator/material_acc"):
        assert len(_history(cfg, out["mlflow_run_id"], f"pretrain/{key}")) == 2, key
    assert 0.0 <= out["metrics"]["material_acc"] <= 1.0 and out["metrics"]["psnr"] > 5
    model, mcfg = load_model(cfg.run_dir / "checkpoints" / "final")
    assert mcfg == cfg.model
    assert [d.name for _, d in list_checkpoints(cfg.run_dir / "checkpoints")] == \
        ["step_0000012", "final"]
    with pytest.raises(FileExistsError, match="--resume"):
        run_pretrain(cfg, use_ray=False, progress=False)
    again = run_pretrain(cfg, resume=True, use_ray=False, progress=False)
    assert again["status"] == "already_done"


def test_resume_continues_exactly(tmp_path, store):
    straight = _cfg(tmp_path, store, name="straight", grad_accum=2)
    split = _cfg(tmp_path, store, name="split", grad_accum=2)
    a = run_pretrain(straight, use_ray=False, progress=False)
    first = run_pretrain(split, use_ray=False, progress=False, stop_at=3)
    assert first["status"] == "stopped" and first["step"] == 3
    state = read_state(first["checkpoint"])
    assert (state.step, state.samples) == (3, 3 * 2 * 2)
    b = run_pretrain(split, resume=True, use_ray=False, progress=False)
    assert b["status"] == "ok" and b["resumed_from"].endswith("step_0000003")
    assert b["mlflow_run_id"] == first["mlflow_run_id"]
    ma, _ = load_model(a["checkpoint"])
    mb, _ = load_model(b["checkpoint"])
    for (name, pa), pb in zip(ma.state_dict().items(), mb.state_dict().values()):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=0, msg=name)
    assert b["metrics"]["loss"] == pytest.approx(a["metrics"]["loss"], abs=1e-5)
    assert read_state(b["checkpoint"]).index == read_state(a["checkpoint"]).index


def test_two_ray_workers_log_to_mlflow(tmp_path, store, monkeypatch):
    import ray

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)       # left by in-process DeepSpeed runs
    monkeypatch.chdir(tmp_path)  # relative data.path/out_dir must mean this directory to
    cfg = _cfg(tmp_path, store, name="ray", relative=True, steps=4, batch_size=1,  # workers
               num_workers=2, val_every=4, checkpoint_every=4, log_every=1)
    ray.init(num_cpus=2, include_dashboard=False,
             runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}})
    handler = signal.getsignal(signal.SIGINT)
    try:
        out = run_pretrain(cfg, use_ray=True, progress=True)
    finally:
        ray.shutdown()
    assert out["status"] == "ok"
    # Ray Train's own Ctrl-C handler must not outlive fit (a later DPO stage needs ours).
    assert signal.getsignal(signal.SIGINT) is handler
    client = tracking.client(cfg)
    run = client.get_run(out["mlflow_run_id"])
    for key in ("pretrain/loss", "pretrain/psnr", "pretrain/material_acc", "pretrain/E_mae_log10"):
        assert key in run.data.metrics, key
    assert len(_history(cfg, run.info.run_id, "pretrain/loss")) == 4
    assert run.data.params["pretrain.num_workers"] == "2"
    assert run.data.params["model.dim"] == "32" and run.info.status == "FINISHED"
    arts = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints/final")]
    assert "checkpoints/final/model.pt" in arts
    state = read_state(cfg.run_dir / "checkpoints" / "final")
    assert state.world_size == 2 and state.samples == 4 * 1 * 2
    assert out["metrics"]["material_acc"] == pytest.approx(state.metrics["material_acc"])
    load_model(cfg.run_dir / "checkpoints" / "final")


def test_eval_cli_prints_figures(tmp_path, store):
    from typer.testing import CliRunner

    from physgm.cli import app

    cfg = _cfg(tmp_path, store, name="ev", steps=2, val_every=2, checkpoint_every=2)
    run_pretrain(cfg, use_ray=False, progress=False)
    ckpt = cfg.run_dir / "checkpoints" / "final"
    args = ["eval", "--checkpoint", str(ckpt), "--data", str(store), "--json",
            "--set", f"out_dir={cfg.out_dir}", "--set", "render.backend=torch"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    figures = json.loads(res.output.strip().splitlines()[-1])
    assert figures["split"] == "test" and figures["n_scenes"] == 2
    for key in ("psnr", "material_acc", "E_mae_log10", "nu_mae"):
        assert isinstance(figures[key], float), key
    assert set(figures["annotator"]) == {"material_acc", "E_mae_log10", "nu_mae"}
    assert 0 <= figures["annotator"]["material_acc"] <= 1
    table = CliRunner().invoke(app, args[:-5] + ["--set", "render.backend=torch"])
    assert table.exit_code == 0 and "annotator" in table.output
    every = CliRunner().invoke(app, args[:5] + ["--split", "all"] + args[5:])
    assert every.exit_code == 0, every.output  # a store never trained on: all its scenes
    assert json.loads(every.output.strip().splitlines()[-1])["n_scenes"] == DATA["n_scenes"]
    from runtime.scenes import scene_split
    assert len(scene_split(cfg.model_copy(update={"data": cfg.data.model_copy(
        update={"path": str(store)})}), "all")) == DATA["n_scenes"]
    bad = CliRunner().invoke(app, args[:5] + ["--split", "validation"])
    assert bad.exit_code == 2 and "train, val, test or all" in bad.output
    missing = CliRunner().invoke(app, ["eval", "--checkpoint", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no PhysGM checkpoint" in missing.output
    assert os.path.isdir(ckpt)
