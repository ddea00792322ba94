"""The classical reward ranks videos of the project's own simulator and renderer by how far
their physics is from the truth: E off by ±0.5, ±1, ±1.5 decades, or another material."""
import numpy as np
import pytest
import torch

from physgm.camera import Camera
from physgm.config import MPMConfig
from physgm.gaussians import Gaussians
from physgm.materials import PhysParams
from physgm.render import render_video
from physgm.sim import sample_shape, simulate
from reward import score

RES = 32
DX = 1.0 / RES


@pytest.fixture(scope="module")
def drop():
    """A textured jelly sphere dropped on the floor, seen from the side."""
    x = sample_shape("sphere", (0.5, 0.33, 0.5), 0.2, DX / 2)
    rng = np.random.default_rng(0)
    colors = np.clip(np.array([0.9, 0.3, 0.2]) + rng.normal(0, 0.15, x.shape), 0, 1)
    g = Gaussians.from_points(torch.from_numpy(x), torch.from_numpy(colors).float(),
                              scale=DX / 2.5)
    cam = Camera.look_at((0.5, 0.3, 1.6), (0.5, 0.22, 0.5), 35.0, 64, 64)
    cfg = MPMConfig(grid_res=RES, n_frames=15, device="cpu")

    def video(params):
        r = simulate(x, params, cfg)
        assert r.status == "ok"
        return render_video(g, r.positions, r.deformation, cam, 64, 64, backend="torch")

    return video


def test_reward_falls_as_E_moves_away_from_the_truth(drop):
    true = PhysParams.default("jelly", E=1e5, nu=0.3)
    reference = drop(true)
    assert score(reference, reference, backend="classical").reward == 0.0
    rewards = {}
    for decades in (-1.5, -1.0, -0.5, 0.5, 1.0, 1.5):
        cand = drop(PhysParams.default("jelly", E=1e5 * 10 ** decades, nu=0.3))
        rewards[decades] = score(cand, reference, backend="classical").reward
    for side in (-1, 1):
        r = [rewards[side * d] for d in (0.5, 1.0, 1.5)]
        assert 0.0 > r[0] > r[2], (side, r)  # further from the truth → lower reward
        assert r[0] >= r[1] - 0.01 and r[1] >= r[2] - 0.01, (side, r)


def test_swapping_the_material_lowers_the_reward(drop):
    reference = drop(PhysParams.default("jelly", E=1e5, nu=0.3))
    near = score(drop(PhysParams.default("jelly", E=10 ** 5.5, nu=0.3)), reference,
                 backend="classical").reward
    for other in ("plasticine", "sand"):
        swapped = score(drop(PhysParams.default(other, E=1e5)), reference,
                        backend="classical").reward
        assert swapped < near, other
