"""DPO learner (DeepSpeed on CPU) and the rollout bookkeeping, without Ray."""
import numpy as np
import pytest
import torch

from physgm.dpo import make_pairs, sample_candidates, task_seed
from runtime.messages import Pair
from learner.learner import LearnerCore
from physgm.config import DPOConfig, ModelConfig
from physgm.model.physics_head import PhysicsHead


def test_make_pairs_modes():
    assert make_pairs([-0.5, -0.1, -0.9, -0.3]) == [(1, 2)]
    assert make_pairs([-0.5, -0.5]) == []  # no preference without a reward gap
    assert make_pairs([-0.5, -0.4], margin=0.2) == []
    assert sorted(make_pairs([-0.1, -0.5, -0.3], mode="margin", margin=0.15)) == [(0, 1), (0, 2), (2, 1)]
    # mirrored: only within each couple (0, 1), (2, 3), better first, above the margin
    assert make_pairs([-0.5, -0.1, -0.9, -0.3], mode="mirrored") == [(1, 0), (3, 2)]
    assert make_pairs([-0.5, -0.45, -0.9, -0.3], mode="mirrored", margin=0.1) == [(3, 2)]
    with pytest.raises(ValueError):
        make_pairs([-1.0])
    with pytest.raises(ValueError, match="even"):
        make_pairs([-1.0, -0.5, -0.2], mode="mirrored")


def test_mirrored_pairs_need_mirrored_sampling():
    from physgm.config import DPOConfig

    assert DPOConfig(sampling="mirrored", pair_mode="mirrored", k=4).pair_mode == "mirrored"
    with pytest.raises(ValueError, match="sampling: mirrored"):
        DPOConfig(pair_mode="mirrored")
    with pytest.raises(ValueError, match="even"):
        DPOConfig(sampling="mirrored", k=5)
    assert DPOConfig(sampling="mirrored", mirror_blocks="E_rest").mirror_blocks == "E_rest"
    with pytest.raises(ValueError, match="mirror_blocks"):
        DPOConfig(mirror_blocks="E_rest")


def test_task_seed_is_stable_and_distinct():
    assert task_seed(0, "e0-00001-a") == task_seed(0, "e0-00001-a")
    assert task_seed(0, "e0-00001-a") != task_seed(0, "e0-00002-a")
    assert task_seed(1, "e0-00001-a") != task_seed(0, "e0-00001-a")


def test_sample_candidates_modes():
    torch.manual_seed(0)
    head = PhysicsHead(ModelConfig()).eval()
    with torch.no_grad():
        dist = head(torch.randn(1, ModelConfig().n_physics_tokens, ModelConfig().dim)).distribution()
    for mode in ("shared_material", "mirrored", "independent"):
        m, z = sample_candidates(dist, 6, seed=11, mode=mode)
        assert m.shape == (6,) and z.shape == (6, 8)
        m2, z2 = sample_candidates(dist, 6, seed=11, mode=mode)
        assert np.array_equal(m, m2) and np.array_equal(z, z2)  # a redone task samples the same
    assert len(set(sample_candidates(dist, 6, seed=11, mode="shared_material")[0].tolist())) == 1
    per = {tuple(sample_candidates(dist, 6, seed=s)[0].tolist()) for s in range(20)}
    assert any(len(set(ms)) > 1 for ms in per)  # independent: materials differ within a task


def test_mode_material_gives_every_candidate_the_most_likely_material():
    """dpo.material: mode: all K candidates of every seed and sampling mode take the argmax
    material (sampled ones reach the runner-up); mirrored couples stay mirror images."""
    logits = torch.tensor([[0.1, 0.3, 2.0, 1.9, 0.0]])
    mu, log_var = torch.randn(1, 5, 8), torch.full((1, 5, 8), -2.0)
    from physgm.model.distribution import PhysicsDistribution

    dist = PhysicsDistribution(logits, mu, log_var)
    for mode in ("independent", "shared_material", "mirrored"):
        seen = set()
        for seed in range(10):
            m, _ = sample_candidates(dist, 4, seed=seed, mode=mode, material="mode")
            seen |= set(m.tolist())
        assert seen == {2}
    # sampled materials reach the runner-up (p ≈ 0.44) in a few seeds
    assert 3 in {int(x) for s in range(10) for x in sample_candidates(dist, 4, s)[0]}
    m, z = sample_candidates(dist, 4, seed=3, mode="mirrored", material="mode")
    assert np.allclose(z[0] + z[1], 2 * mu[0, 2].numpy(), atol=1e-5)  # still mirror images
    with pytest.raises(ValueError, match="material"):
        sample_candidates(dist, 4, seed=0, material="argmax")


def _setup(tmp_path=None):
    torch.manual_seed(0)
    mc = ModelConfig()
    head = PhysicsHead(mc)
    rng = np.random.default_rng(0)
    tokens = {s: rng.normal(size=(mc.n_physics_tokens, mc.dim)).astype(np.float32) for s in "ab"}
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


