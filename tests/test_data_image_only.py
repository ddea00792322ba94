"""Image-only scenes (`physgm data synth --image-only`): the same draws as full scenes minus
the simulation and the video; stores without videos are read for pretraining and refused,
with a message, wherever a GT video is needed (tiny: 32² views, 16³ grid)."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from physgm.cli import app
from physgm.config import build_config, pretrain_store_config
from physgm.data.build import synthesize
from physgm.data.dataset import SceneDataset, load_scene_tensors
from physgm.data.preview import contact_sheet
from physgm.data.store import (Scene, StoreError, has_video, is_image_only, list_scenes,
                               open_store, read_scene, scene_attrs, splits, write_scene)
from physgm.data.synth import generate_scene

DATA = {"image_size": 32, "video_frames": 3, "n_views": 4, "max_particles": 300,
        "val_fraction": 0.25, "test_fraction": 0.25, "workers": 1}


def tiny(**data):
    return build_config({"sim": {"grid_res": 16, "device": "cpu"}, "data": {**DATA, **data}})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "pre.zarr"
    report = synthesize(path, tiny(image_only=True), n_scenes=4)
    assert len(report.written) == 4 and report.image_only and report.resampled == 0
    assert report.summary()["image_only"] is True
    return path


def test_image_only_scene_is_the_full_scene_without_simulation_or_video():
    full, image = tiny(throw_probability=0.5), tiny(throw_probability=0.5, image_only=True)
    for index in range(3):
        a, b = generate_scene(index, full), generate_scene(index, image)
        assert b.resampled == 0 and b.scene.video is None and b.scene.video_alpha is None
        assert b.scene.video_K is None and b.scene.video_c2w is None
        assert b.scene.sim["status"] == "not_simulated" and "sim_wall_s" not in b.scene.sim
        if a.resampled:  # a redrawn full scene is another draw
            continue
        for name in ("images", "alpha", "K", "c2w", "particles", "volumes"):
            np.testing.assert_array_equal(getattr(a.scene, name), getattr(b.scene, name),
                                          err_msg=name)
        for k, v in a.scene.gaussians.items():
            np.testing.assert_array_equal(v, b.scene.gaussians[k], err_msg=k)
        assert (a.scene.true, a.scene.label, a.scene.seed) == \
            (b.scene.true, b.scene.label, b.scene.seed)
        assert a.scene.shape == b.scene.shape and a.scene.appearance == b.scene.appearance
        assert a.scene.sim["initial_velocity"] == b.scene.sim["initial_velocity"]


def test_store_holds_no_video_and_pretraining_reads_it(store):
    root = open_store(store)
    ids = list_scenes(root)
    assert len(ids) == 4 and is_image_only(root)
    assert not any(has_video(root, i) for i in ids)
    s = read_scene(root, ids[0])
    assert s.video is None and s.video_alpha is None and s.images.shape == (4, 32, 32, 3)
    assert s.particles is not None and s.true is not None and s.label is not None
    assert scene_attrs(root, ids[0])["complete"] is True
    parts = splits(root)
    assert len(parts["val"]) == 1 and len(parts["test"]) == 1
    item = SceneDataset(store, split="train", n_views=(1, 3))[(0, 3)]
    assert item["images"].shape == (3, 3, 32, 32) and item["target_images"].shape[0] == 1
    assert contact_sheet(s).shape[0] > 0  # the views alone


def test_evaluation_and_dpo_refuse_an_image_only_store(store):
    from runtime.scenes import load_rollout_scene, scene_split

    sid = list_scenes(open_store(store))[0]
    with pytest.raises(StoreError, match="no GT video"):
        load_scene_tensors(store, sid)
    cfg = tiny(path=str(store), image_only=True)
    with pytest.raises(ValueError, match="image-only store"):
        scene_split(cfg, "all")
    assert scene_split(cfg, "all", need_videos=False) == list_scenes(open_store(store))
    with pytest.raises(ValueError, match="no GT video"):
        load_rollout_scene(cfg, sid)


def test_a_store_never_mixes_full_and_image_only_scenes(store, tmp_path):
    with pytest.raises(StoreError, match="image_only"):
        synthesize(store, tiny(), n_scenes=5)
    # stores written before data.image_only existed hold full scenes: still resumable
    old = tmp_path / "old.zarr"
    synthesize(old, tiny(), n_scenes=1)
    root = open_store(old, "a")
    gen = root.attrs["generator"]
    del gen["data"]["image_only"]
    root.attrs["generator"] = gen
    assert synthesize(old, tiny(), n_scenes=1).skipped == ["000000"]
    with pytest.raises(StoreError, match="image_only"):
        synthesize(old, tiny(image_only=True), n_scenes=2)


def test_scene_validation_wants_all_video_arrays_or_none(store):
    s = read_scene(open_store(store), "000000")
    s.video_K = np.eye(3, dtype=np.float32)
    with pytest.raises(StoreError, match="come together"):
        s.validate()
    s.video_K = None
    s.validate()


def test_write_and_read_back_an_image_only_scene(store, tmp_path):
    s = read_scene(open_store(store), "000001")
    root = open_store(tmp_path / "copy.zarr", "w")
    write_scene(root, "x", s)
    back = read_scene(root, "x")
    assert back.video is None and not has_video(root, "x")
    np.testing.assert_array_equal(back.images, s.images)
    partial = read_scene(root, "x", arrays=("images",))
    assert partial.video.size == 0  # not read: empty, as for any scene
    scene = Scene(images=s.images, K=s.K, c2w=s.c2w, video=None, video_K=None, video_c2w=None)
    write_scene(root, "y", scene)
    assert not is_image_only(root)  # a store attribute of `data synth --image-only` only


runner = CliRunner()
TINY = ["--set", "sim.grid_res=16", "--set", "sim.device=cpu", "--set", "data.image_size=32",
        "--set", "data.n_views=2", "--set", "data.max_particles=300", "--set", "data.workers=1"]


def test_cli_image_only_and_pretrain_store(tmp_path):
    out = tmp_path / "img.zarr"
    res = runner.invoke(app, ["data", "synth", "--image-only", "--scenes", "2", "--out",
                              str(out), "--json", *TINY])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["written"] == 2 and summary["image_only"] is True
    shown = runner.invoke(app, ["data", "show", "000000", "--data", str(out), "--out",
                                str(tmp_path / "show")])
    assert shown.exit_code == 0 and "no GT video" in shown.output
    assert (tmp_path / "show" / "000000_sheet.png").is_file()

    res = runner.invoke(app, ["data", "synth", "--pretrain", "--json", *TINY])
    assert res.exit_code == 2 and "data.pretrain_scenes" in res.output
    data = str(tmp_path / "d.zarr")
    res = runner.invoke(app, ["data", "synth", "--pretrain", "--json", *TINY, "--set",
                              f"data.path={data}", "--set", "data.pretrain_scenes=2"])
    assert res.exit_code == 0, res.output
    cfg = pretrain_store_config(build_config({"data": {"path": data, "pretrain_scenes": 2}}))
    root = open_store(cfg.data.path)
    assert cfg.data.path == str(tmp_path / "d-pretrain.zarr") and is_image_only(root)
    assert root.attrs["generator"]["data"]["seed"] == cfg.data.seed != 0
    assert len(list_scenes(root)) == 2 and not (tmp_path / "d.zarr").exists()
