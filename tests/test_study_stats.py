"""The figures of `physgm study` on synthetic per-run results, against hand-computed
values: one run's headline figures from a comparison summary, their aggregation over runs
(t-interval, spreads across data and DPO seeds), the table, and the plan of sub-runs."""
import math

import numpy as np
import pytest

from learner.eval_summary import summarize
from pipeline.study_stats import (aggregate, aggregate_figure, format_study, headline_figures,
                                  study_metrics, t_quantile)


def _policy(reward, bias, ok, dist):
    return {"reward": reward, "mask_iou": 0.5, "track_error": 0.1, "particle_dist": dist,
            "material_ok": float(ok), "E_err_log10": abs(bias), "E_bias_log10": bias,
            "E_err_log10_ok": abs(bias) if ok else float("nan"),
            "E_bias_log10_ok": bias if ok else float("nan")}


ROWS = [  # (true material, w/o DPO (reward, bias, material right, particle dist), w/ DPO)
    {"scene_id": "a", "true_material": "jelly", "pretrained": _policy(-0.5, 0.8, True, 0.05),
     "dpo": _policy(-0.3, 0.2, True, 0.03)},
    {"scene_id": "b", "true_material": "jelly", "pretrained": _policy(-0.4, 0.6, True, 0.04),
     "dpo": _policy(-0.4, 0.4, True, 0.04)},  # a tie
    {"scene_id": "c", "true_material": "sand", "pretrained": _policy(-0.2, -1.0, False, 0.03),
     "dpo": _policy(-0.25, -0.5, True, 0.03)},  # a loss
    {"scene_id": "d", "true_material": "sand", "pretrained": _policy(-0.3, -0.4, True, 0.02),
     "dpo": _policy(-0.1, -0.1, True, 0.01)},
]


def test_headline_figures_of_one_run_by_hand():
    f = headline_figures(summarize(ROWS))
    assert f["win_rate"] == pytest.approx(2.5 / 4)  # 2 wins, 1 tie (half), 1 loss
    assert f["win_rate_decided"] == pytest.approx(2 / 3)
    assert f["ties"] == 1
    assert f["reward/change"] == pytest.approx((0.2 + 0 - 0.05 + 0.2) / 4)
    assert f["particle_dist/change"] == pytest.approx(-0.0075)
    assert f["E_err_log10/change"] == pytest.approx(0.3 - 0.7)
    assert f["E_err_log10/rel_change"] == pytest.approx(0.3 / 0.7 - 1)
    # material right: w/o on a, b, d (0.6), w/ on all four (0.3); paired over a, b, d
    assert f["E_err_log10_ok/pretrained"] == pytest.approx(0.6)
    assert f["E_err_log10_ok/dpo"] == pytest.approx(0.3)
    assert f["E_err_log10_ok/rel_change"] == pytest.approx(-0.5)
    assert f["E_err_log10_ok/change"] == pytest.approx((-0.6 - 0.2 - 0.3) / 3)
    assert f["material_acc/pretrained"] == 0.75 and f["material_acc/dpo"] == 1.0
    assert f["material_acc/change"] == pytest.approx(0.25)
    assert f["E_bias/jelly/pretrained"] == pytest.approx(0.7)
    assert f["E_bias/jelly/dpo"] == pytest.approx(0.3)
    assert f["E_bias/jelly/shrink"] == pytest.approx(1 - 0.3 / 0.7)
    assert f["E_bias/sand/pretrained"] == pytest.approx(-0.4)
    assert f["E_bias/sand/dpo"] == pytest.approx(-0.3)
    assert f["E_bias/sand/shrink"] == pytest.approx(0.25)


def test_t_quantile_matches_the_table_and_its_expansion():
    assert t_quantile(1) == 12.706 and t_quantile(5) == 2.571 and t_quantile(30) == 2.042
    assert t_quantile(40) == pytest.approx(2.0211, abs=1e-3)
    assert t_quantile(120) == pytest.approx(1.9799, abs=1e-3)
    assert t_quantile(10 ** 6) == pytest.approx(1.95996, abs=1e-4)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0)


def test_aggregation_over_runs_by_hand():
    # 2 data seeds × 2 DPO seeds: data seed means 0.65 and 0.65, DPO spreads ±0.05, ±0.15
    a = aggregate_figure([0.6, 0.7, 0.5, 0.8], [0, 0, 100, 100])
    sd = math.sqrt((0.05 ** 2 * 2 + 0.15 ** 2 * 2) / 3)
    assert a["mean"] == pytest.approx(0.65) and a["n"] == 4
    assert a["sd"] == pytest.approx(sd)
    assert a["lo"] == pytest.approx(0.65 - 3.182 * sd / 2)
    assert a["hi"] == pytest.approx(0.65 + 3.182 * sd / 2)
    assert (a["min"], a["max"]) == (0.5, 0.8)
    assert a["sd_dpo"] == pytest.approx(math.sqrt(0.05 / 2))  # pooled within data seeds
    assert a["sd_data"] == pytest.approx(0.0)
    assert a["data_ci"] == {"lo": pytest.approx(0.65), "hi": pytest.approx(0.65)}
    # data seeds apart: the interval over data-seed means (df 1) is the wide one
    b = aggregate_figure([0.6, 0.62, 0.8, 0.82], [0, 0, 100, 100])
    assert b["sd_data"] == pytest.approx(np.std([0.61, 0.81], ddof=1))
    assert b["data_ci"]["hi"] - b["data_ci"]["lo"] == pytest.approx(
        2 * 12.706 * b["sd_data"] / math.sqrt(2))
    assert b["data_ci"]["hi"] - b["data_ci"]["lo"] > b["hi"] - b["lo"]
    # NaN (a run without that figure) is left out; one run: no interval width, no sd
    c = aggregate_figure([0.4, float("nan")], [0, 0])
    assert c["n"] == 1 and c["lo"] == c["hi"] == 0.4 and math.isnan(c["sd"])
    assert "data_ci" not in c
    assert aggregate_figure([float("nan")], [0]) is None


def _study(runs):
    return {"name": "s", "data_seeds": [0, 100], "dpo_seeds": [0, 1], "interval": "t",
            "test_scenes": 4, "test_seed": 7919, "runs": runs, "figures": aggregate(runs)}


def test_aggregate_table_and_metrics():
    base = headline_figures(summarize(ROWS))
    runs = [{"data_seed": ds, "dpo_seed": s, "figures": {**base, "win_rate": w}}
            for (ds, s), w in zip([(0, 0), (0, 1), (100, 0), (100, 1)], [0.6, 0.7, 0.5, 0.8])]
    figs = aggregate(runs)
    assert list(figs)[:3] == ["win_rate", "win_rate_decided", "ties"]  # the table's order
    assert figs["win_rate"]["mean"] == pytest.approx(0.65)
    assert figs["E_bias/jelly/shrink"]["mean"] == pytest.approx(1 - 0.3 / 0.7)
    assert figs["E_bias/jelly/shrink"]["lo"] == pytest.approx(1 - 0.3 / 0.7)  # no spread
    table = format_study(_study(runs))
    assert ("| win rate, ties half ↑ | 0.650 | [0.445, 0.855] | [0.650, 0.650] | 0.500 … 0.800 |"
            in table)
    assert "| jelly shrink ↑ | 0.57 |" in table and "| sand w/o | -0.400 |" in table
    assert table.count("\n| 100 | ") == 2  # one line per run
    m = study_metrics(figs)
    assert m["study/win_rate/mean"] == pytest.approx(0.65)
    assert m["study/E_bias/sand/dpo/max"] == pytest.approx(-0.3)
