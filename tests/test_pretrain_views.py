"""Pretraining with one V per batch on 2 workers, on its own image-only store, and material
accuracy reported at 1, 2 and 4 views (validation, ``physgm eval``)."""
from collections import Counter

import pytest
import torch

from physgm.config import build_config, pretrain_store_config
from physgm.data.build import synthesize
from physgm.data.dataset import SceneDataset, bucket_views, collate_views
from physgm.model import PhysGM
from pretrain.evaluate import evaluate_models, format_report, mlflow_metrics
from pretrain.loader import ShardedBatches, stream
from pretrain.train import pretrain_data, run_pretrain
from pretrain.validate import material_by_views
from tiny_model import TINY as TINY_MODEL

TINY = {**TINY_MODEL, "near": 0.3, "far": 1.5}
DATA = dict(image_size=32, n_views=4, max_particles=300, val_fraction=0.25,
            test_fraction=0.25, workers=1)


def _cfg(tmp_path, **extra):
    d = {"name": "v", "out_dir": str(tmp_path / "runs"), "model": TINY,
         "sim": {"grid_res": 16, "device": "cpu"}, "render": {"backend": "torch"},
         "data": {**DATA, "path": str(tmp_path / "data.zarr")}}
    for section, values in extra.items():
        d[section] = {**d.get(section, {}), **values}
    return build_config(d)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An image-only store of 8 scenes of 4 stored views each."""
    path = tmp_path_factory.mktemp("pre") / "pre.zarr"
    cfg = build_config({"sim": {"grid_res": 16, "device": "cpu"},
                        "data": {**DATA, "image_only": True}})
    assert len(synthesize(path, cfg, n_scenes=8).written) == 8
    return path


def test_every_worker_sees_one_v_per_batch_and_every_v_equally_often():
    shards = [ShardedBatches(40, 2, rank=r, world=2, seed=5, views=(1, 4)) for r in range(2)]
    per = shards[0].per_epoch
    assert per == 10
    counts = Counter()
    for epoch in range(4):
        keyed = [s.keyed_batches(epoch) for s in shards]
        for j in range(per):
            vs = {v for s in range(2) for _, v in keyed[s][j]}
            assert len(vs) == 1                           # one V per batch, on both ranks
            counts[vs.pop()] += 1
        # the scenes are epoch_batches' (DistributedSampler-like shards, disjoint)
        assert [[i for i, _ in b] for b in keyed[0]] == shards[0].epoch_batches(epoch)
    assert counts == {1: 10, 2: 10, 3: 10, 4: 10}        # 40 batches, exactly balanced
    assert shards[0].batch_views(1, 3) == bucket_views(5, 1 * per + 3, (1, 4))
    assert ShardedBatches(40, 2, seed=5).keyed_batches(0) == \
        ShardedBatches(40, 2, seed=5).epoch_batches(0)  # without views: plain indices
    with pytest.raises(ValueError, match="views"):
        ShardedBatches(40, 2, views=(0, 2))


def test_stream_reads_batches_of_one_v_and_resumes_with_the_same_v(store):
    ds = SceneDataset(store, split="all", n_views=(1, 4), n_targets=1)
    order = ShardedBatches(len(ds), 2, rank=1, world=2, seed=0, views=(1, 4))
    it = stream(ds, order, collate=collate_views)
    seen = [next(it) for _ in range(6)]
    vs = [b["images"].shape[1] for _, _, b in seen]
    assert vs == [order.batch_views(e, i) for e, i, _ in seen]
    assert set(vs) == {1, 2, 3, 4}
    epoch, index = order.advance(*seen[2][:2])
    again = next(stream(ds, order, epoch, index, collate=collate_views))[2]
    torch.testing.assert_close(again["images"], seen[3][2]["images"])


def test_material_accuracy_per_view_count(store):
    torch.manual_seed(0)
    model = PhysGM(build_config({"model": TINY}).model)
    ds = SceneDataset(store, split="all", n_views=2, n_targets=1)
    out = material_by_views(model, ds, [1, 2, 4, 5], batch_size=3)
    assert model.training  # restored
    assert set(out) == {"material_acc/v1", "material_acc/v2", "material_acc/v4",
                        "n_scenes/v1", "n_scenes/v2", "n_scenes/v4"}  # 5 > stored views
    assert all(out[f"n_scenes/v{v}"] == 8 for v in (1, 2, 4))
    assert all(0.0 <= out[f"material_acc/v{v}"] <= 1.0 for v in (1, 2, 4))
    # the same V through the model by hand gives the same accuracy
    batch = collate_views([ds[(i, 4)] for i in range(8)])
    model.eval()
    with torch.no_grad():
        logits = model(batch["images"], batch["plucker"]).physics.logits
    expect = float((logits.argmax(-1) == batch["true_material"]).float().mean())
    assert out["material_acc/v4"] == pytest.approx(expect)
    assert material_by_views(model, ds, [1], batch_size=3, max_scenes=2)["n_scenes/v1"] == 2


def test_physgm_eval_reports_material_accuracy_at_1_2_and_4_views(store, tmp_path):
    cfg = _cfg(tmp_path, pretrain={"batch_size": 2})
    torch.manual_seed(0)
    res = evaluate_models({"model": PhysGM(cfg.model)}, cfg, store, "all")
    fig = res["model"]
    assert {f"material_acc/v{v}" for v in (1, 2, 4)} <= set(fig)
    flat = {**fig, "annotator": res["annotator"], "split": "all", "checkpoint": "x"}
    metrics = mlflow_metrics(flat)
    assert {f"eval/material_acc/v{v}" for v in (1, 2, 4)} <= set(metrics)
    assert "at 4 views (8)" in format_report(flat)


def test_config_names_the_pretraining_store_and_keeps_seeds_apart(tmp_path):
    cfg = _cfg(tmp_path)
    assert cfg.data.pretrain_store() is None and pretrain_data(cfg) == cfg.data.path
    cfg = _cfg(tmp_path, data={"pretrain_scenes": 640})
    assert pretrain_data(cfg) == str(tmp_path / "data-pretrain.zarr")
    pre = pretrain_store_config(cfg)
    assert pre.data.image_only and pre.data.n_scenes == 640 and pre.data.test_fraction == 0
    assert pre.data.seed == cfg.data.pretrain_store_seed() != cfg.data.seed
    assert pre.data.seed not in cfg.eval.seeds(cfg.data.seed)
    with pytest.raises(ValueError, match="data.pretrain_seed"):
        _cfg(tmp_path, data={"pretrain_scenes": 4, "pretrain_seed": 1},
             eval={"val_scenes": 2})
    with pytest.raises(ValueError, match="pretrain_scenes"):
        _cfg(tmp_path, data={"pretrain_path": "x.zarr"})
    with pytest.raises(ValueError, match="must differ from data.path"):
        _cfg(tmp_path, data={"pretrain_scenes": 4, "pretrain_path": str(tmp_path / "data.zarr")})
    with pytest.raises(ValueError, match="dpo.encode_views"):
        _cfg(tmp_path, dpo={"encode_views": 5})
    with pytest.raises(ValueError, match="report_views"):
        _cfg(tmp_path, pretrain={"report_views": [1, 1]})
    with pytest.raises(ValueError, match="report_views"):
        _cfg(tmp_path, pretrain={"report_views": [8]})


def test_pretraining_trains_on_the_pretraining_store_alone(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _cfg(tmp_path, data={"pretrain_scenes": 8},
               pretrain={"steps": 2, "batch_size": 2, "warmup_steps": 0, "log_every": 1,
                         "val_every": 2, "checkpoint_every": 2, "num_workers": 1,
                         "views": [1, 4], "report_views": [1, 2, 4]})
    pre = pretrain_store_config(cfg)
    assert len(synthesize(pre.data.path, pre).written) == 8
    assert not (tmp_path / "data.zarr").exists()  # data.path is never read
    out = run_pretrain(cfg, use_ray=False, progress=False)
    assert out["status"] == "ok" and out["step"] == 2
    assert {f"material_acc/v{v}" for v in (1, 2, 4)} <= set(out["metrics"])
