"""SceneDataset items, collate_views, load_scene_tensors, and re-simulating a stored scene
(what the DPO actors do) reproduces its GT video."""
import numpy as np
import pytest
import torch

from physgm.camera import Camera, plucker
from physgm.config import build_config
from physgm.data.build import synthesize
from physgm.data.dataset import (SceneDataset, collate_views, load_scene_tensors,
                                 scene_mpm_config)
from physgm.data.store import open_store, read_scene
from physgm.materials import MATERIALS, PARAM_NAMES, normalize

V_STORED = 6


@pytest.fixture(scope="module")
def cfg():
    return build_config({"sim": {"grid_res": 16, "device": "cpu"},
                         "data": {"image_size": 32, "video_frames": 3, "n_views": V_STORED,
                                  "max_particles": 300, "val_fraction": 0.25,
                                  "test_fraction": 0.25}})


@pytest.fixture(scope="module")
def path(tmp_path_factory, cfg):
    p = tmp_path_factory.mktemp("ds") / "d.zarr"
    report = synthesize(p, cfg, n_scenes=4, workers=1)
    assert len(report.written) == 4
    return p


@pytest.mark.parametrize("v", [1, 2, 3, 4])
def test_item_shapes_and_dtypes(path, v):
    ds = SceneDataset(path, split="all", n_views=v, n_targets=2)
    assert len(ds) == 4
    item = ds[1]
    P = len(PARAM_NAMES)
    expect = {"images": (v, 3, 32, 32), "plucker": (v, 6, 32, 32), "K": (v, 3, 3),
              "c2w": (v, 4, 4), "target_images": (2, 3, 32, 32), "target_alpha": (2, 1, 32, 32),
              "target_K": (2, 3, 3), "target_c2w": (2, 4, 4), "material": (), "params_z": (P,),
              "params_mask": (P,), "true_material": (), "true_params_z": (P,),
              "true_params_mask": (P,)}
    for key, shape in expect.items():
        assert tuple(item[key].shape) == shape, key
    for key in ("images", "plucker", "K", "c2w", "target_images", "target_alpha", "params_z",
                "true_params_z"):
        assert item[key].dtype == torch.float32, key
    assert item["material"].dtype == torch.long and item["params_mask"].dtype == torch.bool
    assert isinstance(item["scene_id"], str)
    for key in ("images", "target_images", "target_alpha"):
        assert 0 <= item[key].min() and item[key].max() <= 1
    assert item["target_alpha"].max() > 0.5  # the object is in the target view


def test_item_matches_the_stored_scene(path):
    ds = SceneDataset(path, split="all", n_views=(2, 2), n_targets=1)
    item = ds[0]
    s = read_scene(open_store(path), item["scene_id"])
    inputs, targets = ds.choose_views(0, V_STORED)
    np.testing.assert_allclose(item["images"].numpy(),
                               s.images[inputs].transpose(0, 3, 1, 2) / 255.0, atol=1e-6)
    np.testing.assert_allclose(item["target_alpha"][:, 0].numpy(), s.alpha[targets] / 255.0,
                               atol=1e-6)
    np.testing.assert_array_equal(item["c2w"].numpy(), s.c2w[inputs])
    cam = Camera(item["K"][0], item["c2w"][0], 32, 32)
    torch.testing.assert_close(item["plucker"][0], plucker(cam))
    z, mask = normalize(s.label)
    np.testing.assert_array_equal(item["params_z"].numpy(), z)
    np.testing.assert_array_equal(item["params_mask"].numpy(), mask)
    assert int(item["material"]) == MATERIALS.index(s.label.material)
    assert int(item["true_material"]) == MATERIALS.index(s.true.material)
    tz, _ = normalize(s.true)
    np.testing.assert_array_equal(item["true_params_z"].numpy(), tz)


def test_labels_true_uses_the_truth(path):
    ds = SceneDataset(path, split="all", labels="true")
    for i in range(len(ds)):
        item = ds[i]
        assert torch.equal(item["material"], item["true_material"])
        assert torch.equal(item["params_z"], item["true_params_z"])
    with pytest.raises(ValueError, match="labels"):
        SceneDataset(path, labels="vlm")


