"""The demo's bundled samples: their look follows their material, and serving.sample_check
(material named, one object or several) runs on any checkpoint."""
import json

import numpy as np
import pytest
import torch

from physgm.config import load_config
from physgm.config.sections import ModelConfig
from physgm.materials import MATERIALS
from serving.sample_check import SAMPLES, check_samples, grid_components
from tiny_model import TINY


def test_grid_components_splits_apart_clusters_only():
    rng = np.random.default_rng(0)
    blob = rng.uniform(0.0, 0.1, (200, 3))
    assert grid_components(blob, 0.03) == (1, 1.0)
    n, largest = grid_components(np.concatenate([blob, blob[:50] + 0.5]), 0.03)
    assert n == 2 and largest == pytest.approx(200 / 250)
    with pytest.raises(ValueError, match="no points"):
        grid_components(np.zeros((0, 3)), 0.03)


def test_samples_look_like_their_material():
    """The jelly cube is translucent like the training data's jelly (opacity 0.3-0.65), so its
    views are darker at the edges than an opaque cube of the same colour."""
    from serving.make_samples import sample_gaussians

    g = sample_gaussians("jelly_cube", (0.5, 0.25, 0.5))
    assert 0.3 <= float(g.opacities.mean()) <= 0.65
    snow = sample_gaussians("snow_ball", (0.5, 0.25, 0.5))
    assert float(snow.opacities.mean()) >= 0.85


def test_samples_are_as_dense_as_the_training_objects():
    """A translucent object's look depends on how many Gaussians overlap along a ray: the
    samples' Gaussians sit at the training objects' particle spacing (1/32 m / 2)."""
    from scipy.spatial import cKDTree

    from physgm.data.synth import particle_spacing
    from serving.make_samples import sample_gaussians

    spacing = particle_spacing(load_config("configs/quickstart.yaml"))
    assert spacing == pytest.approx(1 / 32 / 2)
    means = sample_gaussians("jelly_cube", (0.5, 0.25, 0.5)).means.numpy()
    nearest = cKDTree(means).query(means, k=2)[0][:, 1]
    assert np.median(nearest) == pytest.approx(spacing, rel=0.05)


def test_sample_check_runs_on_a_random_model(tmp_path):
    from physgm.model import PhysGM, save_model

    torch.manual_seed(0)
    mcfg = ModelConfig(**TINY)
    save_model(tmp_path / "ckpt", PhysGM(mcfg, load_backbone=False), mcfg)
    rows = check_samples(tmp_path / "ckpt", load_config("configs/quickstart.yaml"))
    entries = json.loads(SAMPLES.read_text())
    assert [r["sample"] for r in rows] == [e["title"] for e in entries]
    for r in rows:
        assert r["true_material"] in [m.value for m in MATERIALS]
        assert r["correct"] == (r["material"] == r["true_material"])
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=0.01)
        assert r["components"] >= 1 and 0 < r["largest_component_frac"] <= 1
        assert r["view_centroid_gap_m"] >= 0
