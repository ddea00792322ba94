"""Paired bootstrap intervals of the w/o- vs w/-DPO evaluation (learner/eval_stats.py) and
how the comparison table reports them (learner/evaluate.py)."""
import numpy as np
import pytest

from learner.eval_stats import bootstrap_mean, format_loss_trend, loss_trend, paired_bootstrap
from learner.evaluate import format_table, mlflow_metrics, summarize


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