def test_output_only_learner_moves_only_the_paired_material():
    """dpo.trainable: output: pairs of jelly alone change jelly's μ/σ rows and nothing of the
    hidden layers or of the other materials' outputs (trainable: head moves them all)."""
    mc, head, tokens, _ = _setup()
    rng = np.random.default_rng(1)
    pairs = [Pair(f"t{i}", "ab"[i % 2], 0, rng.normal(0, 0.5, 8).astype(np.float32), 0,
                  rng.normal(0, 0.5, 8).astype(np.float32), -0.1, -0.6, 0) for i in range(4)]
    x = torch.tensor(np.stack([tokens["a"], tokens["b"]]))
    with torch.no_grad():
        before = head(x)
    moved = {}
    for trainable in ("output", "head"):
        learner = LearnerCore(head.state_dict(), mc, DPOConfig(batch_pairs=4, lr=3e-3,
                                                             trainable=trainable), tokens)
        for _ in range(5):
            learner.step(pairs)
        w = learner.weights()
        policy = PhysicsHead(mc)
        policy.load_state_dict(w)
        with torch.no_grad():
            after = policy(x)
        moved[trainable] = (after.mu - before.mu).abs().amax(dim=(0, 2))  # (M,)
        hidden_same = all(torch.equal(w[k], v) for k, v in head.state_dict().items()
                          if k.startswith("params.0") or k.startswith("params.2"))
        assert hidden_same == (trainable == "output")
    assert moved["output"][0] > 1e-3 and float(moved["output"][1:].max()) == 0.0
    assert float(moved["head"][1:].max()) > 0.0
    with pytest.raises(ValueError, match="trainable"):
        DPOConfig(trainable="trunk")


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


def test_unscored_candidates_enter_no_pair_and_failed_sims_lose():
    """A video the reward could not score says nothing about the physics: NaN, in no pair.
    A simulation that blew up is a real (bad) outcome: the failure reward, a loser."""
    from physgm.dpo import Candidate, score_candidates
    from physgm.materials import PhysParams
    from reward import RewardScorer
    from reward.scorer import reward_config
    from reward.synthetic import falling_disc

    scorer = RewardScorer(reward_config(backend="classical"))
    ref = falling_disc(8, 32)
    scorer.prepare_reference("s", ref)
    p, z = PhysParams.default("jelly"), np.zeros(8, np.float32)
    cands = [Candidate(0, z, p, ref, "ok", 0, 0),
             Candidate(0, z, p, ref[:, :16], "ok", 0, 0),  # wrong size: status "invalid"
             Candidate(0, z, p, None, "unstable", 0, 0),
             Candidate(0, z, p, falling_disc(8, 32, shift=(4, 0)), "ok", 0, 0)]
    rewards, results = score_candidates(lambda v: scorer.score_batch("s", v, strict=False),
                                        cands, failure_reward=-2.0)
    assert [r.status for r in results] == ["ok", "invalid", "ok"]
    assert rewards[0] == pytest.approx(0.0, abs=1e-9) and np.isnan(rewards[1])
    assert rewards[2] == -2.0 and -2.0 < rewards[3] < 0.0
    for mode in ("best_worst", "margin"):
        pairs = make_pairs(rewards, mode)
        assert pairs and all(1 not in pair for pair in pairs)
    assert make_pairs(rewards, "best_worst") == [(0, 2)]
    assert make_pairs(rewards, "mirrored") == [(3, 2)]  # couple (0, 1) has an unscored member


def test_zero3_learner_publishes_whole_weights_equal_to_zero0():
    mc, head, tokens, pairs = _setup()
    zero0 = LearnerCore(head.state_dict(), mc, DPOConfig(batch_pairs=4, lr=3e-3), tokens)
    zero3 = LearnerCore(head.state_dict(), mc, DPOConfig(batch_pairs=4, lr=3e-3, zero_stage=3),
                        tokens)
    w3 = zero3.weights()
    assert all(torch.equal(w3[k], v) for k, v in head.state_dict().items())  # not partitions
    for _ in range(2):
        zero0.step(pairs)
        zero3.step(pairs)
    w0, w3 = zero0.weights(), zero3.weights()
    assert not all(torch.equal(w3[k], v) for k, v in head.state_dict().items())  # it learned
    assert all(torch.allclose(w0[k], w3[k], atol=1e-5) for k in w0)


def test_bf16_policy_equals_its_reference_at_step_zero():
    mc, head, tokens, pairs = _setup()
    learner = LearnerCore(head.state_dict(), mc, DPOConfig(batch_pairs=4, lr=3e-3), tokens,
                          bf16=True)
    assert next(learner.engine.module.parameters()).dtype == torch.bfloat16
    first = learner.step(pairs)
    assert first["rewards/chosen"] == 0.0 and first["rewards/rejected"] == 0.0
    assert first["loss"] == pytest.approx(np.log(2.0), abs=1e-6)
