"""Evaluation reads the GT simulation's trajectory from the store instead of simulating the
truth again, and gets the same physics-space distance."""
import dataclasses

import numpy as np
import pytest
import torch

from dpo_fixtures import make_world, small_cfg
from learner.evaluate import evaluate_scene
from physgm.model import load_model
from reward.scorer import RewardScorer
from runtime.scenes import encode_scenes, load_rollout_scene


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traj")
    ckpt = make_world(tmp)
    return small_cfg(tmp), ckpt


def test_stored_trajectory_gives_the_resimulated_distance(world):
    cfg, ckpt = world
    torch.manual_seed(0)
    model, _ = load_model(ckpt, "cpu")
    heads = {"pretrained": model.physics_head.eval(), "dpo": model.physics_head.eval()}
    for sid in ("000000", "000001"):
        scene = load_rollout_scene(cfg, sid)
        assert scene.trajectory is not None
        assert scene.trajectory.shape == (scene.n_frames, len(scene.particles), 3)
        tokens = encode_scenes(model, cfg, [sid])[sid]
        stored = evaluate_scene(cfg, scene, heads, tokens, RewardScorer(cfg.reward))
        again = evaluate_scene(cfg, dataclasses.replace(scene, trajectory=None), heads, tokens,
                               RewardScorer(cfg.reward))
        for name in heads:
            a, b = stored[name]["particle_dist"], again[name]["particle_dist"]
            assert np.isfinite(a) and a == pytest.approx(b, rel=1e-3, abs=1e-5)
            assert stored[name]["reward"] == pytest.approx(again[name]["reward"], abs=1e-6)
