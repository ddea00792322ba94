"""Pretraining pieces without DeepSpeed or Ray: schedule, DeepSpeed config, sharded loader,
RNG capture, checkpoint listing, validation metrics, the training step and MLflow helpers."""
import math
import pickle
import random

import numpy as np
import pytest
import torch

from physgm.config import ModelConfig, PretrainConfig, RunConfig
from physgm.materials import MATERIALS, PhysParams, normalize
from physgm.model import PhysGM
from pretrain.checkpoint import STATE_FILE, latest_checkpoint, list_checkpoints, prune_checkpoints
from pretrain.engine import deepspeed_config, param_groups
from pretrain.loader import ShardedBatches, stream
from pretrain.schedule import WarmupCosine, lr_factor, warmup_cosine
from pretrain.step import check_batch, pretrain_step
from pretrain.synthetic import synthetic_batch
from pretrain.validate import physics_errors, psnr, summarize
from runtime.distributed import capture_rng, restore_rng
from tiny_model import TINY


# ---------------------------------------------------------------- schedule
def test_lr_factor_matches_formula():
    W, S, r = 10, 110, 0.1
    assert lr_factor(0, W, S, r) == pytest.approx(1 / W)
    assert lr_factor(4, W, S, r) == pytest.approx(5 / W)
    assert lr_factor(W, W, S, r) == pytest.approx(1.0)
    assert lr_factor(S, W, S, r) == pytest.approx(r)
    assert lr_factor(S + 50, W, S, r) == pytest.approx(r)
    mid = W + (S - W) // 2
    assert lr_factor(mid, W, S, r) == pytest.approx(r + (1 - r) * 0.5)
    after = [lr_factor(s, W, S, r) for s in range(W, S + 1)]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert lr_factor(0, 0, 10, 0.0) == pytest.approx(1.0)      # no warm-up
    with pytest.raises(ValueError):
        lr_factor(-1, W, S)


def test_warmup_cosine_scheduler_state_round_trips():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = warmup_cosine(opt, 3, 20, 0.0)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([2.0 * lr_factor(s, 3, 20) for s in range(5)])
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched2 = warmup_cosine(opt2, 99, 999, 0.5)          # wrong settings, overwritten by state
    sched2.load_state_dict(sched.state_dict())
    assert sched2.lr_lambdas[0].total_steps == 20
    assert pickle.loads(pickle.dumps(WarmupCosine(3, 20)))(3) == pytest.approx(1.0)


# ---------------------------------------------------------------- engine config
def test_deepspeed_config_from_pretrain_config():
    cfg = PretrainConfig(batch_size=3, grad_accum=2, zero_stage=1, grad_clip=0.5, lr=1e-3)
    ds = deepspeed_config(cfg, world_size=2, gpu=False)
    assert ds["train_batch_size"] == 3 * 2 * 2
    assert ds["train_micro_batch_size_per_gpu"] == 3
    assert ds["gradient_accumulation_steps"] == 2
    assert ds["zero_optimization"]["stage"] == 1
    assert ds["gradient_clipping"] == 0.5
    assert ds["optimizer"]["type"] == "AdamW"
    assert ds["optimizer"]["params"]["torch_adam"] is True
    assert ds["optimizer"]["params"]["lr"] == 1e-3
    assert not ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert deepspeed_config(cfg, 1, gpu=True)["bf16"]["enabled"]
    assert not deepspeed_config(PretrainConfig(bf16=False), 1, gpu=True)["bf16"]["enabled"]
    with pytest.raises(ValueError):
        deepspeed_config(cfg, 0, gpu=False)


