"""The zarr scene store: round trip, the layout documented in docs/data.md, completeness
markers and splits."""
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from physgm.config import build_config
from physgm.data.store import (Scene, StoreError, assign_splits, is_complete, list_scenes,
                               open_store, read_scene, scene_attrs, set_splits, splits,
                               write_scene)
from physgm.data.synth import generate_scene

DOC = Path(__file__).resolve().parents[1] / "docs" / "data.md"


@pytest.fixture(scope="module")
def scene():
    cfg = build_config({"sim": {"grid_res": 16, "device": "cpu"},
                        "data": {"image_size": 32, "video_frames": 3, "n_views": 3,
                                 "max_particles": 300}})
    return generate_scene(0, cfg).scene


@pytest.fixture()
def store(tmp_path, scene):
    root = open_store(tmp_path / "d.zarr", "w")
    write_scene(root, "000000", scene)
    return root


def _doc_table(name: str) -> list[list[str]]:
    text = DOC.read_text()
    block = re.search(rf"<!-- {name}:start -->(.*?)<!-- {name}:end -->", text, re.S).group(1)
    rows = [r.strip().strip("|").split("|") for r in block.strip().splitlines()[2:]]
    return [[c.strip().strip("`") for c in r] for r in rows]


def test_round_trip(store, scene, tmp_path):
    back = read_scene(open_store(tmp_path / "d.zarr", "r"), "000000")
    for name in ("images", "alpha", "depth", "K", "c2w", "video", "video_alpha", "video_K",
                 "video_c2w", "particles", "volumes", "trajectory"):
        np.testing.assert_array_equal(getattr(back, name), getattr(scene, name), err_msg=name)
        assert getattr(back, name).dtype == (np.uint8 if getattr(scene, name).dtype == np.uint8
                                             else np.float32)
    for k, v in scene.gaussians.items():
        np.testing.assert_array_equal(back.gaussians[k], v)
    assert back.true == scene.true and back.label == scene.label
    assert back.sim == scene.sim and back.shape == scene.shape and back.seed == scene.seed
    assert back.extra["index"] == 0 and back.scene_id == "000000"
    # the trajectory is the GT simulation's: it starts at the rest pose
    np.testing.assert_array_equal(back.trajectory[0], back.particles)
    assert back.trajectory.shape == (back.video.shape[0], len(back.particles), 3)
    partial = read_scene(store, "000000", arrays=("images", "K"))
    assert partial.video.size == 0 and partial.particles is None and partial.gaussians is None
    np.testing.assert_array_equal(partial.images, scene.images)


def test_layout_matches_docs(store):
    g = store["scenes/000000"]
    documented = set()
    sizes: dict[str, int] = {}
    for name, shape, dtype, synthetic, _real, _meaning in _doc_table("layout"):
        documented.add(name)
        assert synthetic == "yes", name
        arr = g[name]
        assert str(arr.dtype) == dtype, name
        symbols = [s.strip() for s in shape.strip("()").split(",") if s.strip()]
        assert len(symbols) == arr.ndim, (name, shape, arr.shape)
        for sym, n in zip(symbols, arr.shape):
            if sym.isdigit():
                assert int(sym) == n, (name, shape, arr.shape)
            else:  # a symbol names the same size everywhere (V, H, W, T, N, …)
                assert sizes.setdefault(sym, n) == n, (name, sym, sizes[sym], n)
    stored = {k for k in g.array_keys()} | {f"gaussians/{k}" for k in g["gaussians"].array_keys()}
    assert stored == documented
    attrs = {row[0] for row in _doc_table("attrs") if row[1] == "yes"}
    assert attrs <= set(g.attrs)
    assert {"material", "E", "nu", "density"} <= set(g.attrs["true"]) and \
        set(g.attrs["label"]) >= {"material", "E", "nu", "density"}
    assert {"grid_res", "domain_size", "frame_dt", "n_frames", "boundary",
            "initial_velocity"} <= set(g.attrs["sim"])


def test_compression_and_chunks(store):
    video = store["scenes/000000/video"]
    assert video.chunks == video.shape  # one chunk per scene's video
    codec = video.compressors[0]
    assert type(codec).__name__ == "BloscCodec" and str(codec.cname.value) == "lz4"


def test_incomplete_scene_is_not_listed_and_not_read(store, scene):
    write_scene(store, "000001", scene)
    store["scenes/000001"].attrs["complete"] = False
    assert list_scenes(store) == ["000000"]
    assert list_scenes(store, complete_only=False) == ["000000", "000001"]
    assert not is_complete(store, "000001") and is_complete(store, "000000")
    with pytest.raises(StoreError, match="incomplete"):
        read_scene(store, "000001")
    with pytest.raises(StoreError, match="not in the store"):
        read_scene(store, "nope")
    assert scene_attrs(store, "000000")["source"] == "synthetic"


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="physgm data synth"):
        open_store(tmp_path / "missing.zarr", "r")
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a physgm scene store"):
        open_store(tmp_path / "other.zarr", "r")


def test_validate_names_the_bad_array(scene, tmp_path):
    root = open_store(tmp_path / "v.zarr", "w")
    bad = Scene(**{**scene.__dict__, "video": scene.video.astype(np.float32)})
    with pytest.raises(StoreError, match="video must be uint8"):
        write_scene(root, "x", bad)
    bad = Scene(**{**scene.__dict__, "K": scene.K[:1]})
    with pytest.raises(StoreError, match=r"K must have shape \(3, 3, 3\)"):
        write_scene(root, "x", bad)
    bad = Scene(**{**scene.__dict__, "particles": scene.particles * np.nan})
    with pytest.raises(StoreError, match="particles has NaN"):
        write_scene(root, "x", bad)
    assert list_scenes(root) == []


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 200), val=st.floats(0, 0.45), test=st.floats(0, 0.45),
       seed=st.integers(0, 10))
def test_splits_disjoint_complete_and_sized(n, val, test, seed):
    ids = [f"{i:06d}" for i in range(n)]
    s = assign_splits(ids, val, test, seed)
    assert sorted(s["train"] + s["val"] + s["test"]) == ids
    assert not (set(s["train"]) & set(s["val"])) and not (set(s["val"]) & set(s["test"]))
    assert not (set(s["train"]) & set(s["test"]))
    if n >= 3:
        assert len(s["test"]) == max(round(n * test), 1 if test > 0 else 0)
        assert len(s["val"]) == max(round(n * val), 1 if val > 0 else 0)
    assert assign_splits(ids, val, test, seed) == s


def test_splits_mostly_stable_when_scenes_are_added():
    small = assign_splits([f"{i:06d}" for i in range(100)], 0.15, 0.15)
    big = assign_splits([f"{i:06d}" for i in range(110)], 0.15, 0.15)
    moved = sum(1 for name in small for i in small[name] if i not in big[name])
    assert moved <= 10
    with pytest.raises(ValueError, match="val_fraction"):
        assign_splits(["a"], 0.6, 0.5)


def test_split_attribute_only_lists_complete_scenes(store, scene):
    write_scene(store, "000001", scene)
    set_splits(store, {"train": ["000000"], "val": ["000001"], "test": []})
    store["scenes/000001"].attrs["complete"] = False
    assert splits(store) == {"train": ["000000"], "val": [], "test": []}
