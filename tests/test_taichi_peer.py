"""Taichi MLS-MPM peer benchmark: workload set-up and the physics it must reproduce."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

# benchmarks/ is a script folder, not an installed package: import it from the checkout
# also when pytest is started as `pytest` rather than `python -m pytest`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.taichi_mpm import (  # noqa: E402
    BOUND_CELLS,
    CUBE_CENTER,
    cfl_dt,
    cube_positions,
    lame,
    run_taichi,
)

G = 9.8


def test_lame_and_cfl_match_formulas():
    mu, lam = lame(1e5, 0.3)
    assert mu == pytest.approx(1e5 / 2.6)
    assert lam == pytest.approx(1e5 * 0.3 / (1.3 * 0.4))
    # 0.3 dx / sqrt((lam + 2 mu) / rho), dx = 1/32
    assert cfl_dt(32) == pytest.approx(0.3 / 32 / math.sqrt((lam + 2 * mu) / 1000.0))
    with pytest.raises(ValueError, match="nu"):
        lame(1e5, 0.5)


def test_cube_is_a_jittered_lattice_of_8_per_cell():
    pos = cube_positions(2000, 32, seed=3)
    assert pos.shape == (13**3, 3) and pos.dtype == np.float32
    np.testing.assert_allclose(pos.mean(axis=0), CUBE_CENTER, atol=2e-3)
    side = 13 * (1 / 64)
    extent = pos.max(axis=0) - pos.min(axis=0)
    assert np.all(extent < side) and np.all(extent > side - 1 / 64)
    assert np.all(pos >= BOUND_CELLS / 32)
    np.testing.assert_array_equal(pos, cube_positions(2000, 32, seed=3))
    with pytest.raises(ValueError, match="raise grid_res"):
        cube_positions(200_000, 32)


def test_cube_falls_as_half_g_t_squared():
    pytest.importorskip("taichi")
    r = run_taichi(2000, 32, 50, threads=2)
    assert r["n_particles"] == 13**3 and r["grid_res"] == 32 and r["substeps"] == 50
    assert r["backend"] == "taichi-1.7.4-cpu" and r["threads"] == 2
    assert r["wall_s"] > 0 and r["particle_substeps_per_s"] > 0
    assert not r["has_nan"] and np.all(np.isfinite(r["com_final"]))
    assert r["dt"] == pytest.approx(cfl_dt(32))
    fall = r["com_initial"][1] - r["com_final"][1]
    expected = 0.5 * G * r["sim_time_s"] ** 2
    assert fall == pytest.approx(expected, rel=0.2)
    # No sideways drift in free fall.
    np.testing.assert_allclose(r["com_final"][::2], r["com_initial"][::2], atol=1e-4)


def test_jelly_cube_bounces_off_the_floor():
    pytest.importorskip("taichi")
    floor = BOUND_CELLS / 32
    half_side = 13 / 64 / 2
    impact = run_taichi(2000, 32, 300, threads=2, warmup_substeps=0)
    rebound = run_taichi(2000, 32, 500, threads=2, warmup_substeps=0)
    assert not impact["has_nan"] and not rebound["has_nan"]
    y0 = impact["com_initial"][1]
    # Without the floor the centre of mass would have fallen below it by the rebound time.
    assert y0 - 0.5 * G * rebound["sim_time_s"] ** 2 < floor
    # At impact: squashed against the floor, not through it.
    assert floor + 0.3 * half_side < impact["com_final"][1] < floor + half_side
    # Later: an elastic jelly bounces back up, but no higher than it started.
    assert floor + 1.5 * half_side < rebound["com_final"][1] < y0
