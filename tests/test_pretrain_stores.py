"""`physgm run`'s data stage makes the image-only pretraining store beside the full DPO,
validation and test stores, each with its own seed; DPO and evaluation encode a stated
number of views (``dpo.encode_views``)."""
import numpy as np
import pytest
import torch

from physgm.config import build_config
from physgm.data.store import is_image_only, list_scenes, open_store, splits
from physgm.model import PhysGM
from pipeline.run import held_out_config, stage_data, stage_pretrain
from pipeline.study import plan_study
from tiny_model import TINY as TINY_MODEL

TINY = {**TINY_MODEL, "near": 0.3, "far": 1.5}


def _cfg(tmp_path, **data):
    return build_config({
        "name": "s", "out_dir": str(tmp_path / "runs"), "model": TINY,
        "sim": {"grid_res": 16, "device": "cpu"}, "render": {"backend": "torch"},
        "data": {"path": str(tmp_path / "data.zarr"), "image_size": 32, "video_frames": 3,
                 "n_views": 4, "max_particles": 300, "val_fraction": 0.25,
                 "test_fraction": 0.25, "workers": 1, "n_scenes": 2, **data},
        "eval": {"val_scenes": 1, "test_scenes": 1}})


def test_data_stage_makes_the_pretraining_store_with_its_own_seed(tmp_path):
    cfg = _cfg(tmp_path, pretrain_scenes=4)
    out = stage_data(cfg, "parent", lambda *a, **k: None)
    assert set(out) == {"train", "pretrain", "val", "test"}
    assert out["pretrain"]["written"] == 4 and out["pretrain"]["image_only"] is True
    assert out["train"]["image_only"] is False
    pre = open_store(tmp_path / "data-pretrain.zarr")
    assert is_image_only(pre) and len(list_scenes(pre)) == 4 and not splits(pre)["test"]
    seeds = {name: open_store(tmp_path / f"{name}.zarr").attrs["generator"]["data"]["seed"]
             for name in ("data", "data-pretrain", "val", "test")}
    assert len(set(seeds.values())) == 4  # four stores, four seeds
    assert seeds["data-pretrain"] == cfg.data.pretrain_store_seed()
    for name in ("data", "val", "test"):  # DPO and evaluation stores keep their videos
        assert not is_image_only(open_store(tmp_path / f"{name}.zarr"))
    held = held_out_config(cfg, "test")
    assert held.data.pretrain_scenes == 0 and not held.data.image_only


def test_pretrain_stage_completes_a_pretraining_store_that_grew(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr("pretrain.train.run_pretrain",
                        lambda cfg, **kw: seen.append(cfg.data.pretrain_store()) or {})
    out = stage_pretrain(_cfg(tmp_path, pretrain_scenes=2), "p", lambda *a, **k: None)
    assert out["pretrain_store"]["written"] == 2
    assert seen == [str(tmp_path / "data-pretrain.zarr")]
    out = stage_pretrain(_cfg(tmp_path, pretrain_scenes=3), "p", lambda *a, **k: None)
    assert out["pretrain_store"]["written"] == 1 and out["pretrain_store"]["skipped"] == 2
    assert "pretrain_store" not in stage_pretrain(_cfg(tmp_path, pretrain_scenes=3), "p",
                                                  lambda *a, **k: None)
    assert stage_pretrain(_cfg(tmp_path), "p", lambda *a, **k: None) == {}


def test_data_stage_refuses_an_image_only_dpo_store(tmp_path):
    with pytest.raises(ValueError, match="data.pretrain_scenes"):
        stage_data(_cfg(tmp_path, image_only=True), "parent", lambda *a, **k: None)


def test_study_gives_each_data_seed_its_own_pretraining_store(tmp_path):
    plan = plan_study(_cfg(tmp_path, pretrain_scenes=8, pretrain_seed=50), "st", 2, 1)
    paths = [c.data.pretrain_store() for c in plan.data]
    seeds = [c.data.pretrain_store_seed() for c in plan.data]
    assert len(set(paths)) == 2 and seeds == [50, 150]
    assert all(p.endswith(f"data{c.data.seed}-pretrain.zarr") for p, c in zip(paths, plan.data))


def test_dpo_tokens_encode_the_stated_number_of_views(tmp_path):
    from runtime.scenes import encode_scenes, scene_split

    cfg = _cfg(tmp_path)
    stage_data(cfg.model_copy(update={"eval": cfg.eval.model_copy(
        update={"val_scenes": 0, "test_scenes": 0})}), "p", lambda *a, **k: None)
    ids = scene_split(cfg, "all")
    torch.manual_seed(0)
    model = PhysGM(cfg.model)
    two = cfg.model_copy(update={"dpo": cfg.dpo.model_copy(update={"encode_views": 2})})
    cache = tmp_path / "tokens.pt"
    tokens = encode_scenes(model, two, ids, cache=cache)
    assert torch.load(cache, weights_only=False)["key"]["views"] == 2
    explicit = encode_scenes(model, cfg, ids, views=2)
    assert all(np.array_equal(tokens[s], explicit[s]) for s in ids)
    four = encode_scenes(model, cfg, ids, cache=cache)  # default 4: recomputed, not reused
    assert torch.load(cache, weights_only=False)["key"]["views"] == cfg.dpo.encode_views == 4
    assert not all(np.allclose(four[s], tokens[s]) for s in ids)


def test_the_served_check_sends_a_scene_of_the_final_test_store(tmp_path):
    """`physgm run`'s serve stage needs a held-out scene even when the training store keeps
    no test split (the quickstart: data.test_fraction 0, its own test store)."""
    from pipeline.serve_check import held_out_scene

    cfg = _cfg(tmp_path, test_fraction=0.0, val_fraction=0.0)
    stage_data(cfg, "parent", lambda *a, **k: None)
    store, sid = held_out_scene(cfg)
    assert store == str(tmp_path / "test.zarr") and sid in list_scenes(open_store(store))
    no_test = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"test_scenes": 0,
                                                                          "val_scenes": 0})})
    with pytest.raises(ValueError, match="eval.test_scenes"):
        held_out_scene(no_test)