def test_views_deterministic_per_seed_epoch_index_and_targets_disjoint(path):
    ds = SceneDataset(path, split="all", n_views=(1, 4), n_targets=2, seed=3)
    draws = [ds.choose_views(i, V_STORED) for i in range(4)]
    for i, (inp, tgt) in enumerate(draws):
        again = ds.choose_views(i, V_STORED)
        assert np.array_equal(inp, again[0]) and np.array_equal(tgt, again[1])
        assert 1 <= len(inp) <= 4 and len(tgt) == 2
        assert not set(inp.tolist()) & set(tgt.tolist())  # 4 + 2 ≤ 6 stored views
        assert len(set(inp.tolist())) == len(inp)
    ds.set_epoch(1)
    assert any(not np.array_equal(ds.choose_views(i, V_STORED)[0], draws[i][0]) for i in range(4))
    sizes = {len(ds.choose_views(i, V_STORED)[0]) for i in range(200)}
    assert sizes == {1, 2, 3, 4}
    # more views asked than stored: V is capped, targets repeat inputs
    wide = SceneDataset(path, split="all", n_views=(8, 8), n_targets=2)
    inp, tgt = wide.choose_views(0, V_STORED)
    assert len(inp) == V_STORED and set(tgt.tolist()) <= set(inp.tolist())


def test_splits_and_collate(path):
    parts = {s: SceneDataset(path, split=s) for s in ("train", "val", "test")}
    ids = [i for d in parts.values() for i in d.ids]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 4
    assert len(parts["val"]) == 1 and len(parts["test"]) == 1
    with pytest.raises(ValueError, match="split"):
        SceneDataset(path, split="holdout")
    ds = SceneDataset(path, split="all", n_views=(1, 4), n_targets=1)
    batch = [ds[i] for i in range(4)]
    vmin = min(b["images"].shape[0] for b in batch)
    out = collate_views(batch)
    assert out["images"].shape == (4, vmin, 3, 32, 32)
    assert out["plucker"].shape == (4, vmin, 6, 32, 32) and out["K"].shape == (4, vmin, 3, 3)
    assert out["target_images"].shape == (4, 1, 3, 32, 32) and out["material"].shape == (4,)
    assert out["scene_id"] == [b["scene_id"] for b in batch]
    torch.testing.assert_close(out["images"][2], batch[2]["images"][:vmin])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_views,
                                         num_workers=0)
    assert next(iter(loader))["images"].shape[0] == 2


def test_image_size_resizes_views_and_intrinsics(path):
    ds = SceneDataset(path, split="all", n_views=2, image_size=16)
    item = ds[0]
    assert item["images"].shape == (2, 3, 16, 16) and item["plucker"].shape == (2, 6, 16, 16)
    assert item["target_alpha"].shape == (1, 1, 16, 16)
    full = SceneDataset(path, split="all", n_views=2)[0]
    torch.testing.assert_close(item["K"][:, 0, 0], full["K"][:, 0, 0] / 2)


def test_resimulating_a_stored_scene_reproduces_its_video(path, cfg):
    from physgm.data.synth import render_trajectory
    from physgm.sim import simulate

    t = load_scene_tensors(path, "000001")
    assert t["images"].shape == (V_STORED, 3, 32, 32) and t["alpha"].shape == (V_STORED, 1, 32, 32)
    assert t["plucker"].shape == (V_STORED, 6, 32, 32) and len(t["cameras"]) == V_STORED
    assert t["video"].shape == (3, 32, 32, 3) and t["video"].dtype == np.uint8
    sim = scene_mpm_config(t["sim"], cfg.sim.model_copy(update={"threads": 1}))
    assert sim.n_frames == 2 and sim.grid_res == 16
    r = simulate(t["particles"], t["true"], sim, volumes=t["volumes"], velocities=t["velocity"])
    assert r.status == "ok"
    video, alpha = render_trajectory(t["gaussians"], r.positions, r.deformation,
                                     t["video_camera"], cfg)
    np.testing.assert_array_equal(video, t["video"])
    np.testing.assert_array_equal(alpha, t["video_alpha"])
    with pytest.raises(ValueError, match="grid_res"):
        scene_mpm_config({"frame_dt": 0.04, "n_frames": 3})
