"""What the video prefers for E around the prediction (learner.e_shift): the summary, the
option's parsing, and the real simulations on a tiny world (no Ray)."""
import math

import numpy as np
import pytest

from dpo_fixtures import make_world, small_cfg
from learner.e_shift import format_shifts, parse_shifts, run_shifts, summarize_shifts


def test_summary_finds_where_the_video_pulls_E():
    """Jelly predicted +0.5 decades too stiff on average, its reward highest 0.3 below the
    prediction: 0.2 decades of bias left; metal's reward flat but for noise at +0.3."""
    shifts = [-0.3, 0.0, 0.3]
    rows = [{"scene_id": "a", "true_material": "jelly", "pred_bias": 0.4, "shifts": shifts,
             "reward": [-0.10, -0.20, -0.30]},
            {"scene_id": "b", "true_material": "jelly", "pred_bias": 0.6, "shifts": shifts,
             "reward": [-0.20, -0.22, -0.40]},
            {"scene_id": "c", "true_material": "metal", "pred_bias": -0.3, "shifts": shifts,
             "reward": [-0.30, -0.30, -0.29]}]
    s = summarize_shifts(rows)
    assert s["jelly"]["n"] == 2 and s["jelly"]["pred_bias"] == pytest.approx(0.5)
    assert s["jelly"]["reward_by_shift"][0] == [-0.3, pytest.approx(-0.15)]
    assert s["jelly"]["best_shift"] == -0.3 and s["jelly"]["implied_bias"] == pytest.approx(0.2)
    assert s["metal"]["best_shift"] == 0.3 and s["metal"]["implied_bias"] == pytest.approx(0.0)
    table = format_shifts(s)
    assert "-0.1500*" in table and "+0.20" in table and "metal" in table


def test_shift_option_is_parsed_or_refused_by_name():
    assert parse_shifts("-0.3, 0,0.3") == (-0.3, 0.0, 0.3)
    for bad in ("0.3", "a,b", "0,nan", "0,5"):
        with pytest.raises(ValueError, match="--e-shifts"):
            parse_shifts(bad)


def test_shifts_simulate_real_scenes_around_the_prediction(tmp_path):
    ckpt = make_world(tmp_path)
    cfg = small_cfg(tmp_path)
    done = []
    rows = run_shifts(cfg, str(ckpt), (-0.6, 0.0, 0.6), n_scenes=2, parallel=False,
                      on_progress=lambda d, t: done.append((d, t)))
    assert len(rows) == 2 and done[-1] == (2, 2)
    for r in rows:
        assert r["shifts"] == [-0.6, 0.0, 0.6] and len(r["reward"]) == 3
        assert all(math.isfinite(x) and x <= 0.0 for x in r["reward"])
        assert math.isfinite(r["pred_bias"])
    # E changes the simulated video: the shifts' rewards are not all equal on every scene
    assert any(len(set(np.round(r["reward"], 6))) > 1 for r in rows)
    assert set(summarize_shifts(rows)) == {r["true_material"] for r in rows}