def test_param_groups_decay_only_matrices():
    model = PhysGM(ModelConfig(**TINY))
    decay, keep = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and keep["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    kept = {id(p) for p in keep["params"]}
    assert id(model.global_tokens) in kept and id(model.view_embed) in kept
    n_all = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(decay["params"]) + len(keep["params"]) == n_all


def test_pretrain_config_views_validated():
    with pytest.raises(ValueError, match="pretrain.views"):
        PretrainConfig(views=(3, 2))


# ---------------------------------------------------------------- loader
def test_sharded_batches_are_disjoint_equal_and_deterministic():
    shards = [ShardedBatches(23, 3, rank=r, world=2, seed=5) for r in range(2)]
    assert shards[0].per_epoch == shards[1].per_epoch == 3      # ⌊⌊23/2⌋/3⌋
    e0 = [sum(s.epoch_batches(0), []) for s in shards]
    assert not set(e0[0]) & set(e0[1])
    assert e0[0] == sum(ShardedBatches(23, 3, 0, 2, 5).epoch_batches(0), [])
    assert sum(shards[0].epoch_batches(1), []) != e0[0]          # reshuffled per epoch
    assert shards[0].advance(0, 1) == (0, 2) and shards[0].advance(0, 2) == (1, 0)
    with pytest.raises(ValueError, match="batch_size"):
        ShardedBatches(5, 4, rank=0, world=2)


def test_stream_resumes_at_its_position():
    class Items(torch.utils.data.Dataset):
        epoch = -1

        def __len__(self):
            return 10

        def set_epoch(self, e):
            self.epoch = e

        def __getitem__(self, i):
            return (self.epoch, i)

    order = ShardedBatches(10, 2, seed=1)
    full = stream(Items(), order, collate=list)
    seen = [next(full) for _ in range(12)]                      # 2.4 epochs
    epoch, index, _ = seen[7]
    epoch, index = order.advance(epoch, index)
    resumed = stream(Items(), order, epoch, index, collate=list)
    assert [next(resumed) for _ in range(4)] == seen[8:12]
    assert all(item[0] == e for e, _, batch in seen for item in batch)   # set_epoch applied


# ---------------------------------------------------------------- RNG and checkpoint listing
def test_rng_capture_restore_round_trip():
    state = capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(2))
    restore_rng(state)
    b = (random.random(), np.random.rand(), torch.rand(2))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_list_latest_and_prune(tmp_path):
    import json

    for name, step in (("step_0000010", 10), ("step_0000020", 20), ("step_0000030", 30),
                       ("final", 40), (".tmp-step_0000050", 50), ("junk", 99)):
        (tmp_path / name).mkdir()
        if name != "junk":
            (tmp_path / name / STATE_FILE).write_text(json.dumps({"step": step}))
    assert [s for s, _ in list_checkpoints(tmp_path)] == [10, 20, 30, 40]
    assert latest_checkpoint(tmp_path).name == "final"
    gone = prune_checkpoints(tmp_path, keep=1)
    assert sorted(d.name for d in gone) == ["step_0000010", "step_0000020"]
    assert sorted(d.name for _, d in list_checkpoints(tmp_path)) == ["final", "step_0000030"]
    assert latest_checkpoint(tmp_path / "missing") is None


# ---------------------------------------------------------------- validation metrics
def test_psnr_formula():
    a = torch.zeros(2, 4, 4, 3)
    b = torch.full((2, 4, 4, 3), 0.1)
    assert psnr(a, b).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert float(psnr(a, a)[0]) == pytest.approx(100.0)          # clamped at eps = 1e-10


def test_physics_errors_by_hand():
    true = [PhysParams.default("jelly", E=1e5, nu=0.3), PhysParams.default("metal", E=1e6, nu=0.3)]
    guess = [PhysParams.default("jelly", E=1e4, nu=0.25), PhysParams.default("sand", E=1e6, nu=0.35)]
    z = lambda ps: torch.from_numpy(np.stack([normalize(p)[0] for p in ps]))   # noqa: E731
    m = lambda ps: torch.tensor([MATERIALS.index(p.material) for p in ps])    # noqa: E731
    err = physics_errors(m(guess), z(guess), m(true), z(true))
    assert err["correct"].tolist() == [True, False]
    assert err["E_err_log10"] == pytest.approx([1.0, 0.0], abs=1e-5)
    assert err["nu_err"] == pytest.approx([0.05, 0.05], abs=1e-5)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 0] = False                                           # no E given for scene 1
    err = physics_errors(m(guess), z(guess), m(true), z(true), pred_mask=mask)
    assert math.isnan(err["E_err_log10"][1])
    s = summarize({k: [v] for k, v in err.items()})
    assert s["material_acc"] == 0.5 and s["E_mae_log10"] == pytest.approx(1.0, abs=1e-5)
    # predictions outside the predicted material's range are clipped into it
    wild = z(guess)
    wild[0, 0] = 10.0
    assert physics_errors(m(guess), wild, m(true), z(true))["E_err_log10"][0] == \
        pytest.approx(1.0, abs=1e-5)                             # jelly E ≤ 1e6


