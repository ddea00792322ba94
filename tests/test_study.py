"""`physgm study`: the plan of sub-runs (which seeds, which stores, which pretraining each
DPO run starts from), the refusal to reuse a sub-run made with other settings, and one
tiny study end to end (1 data seed × 2 DPO seeds), resumed from its finished sub-runs."""
import json
from pathlib import Path

import pytest
import ray

from physgm.config import load_config
from pipeline.run import held_out_config
from pipeline.study import check_reuse, plan_study

TINY = ["model.image_size=32", "model.patch_size=8", "model.dim=32", "model.depth=2",
        "model.heads=2", "model.backbone_depth=1", "model.dpt_features=16",
        "model.physics_hidden=32", "model.near=0.3", "model.far=1.5"]


def _cfg(tmp, *extra):
    return load_config(None, [f"out_dir={tmp}/runs", "eval.val_scenes=2", "eval.test_scenes=2",
                              *extra])


def test_plan_shares_pretraining_and_held_out_stores(tmp_path):
    plan = plan_study(_cfg(tmp_path, "data.seed=5", "dpo.seed=3", "seed=2"), "s", 2, 3)
    root = tmp_path / "runs" / "s"
    assert plan.root == root and [c.name for c in plan.data] == ["s-data5", "s-data105"]
    assert [c.data.seed for c in plan.data] == [5, 105] and [c.seed for c in plan.data] == [2, 3]
    assert [Path(c.data.path) for c in plan.data] == [root / "data5.zarr", root / "data105.zarr"]
    for data_cfg, group in zip(plan.data, plan.dpo):
        assert [c.dpo.seed for c in group] == [3, 4, 5]
        assert [c.name for c in group] == [f"{data_cfg.name}-dpo{s}" for s in (3, 4, 5)]
        for c in group:  # one pretraining and one training store per data seed
            assert c.dpo.init_checkpoint == str(data_cfg.run_dir / "checkpoints" / "final")
            assert c.data.path == data_cfg.data.path and c.run_dir != data_cfg.run_dir
            # every run meets the same held-out scenes: seeds of the base, beside the stores
            for which, seed in (("val", 6), ("test", 5 + 7919)):
                held = held_out_config(c, which)
                assert held.data.seed == seed and Path(held.data.path) == root / f"{which}.zarr"
    with pytest.raises(ValueError, match="eval.test_scenes"):
        plan_study(load_config(None, []), "s", 1, 1)
    with pytest.raises(ValueError, match="--data-seeds"):
        plan_study(_cfg(tmp_path), "s", 0, 1)
    # a pinned validation seed that a data seed would repeat is refused
    with pytest.raises(ValueError, match="must differ"):
        plan_study(_cfg(tmp_path, "eval.val_seed=100"), "s", 2, 1)


def test_a_sub_run_with_other_settings_is_not_reused(tmp_path):
    cfg = _cfg(tmp_path)
    check_reuse(cfg, ("data", "eval.test_scenes"))
    check_reuse(cfg, ("data", "eval.test_scenes"))  # the same settings: fine
    changed = _cfg(tmp_path, "eval.test_scenes=3")
    with pytest.raises(ValueError, match=r"eval\.test_scenes.*another --name"):
        check_reuse(changed, ("data", "eval.test_scenes"))
    check_reuse(_cfg(tmp_path, "dpo.lr=0.5"), ("data", "eval.test_scenes"))  # not compared


def test_cli_refuses_bad_input_before_running_anything(tmp_path):
    from typer.testing import CliRunner

    from physgm.cli import app

    runner = CliRunner()
    assert "study" in runner.invoke(app, ["--help"]).output
    res = runner.invoke(app, ["study", "--dpo-seeds", "0"])
    assert res.exit_code == 2 and "--dpo-seeds" in res.output
    res = runner.invoke(app, ["study", "--set", f"out_dir={tmp_path}/runs",
                              "--set", "eval.test_scenes=0"])
    assert res.exit_code == 2 and "eval.test_scenes" in res.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_tiny_study_end_to_end_then_resumed(tmp_path, monkeypatch):
    from pipeline.study import run_study
    from runtime.tracking import client

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _cfg(tmp_path, *TINY, "data.n_scenes=6", "data.image_size=32", "data.video_frames=6",
               "data.max_particles=500", "data.n_views=2", "data.val_fraction=0.2",
               "data.test_fraction=0.2", "render.width=32", "render.height=32",
               "sim.grid_res=24", "pretrain.steps=2", "pretrain.batch_size=2",
               "pretrain.num_workers=1", "pretrain.views=[1, 2]", "pretrain.val_every=2",
               "pretrain.checkpoint_every=2", "dpo.k=3", "dpo.batch_pairs=2", "dpo.steps=2",
               "dpo.epochs=1", "eval.curve_every=1", "eval.curve_scenes=2")
    said = []
    try:
        study = run_study(cfg, "tiny", data_seeds=1, dpo_seeds=2,
                          say=lambda m, transient=False: said.append(m))
        runs_dir = tmp_path / "runs"
        saved = json.loads((runs_dir / "tiny" / "study.json").read_text())
        assert saved["figures"] == study["figures"] and len(saved["runs"]) == 2
        assert [r["dpo_seed"] for r in saved["runs"]] == [0, 1]
        wr = [r["figures"]["win_rate"] for r in saved["runs"]]
        assert saved["figures"]["win_rate"]["mean"] == pytest.approx(sum(wr) / 2)
        assert saved["figures"]["win_rate"]["n"] == 2 and saved["test_scenes"] == 2
        md = (runs_dir / "tiny" / "study.md").read_text()
        assert "| win rate, ties half ↑ |" in md and md.strip() in said
        for s in (0, 1):  # each DPO run: its eval, its plots
            sub = runs_dir / f"tiny-data0-dpo{s}"
            assert (sub / "plots" / "dpo_curve.png").stat().st_size > 5000
            assert (sub / "checkpoints" / "dpo").is_dir()
            assert not (sub / "checkpoints" / "final").exists()  # pretrained once, shared
        c = client(cfg)
        parent = c.get_run(study["mlflow_run_id"])
        assert parent.data.metrics["study/win_rate/mean"] == pytest.approx(
            saved["figures"]["win_rate"]["mean"])
        children = c.search_runs([parent.info.experiment_id],
                                 f"tags.mlflow.parentRunId = '{study['mlflow_run_id']}'")
        assert sorted(r.info.run_name for r in children) == [
            "tiny-data0-dpo0/run", "tiny-data0-dpo1/run", "tiny-data0/run"]
        # a second call reuses every finished sub-run and gives the same figures
        said.clear()
        again = run_study(cfg, "tiny", data_seeds=1, dpo_seeds=2,
                          say=lambda m, transient=False: said.append(m))
        assert again["figures"] == study["figures"]
        assert sum("done earlier, reused" in m for m in said) == 6
    finally:
        if ray.is_initialized():
            ray.shutdown()
