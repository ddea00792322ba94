"""DeepSpeed engine (one in-process worker, CPU, fp32): a tiny PhysGM learns on rendered toy
scenes; a checkpoint restores weights, AdamW moments, LR schedule and RNG exactly."""
import random

import numpy as np
import pytest
import torch

from physgm.config import ModelConfig, PretrainConfig, RunConfig
from physgm.model import PhysGM, load_model
from pretrain.checkpoint import TrainState, load_checkpoint, read_state, save_checkpoint
from pretrain.engine import build_engine
from pretrain.schedule import lr_factor
from pretrain.step import pretrain_step
from pretrain.synthetic import synthetic_batch
from tiny_model import TINY

WEIGHTS = {"rgb": 1.0, "alpha": 0.1, "material": 0.1, "params": 0.01}


def _cfg(**pretrain) -> RunConfig:
    base = dict(steps=12, warmup_steps=2, batch_size=2, lr=2e-3, zero_stage=2)
    base.update(pretrain)
    return RunConfig(model=ModelConfig(**TINY), pretrain=PretrainConfig(**base))


def _engine(cfg: RunConfig, seed: int = 0):
    torch.manual_seed(seed)
    return build_engine(PhysGM(cfg.model), cfg.pretrain)


def _steps(engine, batches, n, accum):
    losses = []
    for _ in range(n):
        for _ in range(accum):
            batch = batches[len(losses) % len(batches)]
            # a random draw per micro-step makes the run depend on the RNG state too
            noise = 0.01 * torch.rand(()) + 0.001 * random.random() + 0.001 * np.random.rand()
            out = pretrain_step(engine.model, batch, WEIGHTS, backend="torch")
            engine.backward_step(out.loss * (1 + noise))
            losses.append(float(out.loss) + float(noise))
    return losses


def _params(engine):
    return [p.detach().clone() for p in engine.module.parameters()]


def test_tiny_model_learns_with_deepspeed():
    cfg = _cfg(steps=30, warmup_steps=3)
    engine = _engine(cfg)
    batches = [synthetic_batch(2, 2, 1, 32, seed=s) for s in (0, 2)]
    losses = []
    for step in range(30):
        out = pretrain_step(engine.model, batches[step % 2], WEIGHTS, backend="torch")
        engine.backward_step(out.loss)
        losses.append(float(out.loss.detach()))
        assert engine.lr == pytest.approx(cfg.pretrain.lr * lr_factor(step + 1, 3, 30, 0.1))
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses


def test_checkpoint_resume_is_exact(tmp_path):
    cfg = _cfg(grad_accum=2, checkpoint_every=3)
    batches = [synthetic_batch(2, 2, 1, 32, seed=s) for s in (0, 2, 4)]
    n = 3

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    straight = _engine(cfg)
    torch.manual_seed(1)
    ref_losses = _steps(straight, batches, 2 * n, 2)
    ref_params, ref_lr = _params(straight), straight.lr

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    first = _engine(cfg)
    torch.manual_seed(1)
    losses = _steps(first, batches, n, 2)
    ckpt = save_checkpoint(tmp_path / "step_3", first, cfg, TrainState(step=n, epoch=0, index=6))
    del first
    torch.manual_seed(123), random.seed(123), np.random.seed(123)   # resumed process: other RNG
    second = _engine(cfg, seed=99)                                  # ... and other weights
    state = load_checkpoint(ckpt, second)
    assert (state.step, state.epoch, state.index) == (n, 0, 6)
    rest = _steps(second, batches[2 * n % 3:] + batches[:2 * n % 3], n, 2)
    assert losses + rest == pytest.approx(ref_losses, abs=1e-5)
    assert second.lr == pytest.approx(ref_lr)
    for a, b in zip(_params(second), ref_params):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)

    # the checkpoint directory is a PhysGM checkpoint as well
    model, mcfg = load_model(ckpt)
    assert mcfg == cfg.model
    assert read_state(ckpt).step == n
    # a second save to the same name replaces it atomically
    save_checkpoint(ckpt, second, cfg, TrainState(step=2 * n))
    assert read_state(ckpt).step == 2 * n
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_resume_with_other_world_size_says_what_to_set(tmp_path):
    cfg = _cfg()
    engine = _engine(cfg)
    ckpt = save_checkpoint(tmp_path / "c", engine, cfg, TrainState(step=1, world_size=2))
    with pytest.raises(ValueError, match="num_workers=2"):
        load_checkpoint(ckpt, engine)


def test_the_physics_head_gets_its_own_learning_rate_under_deepspeed():
    """pretrain.head_lr_scale: the head's AdamW groups run at lr · scale through ZeRO-2 and
    the warm-up/cosine schedule; every other parameter keeps lr."""
    cfg = _cfg(head_lr_scale=10.0)
    engine = _engine(cfg)
    head = {id(p) for p in engine.module.physics_head.parameters()}
    batch = synthetic_batch(2, 2, 1, 32, seed=0)
    for step in range(3):
        engine.backward_step(pretrain_step(engine.model, batch, WEIGHTS, backend="torch").loss)
    factor = lr_factor(3, 2, 12, 0.1)
    groups = engine.ds.optimizer.param_groups
    assert len(groups) == 4
    lrs = sorted({round(g["lr"] / (cfg.pretrain.lr * factor), 6) for g in groups})
    assert lrs == [1.0, 10.0]
    plain = [g for g in _param_groups_of(engine.module, cfg) if "lr" in g]
    assert {id(p) for g in plain for p in g["params"]} == head


def _param_groups_of(model, cfg):
    from pretrain.engine import param_groups

    return param_groups(model, cfg.pretrain.weight_decay, cfg.pretrain.lr,
                        cfg.pretrain.head_lr_scale)