# ---------------------------------------------------------------- training step
def test_pretrain_step_losses_and_gradients():
    torch.manual_seed(0)
    model = PhysGM(ModelConfig(**TINY))
    batch = synthetic_batch(2, n_views=2, n_targets=2, size=32)
    out = pretrain_step(model, batch, {"rgb": 1.0, "alpha": 0.1, "material": 0.1,
                                       "params": 0.01}, backend="torch")
    assert out.rgb.shape == (2, 2, 32, 32, 3) and out.alpha.shape == (2, 2, 32, 32)
    terms = out.scalars()
    assert set(terms) >= {"rgb", "alpha", "depth", "material", "param_nll", "param_mse",
                          "total"}
    expect = (terms["rgb"] + 0.1 * terms["alpha"] + terms["depth"] + 0.1 * terms["material"]
              + 0.01 * (terms["param_nll"] + terms["param_mse"]))    # depth: default weight 1
    assert terms["total"] == pytest.approx(expect, rel=1e-5)
    out.loss.backward()
    assert model.backbone.vit.patch_embed.weight.grad.abs().sum() > 0    # through the renderer
    assert model.physics_head.material[-1].weight.grad.abs().sum() > 0
    assert model.gaussian_head.decode[-1].weight.grad.abs().sum() > 0


def test_check_batch_names_the_problem():
    batch = synthetic_batch(1, size=16)
    del batch["target_K"]
    with pytest.raises(ValueError, match="target_K"):
        check_batch(batch)
    batch = synthetic_batch(2, size=16)
    batch["material"] = batch["material"][:1]
    with pytest.raises(ValueError, match="material"):
        check_batch(batch)


# ---------------------------------------------------------------- MLflow
@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = RunConfig(out_dir=str(tmp_path / "runs"), name="t")
    yield cfg
    import mlflow

    while mlflow.active_run():
        mlflow.end_run()


