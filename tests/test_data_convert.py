"""Converting a real-capture folder into the store; bad input names the file at fault."""
import json

import imageio.v3 as iio
import numpy as np
import pytest

from physgm.camera import Camera
from physgm.data.convert import ConvertError, convert_folder, read_capture
from physgm.data.dataset import SceneDataset, load_scene_tensors
from physgm.data.store import list_scenes, open_store, read_scene, splits
from physgm.video import write_video

H, W = 24, 32


def _cam(az: float) -> dict:
    c = Camera.look_at((np.sin(az), 0.3, np.cos(az)), (0, 0, 0), 40.0, W, H)
    return {"K": c.K.tolist(), "c2w": c.c2w.tolist()}


def _object_image(rng, rgba=False) -> np.ndarray:
    img = np.zeros((H, W, 4 if rgba else 3), np.uint8)
    img[6:18, 8:24, :3] = rng.integers(60, 255, (12, 16, 3))
    if rgba:
        img[6:18, 8:24, 3] = 255
        img[0:3, 0:3, :3] = 200  # colour where alpha is 0: must be removed
    return img


@pytest.fixture()
def capture(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mug"
    (folder / "images").mkdir(parents=True)
    views = []
    for k in range(3):
        iio.imwrite(folder / "images" / f"{k}.png", _object_image(rng, rgba=(k == 1)))
        views.append({"image": f"images/{k}.png", **_cam(k * 2.0)})
    frames = np.zeros((5, H, W, 3), np.uint8)
    for t in range(5):
        frames[t, 4 + 2 * t:10 + 2 * t, 10:20] = 220
    write_video(folder / "video.mp4", frames, fps=20)
    meta = {"views": views, "video": {"file": "video.mp4", "fps": 20, **_cam(0.0)},
            "background": [0, 0, 0], "sim": {"grid_res": 32, "domain_size": 1.0}}
    (folder / "cameras.json").write_text(json.dumps(meta))
    (folder / "labels.json").write_text(json.dumps({"material": "jelly", "E": 2e5, "nu": 0.3}))
    return folder


def test_happy_path(capture, tmp_path):
    out = tmp_path / "real.zarr"
    sid = convert_folder(capture, out, split="test")
    assert sid == "mug"
    root = open_store(out)
    assert list_scenes(root) == ["mug"] and splits(root)["test"] == ["mug"]
    s = read_scene(root, "mug")
    assert s.images.shape == (3, H, W, 3) and s.alpha.shape == (3, H, W)
    assert s.video.shape == (5, H, W, 3) and s.video_alpha.shape == (5, H, W)
    meta = json.loads((capture / "cameras.json").read_text())
    np.testing.assert_allclose(s.K[2], meta["views"][2]["K"], rtol=1e-6)
    np.testing.assert_allclose(s.c2w[0], meta["views"][0]["c2w"], atol=1e-6)
    # PNG is lossless: the object pixels are kept, the rest is black
    png = iio.imread(capture / "images" / "0.png")
    np.testing.assert_array_equal(s.images[0][6:18, 8:24], png[6:18, 8:24])
    assert s.alpha[0][6:18, 8:24].min() == 255 and s.alpha[0].sum() == 255 * 12 * 16
    assert s.images[1][0:3, 0:3].max() == 0  # RGBA: colour outside alpha removed
    assert s.extra["alpha_source"] == ["background", "rgba"]
    assert s.label.material.value == "jelly" and s.true is None
    assert s.particles is None and s.gaussians is None and s.source == "real"
    assert s.sim["frame_dt"] == pytest.approx(0.05) and s.sim["n_frames"] == 4
    assert s.sim["grid_res"] == 32
    # the video's object moves down, as drawn
    v = (s.video_alpha > 0).argmax(1)[:, 15]
    assert v[-1] > v[0]
    # readable by the Dataset and the evaluation loader
    item = SceneDataset(out, split="test", n_views=2)[0]
    assert item["images"].shape == (2, 3, H, W) and int(item["true_material"]) == -1
    assert not item["true_params_mask"].any() and item["params_mask"].any()
    t = load_scene_tensors(out, "mug")
    assert t["particles"] is None and t["gaussians"] is None and t["video_camera"].width == W


def test_labels_with_true_and_label(capture, tmp_path):
    (capture / "labels.json").write_text(json.dumps(
        {"label": {"material": "plasticine", "E": 1e5, "nu": 0.35},
         "true": {"material": "jelly", "E": 3e4, "nu": 0.3}}))
    s = read_capture(capture)
    assert s.label.material.value == "plasticine" and s.true.E == 3e4


def test_without_labels_and_second_scene_keeps_splits(capture, tmp_path):
    (capture / "labels.json").unlink()
    out = tmp_path / "r.zarr"
    convert_folder(capture, out, scene_id="a", split="train")
    convert_folder(capture, out, scene_id="b", split="val")
    assert splits(open_store(out)) == {"train": ["a"], "val": ["b"], "test": []}
    assert read_scene(open_store(out), "a").label is None
    with pytest.raises(ValueError, match="scene a .* no 'label'"):
        SceneDataset(out, split="train")
    with pytest.raises(ValueError, match="no 'true'"):
        SceneDataset(out, split="train", labels="true")
    assert load_scene_tensors(out, "a")["material"] == -1


def _edit(capture, fn):
    meta = json.loads((capture / "cameras.json").read_text())
    fn(meta)
    (capture / "cameras.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("breakage, pattern", [
    (lambda c: (c / "cameras.json").unlink(), r"cameras\.json: file not found"),
    (lambda c: (c / "cameras.json").write_text("{not json"), r"cameras\.json: not valid JSON"),
    (lambda c: (c / "images" / "1.png").unlink(), r"images/1\.png: image file not found"),
    (lambda c: (c / "images" / "2.png").write_bytes(b"garbage"), r"2\.png: cannot decode image"),
    (lambda c: (c / "video.mp4").unlink(), r"video\.mp4: video file not found"),
    (lambda c: (c / "video.mp4").write_bytes(b"nope"), r"video\.mp4: cannot decode"),
    (lambda c: (c / "labels.json").write_text(json.dumps({"material": "jelly", "E": 1e5,
                                                          "nu": 0.7})),
     r"labels\.json: nu"),
    (lambda c: (c / "labels.json").write_text(json.dumps({"material": "goo", "E": 1e5,
                                                          "nu": 0.3})),
     r"labels\.json: material"),
    (lambda c: _edit(c, lambda m: m["views"][1]["c2w"][0].__setitem__(0, 3.0)),
     r"cameras\.json: views\[1\]: camera c2w rotation .* not orthonormal"),
    (lambda c: _edit(c, lambda m: m["views"][0].pop("K")), r"views\[0\]: needs \"K\""),
    (lambda c: _edit(c, lambda m: m.pop("video")), r"cameras\.json: needs \"video\""),
    (lambda c: _edit(c, lambda m: m.__setitem__("views", [])), r"non-empty \"views\""),
    (lambda c: _edit(c, lambda m: m["video"].__setitem__("fps", -3)), r"video\.fps"),
    (lambda c: _edit(c, lambda m: m["video"]["K"][0].__setitem__(2, 500.0)),
     r"video: principal point .* outside"),
    (lambda c: iio.imwrite(c / "images" / "2.png", np.zeros((10, 10, 3), np.uint8)),
     r"images/2\.png: is 10×10 but the first view is 32×24"),
])
def test_bad_input_names_the_file(capture, tmp_path, breakage, pattern):
    breakage(capture)
    with pytest.raises(ConvertError, match=pattern):
        convert_folder(capture, tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()  # nothing half-written


def test_missing_folder(tmp_path):
    with pytest.raises(ConvertError, match="not a folder"):
        read_capture(tmp_path / "nothing")
