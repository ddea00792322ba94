"""The DPO learning curve and the plots: snapshots of the physics head written at the right
steps during a real DPO run, scored on the validation store, drawn as PNGs by the eval
stage and logged to MLflow (curve/* metrics at the DPO steps, plots/ artifacts); and the
curve's figures on synthetic rows, by hand."""
import json

import pytest
import ray
import torch

from dpo_fixtures import make_world, small_cfg
from learner.curve_summary import bias_by_material, curve_figures, curve_metrics, head_name


def _row(material, rewards, biases):
    """One scene: the reward and signed bias of heads step 0 and step 4 (None: wrong
    material)."""
    row = {"scene_id": material + str(rewards), "true_material": material}
    for step, reward, bias in zip((0, 4), rewards, biases):
        ok = bias is not None
        row[head_name(step)] = {"reward": reward, "material_ok": float(ok),
                                "E_err_log10": abs(bias or 1.0), "E_bias_log10": bias or 1.0,
                                "E_bias_log10_ok": bias if ok else float("nan"),
                                "E_err_log10_ok": abs(bias) if ok else float("nan")}
    return row


def test_curve_figures_by_hand():
    rows = [_row("jelly", (-0.5, -0.3), (0.8, 0.2)), _row("jelly", (-0.4, -0.2), (0.6, 0.4)),
            _row("snow", (-0.2, -0.3), (None, -0.2))]
    points = curve_figures(rows, [4, 0], tie_eps=1e-3)
    assert [p["step"] for p in points] == [0, 4]
    first, last = points
    assert first["reward_change"]["mean"] == pytest.approx(0.0) and first["win_rate"] == 0.5
    assert last["reward"] == pytest.approx(-0.8 / 3)
    assert last["reward_change"]["mean"] == pytest.approx((0.2 + 0.2 - 0.1) / 3)
    assert last["win_rate"] == pytest.approx(2 / 3)
    assert first["E_bias"]["jelly"]["mean"] == pytest.approx(0.7)
    assert first["E_bias"]["snow"] is None  # no scene of it with the material right
    assert last["E_bias"]["jelly"]["mean"] == pytest.approx(0.3)
    assert last["E_bias"]["snow"] == {"mean": -0.2, "lo": -0.2, "hi": -0.2, "n": 1}
    assert last["material_acc"] == 1.0 and first["material_acc"] == pytest.approx(2 / 3)
    m = curve_metrics(last)
    assert m["curve/E_bias_log10_ok/jelly"] == pytest.approx(0.3)
    assert "curve/E_bias_log10_ok/snow" not in curve_metrics(first)
    bias = bias_by_material(rows, (head_name(0), head_name(4)))
    assert bias["jelly"][head_name(0)]["n"] == 2 and bias["snow"][head_name(0)] is None
    with pytest.raises(ValueError):
        curve_figures(rows, [], 1e-3)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("curve")
    make_world(tmp)
    yield tmp
    if ray.is_initialized():
        ray.shutdown()


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 5000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_snapshots_scored_plotted_and_logged(workdir):
    from learner.curve import list_snapshots
    from pipeline.run import stage_eval, synthesize_held_out, train_dpo
    from runtime.tracking import client

    cfg = small_cfg(workdir, name="curve", **{
        "dpo.init_checkpoint": str(workdir / "runs/quickstart/checkpoints/final"),
        "dpo.steps": 5, "dpo.epochs": 3, "eval.curve_every": 2, "eval.curve_scenes": 2,
        "eval.val_scenes": 2, "eval.test_scenes": 2})
    say = lambda msg, transient=False: None  # noqa: E731
    from learner.curve import save_snapshot

    save_snapshot(cfg.run_dir, 99, {"w": torch.zeros(1)})  # left by an earlier DPO run
    dpo = train_dpo(cfg, None, say)
    assert dpo["steps"] == 5
    snaps = list_snapshots(cfg.run_dir)
    # step 0, every 2 steps, and the last; a fresh run starts its curve anew
    assert [s for s, _ in snaps] == [0, 2, 4, 5]
    pretrained = torch.load(snaps[0][1])["physics_head"]
    from physgm.model import load_model

    model, _ = load_model(workdir / "runs/quickstart/checkpoints/final")
    for k, v in model.physics_head.state_dict().items():
        assert torch.equal(pretrained[k], v)  # step 0 is the pretrained head
    final, _ = load_model(dpo["checkpoint"])
    last = torch.load(snaps[-1][1])["physics_head"]
    assert all(torch.equal(last[k], v) for k, v in final.physics_head.state_dict().items())
    assert any(not torch.equal(last[k], pretrained[k]) for k in last)  # DPO moved it

    synthesize_held_out(cfg, say)
    out = stage_eval(cfg, None, say)
    curve = out["plots"]["curve"]
    assert curve["snapshots"] == 4 and curve["scenes"] == 2
    assert [p["step"] for p in curve["points"]] == [0, 2, 4, 5]
    assert all(p["n_scenes"] == 2 for p in curve["points"])
    plots = cfg.run_dir / "plots"
    assert _is_png(plots / "dpo_curve.png") and _is_png(plots / "E_bias_by_material.png")
    assert json.loads((plots / "dpo_curve.json").read_text())[1]["step"] == 2
    c = client(cfg)
    run_id = out["mlflow_run_id"]
    arts = {a.path for a in c.list_artifacts(run_id, "plots")}
    assert {"plots/dpo_curve.png", "plots/E_bias_by_material.png"} <= arts
    history = c.get_metric_history(run_id, "curve/video_reward")
    assert sorted(m.step for m in history) == [0, 2, 4, 5]
    by_step = {m.step: m.value for m in history}
    assert by_step[4] == pytest.approx(curve["points"][2]["reward"])

    # step 0 and the last step reuse the validation comparison's rows (same weights): the
    # curve scored afresh, every snapshot simulated, gives the same points
    from learner.curve import _reused, load_heads, score_curve
    from pipeline.run import held_out_config

    val = held_out_config(cfg, "val")
    heads = load_heads(model, snaps)
    ids = ["000000", "000001"]
    rows = [{"scene_id": i, "pretrained": {}, "dpo": {}} for i in ids]
    known = {"pretrained": (model.physics_head, rows), "dpo": (final.physics_head, rows)}
    assert _reused(heads, known, ids) == {head_name(0): "pretrained", head_name(5): "dpo"}
    assert _reused(heads, known, ids + ["000002"]) == {}  # rows must cover every scene
    fresh, _ = score_curve(val, cfg.run_dir, str(workdir / "runs/quickstart/checkpoints/final"),
                           2)
    for a, b in zip(fresh, curve["points"]):
        assert a["step"] == b["step"] and a["reward"] == pytest.approx(b["reward"])
        assert a["win_rate"] == b["win_rate"] and a["E_bias"] == b["E_bias"]
    summary = out["val"]["summary"]
    assert curve["points"][0]["reward"] == pytest.approx(summary["pretrained"]["reward"])
    assert curve["points"][-1]["reward"] == pytest.approx(summary["dpo"]["reward"])