def test_tracking_uri_default_and_env(mlflow_store, monkeypatch):
    from runtime.tracking import artifact_root, tracking_uri

    uri = tracking_uri(mlflow_store)
    assert uri.startswith("sqlite:///") and uri.endswith("runs/mlflow.db")
    assert artifact_root(mlflow_store).endswith("runs/mlartifacts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert tracking_uri(mlflow_store) == "sqlite:///elsewhere.db"


def test_start_run_nests_logs_config_and_resumes(mlflow_store):
    import mlflow

    from runtime import tracking

    cfg = mlflow_store
    with tracking.start_run(cfg, "run") as parent:
        with tracking.start_run(cfg, "pretrain") as child:
            tracking.log_metrics(cfg, child.info.run_id, {"pretrain/loss": 0.5,
                                                          "pretrain/bad": float("nan")}, 3)
    client = tracking.client(cfg)
    run = client.get_run(child.info.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.tags[tracking.STAGE_TAG] == "pretrain"
    assert run.data.params["pretrain.lr"] == str(cfg.pretrain.lr)
    assert run.data.params["sim.grid_res"] == "32"
    assert run.data.metrics == {"pretrain/loss": 0.5}
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.name == "physgm" and exp.artifact_location.endswith("runs/mlartifacts")
    # explicit parent id (no active run) and resuming an existing run id
    with tracking.start_run(cfg, "dpo", parent_run_id=parent.info.run_id) as other:
        pass
    assert client.get_run(other.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    changed = cfg.model_copy(deep=True)
    changed.pretrain.lr = 1.0
    with tracking.start_run(changed, "pretrain", run_id=child.info.run_id) as again:
        assert again.info.run_id == child.info.run_id
    assert tracking.log_config(child.info.run_id, changed) == ["pretrain.lr"]
    assert mlflow.active_run() is None


def test_input_views_join_the_image_losses():
    from physgm.model.losses import alpha_loss

    torch.manual_seed(0)
    model = PhysGM(ModelConfig(**TINY)).eval()
    batch = synthetic_batch(2, n_views=2, n_targets=1, size=32)
    with torch.no_grad():
        novel = pretrain_step(model, batch, backend="torch")
        both = pretrain_step(model, batch, backend="torch", input_targets=1)
        batch["alpha"] = torch.ones(2, 2, 1, 32, 32)
        masked = pretrain_step(model, batch, backend="torch", input_targets=5, alpha_loss="l1")
    assert both.rgb.shape == novel.rgb.shape == (2, 1, 32, 32, 3)     # outputs: novel views
    assert torch.allclose(both.rgb, novel.rgb)
    # rgb term = mean over [novel target, input view 0] renders; alpha: novel only (no masks)
    own = pretrain_step(model, {**batch, "target_K": batch["K"][:, :1],
                                "target_c2w": batch["c2w"][:, :1],
                                "target_images": batch["images"][:, :1]}, backend="torch")
    expect = 0.5 * (novel.terms["rgb"] + own.terms["rgb"])
    assert float(both.terms["rgb"].detach()) == pytest.approx(float(expect), rel=1e-5)
    assert float(both.terms["alpha"]) == pytest.approx(float(novel.terms["alpha"]), rel=1e-6)
    # with input masks, alpha covers the novel view and both inputs (input_targets capped at V)
    ra = torch.cat([novel.alpha, own.alpha,
                    pretrain_step(model, {**batch, "target_K": batch["K"][:, 1:],
                                          "target_c2w": batch["c2w"][:, 1:],
                                          "target_images": batch["images"][:, 1:]},
                                  backend="torch").alpha], 1)
    mask = torch.cat([batch["target_alpha"][:, :, 0], torch.ones(2, 2, 32, 32)], 1)
    assert float(masked.terms["alpha"]) == pytest.approx(float(alpha_loss(ra, mask, "l1")),
                                                         rel=1e-5)


def test_render_size_renders_scaled_targets_and_physics_steps_skip_rendering():
    """render_size renders the targets (and input targets) at a smaller size with scaled
    intrinsics against area-averaged images; render=False with depth=False trains the
    physics alone (with depth: tests/test_pretrain_depth.py)."""
    from pretrain.step import resize_targets

    torch.manual_seed(0)
    model = PhysGM(ModelConfig(**TINY)).eval()
    batch = synthetic_batch(2, n_views=2, n_targets=1, size=32)
    with torch.no_grad():
        full = pretrain_step(model, batch, backend="torch", input_targets=1)
        small = pretrain_step(model, batch, backend="torch", input_targets=1, render_size=16)
        physics = pretrain_step(model, batch, backend="torch", render=False, depth=False)
    assert small.rgb.shape == (2, 1, 16, 16, 3) and full.rgb.shape == (2, 1, 32, 32, 3)
    # a 16² render of the same Gaussians is near the 32² one averaged over 2×2 blocks (not
    # equal: the 0.3 px² low-pass and the opacity cut-off act per pixel)
    pooled = torch.nn.functional.avg_pool2d(full.rgb[:, 0].permute(0, 3, 1, 2), 2)
    small16 = small.rgb[:, 0].permute(0, 3, 1, 2)
    assert float((pooled - small16).abs().mean()) < 0.1
    r = resize_targets(batch, 16)
    assert r["target_K"][0, 0, 0, 0] == pytest.approx(float(batch["target_K"][0, 0, 0, 0]) / 2)
    assert r["loss_images"].shape[-2:] == (16, 16) and r["images"].shape[-2:] == (32, 32)
    assert physics.rgb is None and set(physics.terms) == {"material", "param_nll",
                                                          "param_mse", "total"}
    assert float(physics.terms["material"]) == pytest.approx(float(full.terms["material"]))
    assert resize_targets(batch, 32)["target_K"] is batch["target_K"]  # already that size
