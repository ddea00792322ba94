"""DPO learner (DeepSpeed on CPU) and the rollout bookkeeping, without Ray."""
import numpy as np
import pytest
import torch

from actors.rollout import Pair, make_pairs, task_seed
from learner.learner import LearnerCore
from physgm.config import DPOConfig, ModelConfig
from physgm.model.physics_head import PhysicsHead


def test_make_pairs_modes():
    assert make_pairs([-0.5, -0.1, -0.9, -0.3]) == [(1, 2)]
    assert make_pairs([-0.5, -0.5]) == []  # no preference without a reward gap
    assert make_pairs([-0.5, -0.4], margin=0.2) == []
    assert sorted(make_pairs([-0.1, -0.5, -0.3], mode="margin", margin=0.15)) == [(0, 1), (0, 2), (2, 1)]
    with pytest.raises(ValueError):
        make_pairs([-1.0])


def test_task_seed_is_stable_and_distinct():
    assert task_seed(0, "e0-00001-a") == task_seed(0, "e0-00001-a")
    assert task_seed(0, "e0-00001-a") != task_seed(0, "e0-00002-a")
    assert task_seed(1, "e0-00001-a") != task_seed(0, "e0-00001-a")


def _setup(tmp_path=None):
    torch.manual_seed(0)
    mc = ModelConfig()
    head = PhysicsHead(mc)
    rng = np.random.default_rng(0)
    tokens = {s: rng.normal(size=(mc.n_global_tokens, mc.dim)).astype(np.float32) for s in "ab"}
    pairs = [Pair(f"t{i}", "ab"[i % 2], i % 5, rng.normal(0, 0.5, 8).astype(np.float32),
                  (i + 2) % 5, rng.normal(0, 0.5, 8).astype(np.float32), -0.1, -0.6, 0)
             for i in range(4)]
    return mc, head, tokens, pairs


def test_learner_prefers_the_chosen_and_only_the_head_learns():
    mc, head, tokens, pairs = _setup()
    learner = LearnerCore(head.state_dict(), mc, DPOConfig(batch_pairs=4, lr=3e-3), tokens)
    first = learner.step(pairs)
    for _ in range(15):
        last = learner.step(pairs)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
    assert last["loss"] < first["loss"] and last["rewards/margins"] > 0
    assert last["rewards/accuracies"] == 1.0
    # the reference stays the pretrained head
    ref = learner.reference.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in head.state_dict().items())
    assert not any(p.requires_grad for p in learner.reference.parameters())


def test_learner_checkpoint_resumes_exactly(tmp_path):
    mc, head, tokens, pairs = _setup()
    cfg = DPOConfig(batch_pairs=4, lr=3e-3)
    a = LearnerCore(head.state_dict(), mc, cfg, tokens)
    for _ in range(3):
        a.step(pairs)
    a.save(str(tmp_path / "ck"), {"version": 7})
    b = LearnerCore(head.state_dict(), mc, cfg, tokens)
    state = b.load(str(tmp_path / "ck"))
    assert state["version"] == 7 and b.step_count == 3
    wa, wb = a.weights(), b.weights()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # optimizer state restored too: the next steps agree
    ma, mb = a.step(pairs), b.step(pairs)
    assert ma["loss"] == pytest.approx(mb["loss"], rel=1e-6)
    wa, wb = a.weights(), b.weights()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-7) for k in wa)
