"""The ceiling of DPO's E (learner.ceiling): the grid, its parameters, the per-material
summary and the gap DPO closes, and the real simulations on a tiny world (no Ray)."""
import math

import numpy as np
import pytest

from dpo_fixtures import make_world, small_cfg
from learner.ceiling import (E_SLOT, e_grid, format_ceiling, run_ceiling, summarize_ceiling,
                             z_with_E)
from physgm.materials import PARAM_NAMES, PARAM_RANGES, denormalize


def test_grid_spans_the_true_range_and_sets_E_alone(tmp_path):
    cfg = small_cfg(tmp_path, **{"data.true_E_pa": {"jelly": [1.5e4, 1.0e5]}})
    grid = e_grid(cfg, "jelly", 5)
    assert grid[0] == pytest.approx(1.5e4) and grid[-1] == pytest.approx(1.0e5)
    assert np.allclose(np.diff(np.log10(grid)), np.diff(np.log10(grid))[0])
    assert e_grid(cfg, "metal", 3)[-1] == pytest.approx(PARAM_RANGES["metal"]["E"][1])
    z = np.linspace(-0.5, 0.5, len(PARAM_NAMES)).astype(np.float32)
    zs = z_with_E(z, grid)
    assert zs.shape == (5, len(PARAM_NAMES))
    for row, E in zip(zs, grid):
        assert denormalize("jelly", row).E == pytest.approx(E, rel=1e-4)
        assert np.array_equal(np.delete(row, E_SLOT), np.delete(z, E_SLOT))
    with pytest.raises(ValueError, match="at least 2"):
        e_grid(cfg, "jelly", 1)


def test_summary_picks_the_best_constant_and_the_gap_on_material_right_scenes():
    E = [1e4, 1e5, 1e6]
    rows = [{"scene_id": "a", "true_material": "jelly", "E": E, "reward": [-0.5, -0.1, -0.3]},
            {"scene_id": "b", "true_material": "jelly", "E": E, "reward": [-0.4, -0.2, -0.1]},
            {"scene_id": "c", "true_material": "snow", "E": E, "reward": [-0.3, -0.3, -0.3]}]
    comp = [{"scene_id": "a", "pretrained": {"reward": -0.5, "material_ok": 1.0},
             "dpo": {"reward": -0.3}},
            {"scene_id": "b", "pretrained": {"reward": -0.9, "material_ok": 0.0},
             "dpo": {"reward": -0.1}}]
    s = summarize_ceiling(rows, comp)
    j = s["jelly"]
    assert j["E_star"] == 1e5 and j["ceiling"] == pytest.approx(-0.15) and j["n"] == 2
    # only scene a names the material right: ceiling there −0.1, DPO closes (0.2 / 0.4)
    assert j["n_ok"] == 1 and j["ceiling_ok"] == pytest.approx(-0.1)
    assert j["gap_closed"] == pytest.approx(0.5)
    assert "n_ok" not in s["snow"] and "gap_closed" not in summarize_ceiling(rows)["jelly"]
    table = format_ceiling(s)
    assert "50%" in table and "snow" in table
    assert "E_best_bias" not in j  # rows without true_E


def test_best_E_bias_is_the_signed_offset_of_each_scenes_preferred_E():
    """Scene a prefers 1e5 with true 1e5 (0 decades), b prefers 1e6 with true 1e5 (+1):
    jelly's reward endorses a +0.5 decade bias on average."""
    E = [1e4, 1e5, 1e6]
    rows = [{"scene_id": "a", "true_material": "jelly", "true_E": 1e5, "E": E,
             "reward": [-0.5, -0.1, -0.3]},
            {"scene_id": "b", "true_material": "jelly", "true_E": 1e5, "E": E,
             "reward": [-0.4, -0.2, -0.1]}]
    s = summarize_ceiling(rows)
    assert s["jelly"]["E_best_bias"] == pytest.approx(0.5)
    assert "+0.50" in format_ceiling(s)


def test_ceiling_simulates_every_grid_value_of_real_scenes(tmp_path):
    ckpt = make_world(tmp_path)
    cfg = small_cfg(tmp_path)
    done = []
    rows = run_ceiling(cfg, str(ckpt), n_grid=3, n_scenes=2, parallel=False,
                       on_progress=lambda d, t: done.append((d, t)))
    assert len(rows) == 2 and done[-1] == (2, 2)
    for r in rows:
        assert len(r["E"]) == len(r["reward"]) == 3
        assert all(math.isfinite(x) and x <= 0.0 for x in r["reward"])
        lo, hi = cfg.data.true_ranges(r["true_material"]).get(
            "E", PARAM_RANGES[r["true_material"]]["E"])
        assert r["E"][0] == pytest.approx(lo) and r["E"][-1] == pytest.approx(hi)
        assert lo <= r["true_E"] <= hi
    # E changes the simulated video: the grid's rewards are not all equal on every scene
    assert any(len(set(np.round(r["reward"], 6))) > 1 for r in rows)
    summary = summarize_ceiling(rows)
    assert set(summary) == {r["true_material"] for r in rows}


def test_no_gap_closed_where_the_pretrained_policy_is_at_the_ceiling():
    rows = [{"scene_id": "a", "true_material": "sand", "E": [1e4, 1e5], "reward": [-0.2, -0.1]}]
    comp = [{"scene_id": "a", "pretrained": {"reward": -0.102, "material_ok": 1.0},
             "dpo": {"reward": -0.05}}]
    assert math.isnan(summarize_ceiling(rows, comp)["sand"]["gap_closed"])
    assert summarize_ceiling(rows, comp, min_gap=0.001)["sand"]["gap_closed"] == pytest.approx(26.0)
