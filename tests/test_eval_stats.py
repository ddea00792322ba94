"""Paired bootstrap intervals of the w/o- vs w/-DPO evaluation (learner/eval_stats.py) and
how the comparison reports them overall, per material, with ties (learner/eval_summary.py)."""
import numpy as np
import pytest

from learner.eval_stats import bootstrap_mean, format_loss_trend, loss_trend, paired_bootstrap
from learner.eval_summary import format_table, mlflow_metrics, summarize


def test_interval_brackets_the_mean_and_is_reproducible():
    rng = np.random.default_rng(3)
    a = rng.normal(0.5, 0.3, 60)
    b = a - 0.1 + rng.normal(0.0, 0.05, 60)
    d = paired_bootstrap(a, b)
    assert d["lo"] < d["mean"] < d["hi"] < 0.0          # a clear paired gain excludes 0
    assert d["mean"] == pytest.approx(float(np.mean(b - a)))
    assert paired_bootstrap(a, b) == d                   # fixed seed: same interval


def test_pairing_matters_and_noise_alone_straddles_zero():
    rng = np.random.default_rng(4)
    scene = rng.normal(0.0, 1.0, 40)                     # large scene-to-scene spread
    a, b = scene, scene - 0.05                           # small, exact per-scene gain
    paired = paired_bootstrap(a, b)
    assert paired["hi"] < 0.0 and paired["hi"] - paired["lo"] < 1e-9
    noise = bootstrap_mean(rng.normal(0.0, 1.0, 40))
    assert noise["lo"] < 0.0 < noise["hi"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_mean([])
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean([1.0, 2.0], level=1.5)
    assert bootstrap_mean([0.25]) == {"mean": 0.25, "lo": 0.25, "hi": 0.25}


def _row(i, gain):
    base = {"reward": -0.4 + 0.01 * i, "mask_iou": 0.6, "track_error": 0.1,
            "material_ok": float(i % 2), "E_err_log10": 0.5 + 0.1 * (i % 3)}
    better = dict(base, reward=base["reward"] + gain, E_err_log10=base["E_err_log10"] - gain)
    return {"scene_id": f"s{i}", "pretrained": base, "dpo": better}


def test_summary_table_and_metrics_carry_the_intervals():
    rows = [_row(i, 0.05) for i in range(12)]
    s = summarize(rows)
    assert s["win_rate"] == 1.0 and s["n_scenes"] == 12
    assert s["delta"]["E_err_log10"]["mean"] == pytest.approx(-0.05)
    assert s["delta"]["material_ok"] == {"mean": 0.0, "lo": 0.0, "hi": 0.0}
    assert s["win_rate_ci"]["lo"] == 1.0
    table = format_table(s)
    assert "paired over scenes" in table and "[-0.050, -0.050]" in table and "95% CI 100%" in table
    m = mlflow_metrics(s)
    assert m["eval/delta/E_err_log10/hi"] == pytest.approx(-0.05)
    assert m["eval/E_mae_log10/dpo"] == pytest.approx(s["dpo"]["E_err_log10"])


def test_per_material_bias_shrink_ties_and_material_right_errors():
    rows = []
    for i in range(20):
        mat = "jelly" if i % 2 else "sand"
        pre_bias = 0.6 if mat == "jelly" else -0.4            # the annotator's signed offsets
        post_bias = 0.2 if mat == "jelly" else -0.4           # DPO fixed jelly, not sand
        ok_pre, ok_post = i % 5 != 0, i % 5 != 0
        def pol(bias, ok, reward):
            return {"reward": reward, "material_ok": float(ok), "E_bias_log10": bias,
                    "E_err_log10": abs(bias), "E_bias_log10_ok": bias if ok else np.nan,
                    "E_err_log10_ok": abs(bias) if ok else np.nan, "particle_dist": 0.02}
        gain = 0.01 if mat == "jelly" else 0.0                # sand: identical videos (ties)
        rows.append({"scene_id": f"s{i}", "true_material": mat,
                     "pretrained": pol(pre_bias, ok_pre, -0.3),
                     "dpo": pol(post_bias, ok_post, -0.3 + gain)})
    s = summarize(rows)
    assert (s["wins"], s["ties"], s["losses"]) == (10, 10, 0)
    assert s["win_rate"] == pytest.approx(0.75) and s["win_rate_decided"] == 1.0
    jelly, sand = s["per_material"]["jelly"], s["per_material"]["sand"]
    assert jelly["bias_shrink"] == pytest.approx(1 - 0.2 / 0.6) and sand["bias_shrink"] == 0.0
    assert jelly["pretrained"]["E_err_log10_ok"] == pytest.approx(0.6)
    assert s["delta"]["E_err_log10_ok"]["mean"] == pytest.approx(-0.2, abs=1e-9)
    table = format_table(s)
    assert "per true material" in table and "10 ties" in table and "67%" in table
    m = mlflow_metrics(s)
    assert m["eval/material/jelly/bias_shrink"] == pytest.approx(2 / 3)
    assert m["eval/material/sand/E_bias_log10_ok/dpo"] == pytest.approx(-0.4)
    assert m["eval/ties"] == 10 and "eval/particle_dist/dpo" in m


def test_loss_trend_finds_a_fall_only_beyond_the_noise():
    rng = np.random.default_rng(0)
    falling = np.linspace(0.69, 0.45, 60) + rng.normal(0, 0.1, 60)
    t = loss_trend(falling)
    assert t["first"]["mean"] == pytest.approx(falling[:20].mean())
    assert t["last"]["mean"] == pytest.approx(falling[-20:].mean())
    assert t["change"]["hi"] < 0 < t["first"]["mean"] - t["last"]["mean"]
    line = format_loss_trend(t)
    assert f"first third {t['first']['mean']:.3f}" in line and f"{t['change']['hi']:+.3f}]" in line
    flat = 0.69 + rng.normal(0, 0.1, 60)
    t = loss_trend(flat)
    assert t["change"]["lo"] < 0 < t["change"]["hi"]
    with pytest.raises(ValueError, match="≥ 3"):
        loss_trend([0.7, 0.6])
