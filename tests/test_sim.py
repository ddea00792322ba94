"""MLS-MPM simulator: analytic and conservation checks, the five materials, guards."""
import numpy as np
import pytest

from physgm.config import MPMConfig
from physgm.materials import PhysParams
from physgm.sim import SHAPES, choose_substeps, sample_shape, simulate, stable_dt

RES = 32
DX = 1.0 / RES
FLOOR = 3 * DX


def cube(center=(0.5, 0.3, 0.5), size=0.15):
    return sample_shape("cube", center, size, DX / 2)


def cfg(**kw):
    return MPMConfig(**{"grid_res": RES, "device": "cpu", **kw})


def test_free_fall_matches_half_g_t_squared():
    x = cube(center=(0.5, 0.65, 0.5), size=0.1)
    r = simulate(x, PhysParams.default("jelly"), cfg(n_frames=5))
    assert r.status == "ok" and r.positions.shape == (6, len(x), 3)
    drop = r.positions[0, :, 1].mean() - r.positions[:, :, 1].mean(1)
    expected = 0.5 * 9.8 * r.times ** 2
    np.testing.assert_allclose(drop[1:], expected[1:], rtol=0.02)
    # no sideways drift, no deformation in free fall
    np.testing.assert_allclose(r.positions[:, :, [0, 2]].mean(1), 0.5, atol=1e-4)
    np.testing.assert_allclose(r.deformation[-1], np.eye(3)[None].repeat(len(x), 0), atol=1e-3)


def test_momentum_is_conserved_without_gravity_and_walls():
    rng = np.random.default_rng(0)
    x = cube(center=(0.5, 0.5, 0.5), size=0.12)
    v = np.array([0.3, -0.1, 0.2]) + rng.normal(0, 0.4, x.shape)  # internal stress develops
    r = simulate(x, PhysParams.default("jelly"), cfg(n_frames=4, gravity=(0, 0, 0)),
                 velocities=v)
    assert r.status == "ok"
    # equal masses: momentum ∝ mean velocity, so the centre of mass moves in a straight line
    np.testing.assert_allclose(r.velocities.mean(1), v.mean(0)[None].repeat(5, 0), atol=1e-4)
    com = r.positions.mean(1)
    np.testing.assert_allclose(com, x.mean(0) + r.times[:, None] * v.mean(0), atol=1e-4)


def test_elastic_oscillation_keeps_energy_bounded():
    x = cube(center=(0.5, 0.5, 0.5), size=0.15)
    c = x.mean(0)
    v = -5.0 * (x - c)  # squeeze the block: it must spring back, not gain energy
    params = PhysParams.default("jelly", E=1e4)
    r = simulate(x, params, cfg(n_frames=40, frame_dt=0.005, gravity=(0, 0, 0)), velocities=v)
    assert r.status == "ok"
    ke = 0.5 * (r.velocities ** 2).sum(-1).sum(-1)
    assert ke.max() <= 1.02 * ke[0]
    width = np.ptp(r.positions[:, :, 0], axis=1)
    assert width.min() < 0.98 * width[0]  # it compressed …
    assert width[np.argmin(width):].max() > 0.99 * width[0]  # … and sprang back
    assert width.max() < 1.1 * width[0]


@pytest.mark.parametrize("material", ["jelly", "metal", "plasticine", "sand", "snow"])
def test_each_material_lands_on_the_floor(material):
    r = simulate(cube(), PhysParams.default(material), cfg(n_frames=12))
    assert r.status == "ok", r.message
    assert np.isfinite(r.positions).all() and np.isfinite(r.deformation).all()
    assert r.positions[:, :, 1].min() >= FLOOR - 0.25 * DX  # nothing passes the floor
    assert r.positions[-1, :, 1].mean() < r.positions[0, :, 1].mean() - 0.05  # it fell


def _drop(material, **kw):
    from physgm.sim.report import drop_test

    return drop_test(PhysParams.default(material, **kw), cfg(n_frames=22), size=0.15,
                     height=0.3)[1]


def test_jelly_rebounds_more_than_plasticine_and_only_plastics_keep_their_dent():
    jelly, plasticine, metal = _drop("jelly"), _drop("plasticine"), _drop("metal")
    assert jelly["rebound_m"] > plasticine["rebound_m"] + 0.02
    assert plasticine["height_change_pct"] < -25  # flattened for good
    assert metal["height_change_pct"] < -10
    assert abs(jelly["height_change_pct"]) < 8  # elastic: back to its shape


def test_cfl_violation_is_refused_before_running():
    p = PhysParams.default("jelly", E=1e6)
    limit = stable_dt(p, cfg(), courant=1.0)
    with pytest.raises(ValueError, match="CFL"):
        simulate(cube(), p, cfg(substep_dt=2 * limit))
    dt, n = choose_substeps(p, cfg(substep_dt=0.5 * limit))
    assert n == round(0.04 / (0.5 * limit)) and dt * n == pytest.approx(0.04)


def test_bad_inputs_get_clear_errors():
    p = PhysParams.default("jelly")
    with pytest.raises(ValueError, match="domain interior"):
        simulate(np.array([[0.01, 0.5, 0.5]]), p, cfg())
    with pytest.raises(ValueError, match="NaN"):
        simulate(np.array([[np.nan, 0.5, 0.5]]), p, cfg())
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        simulate(np.zeros((4, 2)), p, cfg())
    with pytest.raises(ValueError, match="substeps per frame"):
        simulate(cube(), p, cfg(), velocities=(1e9, 0, 0))


def test_speed_guard_marks_unstable_and_truncates():
    r = simulate(cube(center=(0.5, 0.6, 0.5)), PhysParams.default("jelly"),
                 cfg(n_frames=10, max_speed=1.0))
    assert r.status == "unstable" and "max speed" in r.message
    assert 1 <= r.n_frames < 10
    assert r.positions.shape[0] == r.deformation.shape[0] == r.n_frames + 1
    speeds = np.linalg.norm(r.velocities, axis=-1).max(-1)
    assert (speeds <= 1.0).all()  # only frames that passed the guard are returned


def test_kernel_guards_count_nan_and_escaping_particles():
    import warp as wp

    from physgm.sim.constitutive import material_struct
    from physgm.sim.solver import resolve_device
    from physgm.sim.stepper import Body, Stepper

    resolve_device("cpu")
    x = cube(center=(0.5, FLOOR + 0.1, 0.5), size=0.15).astype(np.float64)  # 2 chunks
    n = len(x)
    v = np.zeros((n, 3))
    v[:, 1] = -50.0  # one huge substep drives the bottom layers into the floor's cells
    v[0] = np.nan
    body = Body(x, v, np.full(n, (DX / 2) ** 3), 1000.0, np.zeros(n),
                material_struct(PhysParams.default("jelly")), 0.01, 1)
    for parallel in (False, True):
        s = Stepper([body], RES, DX, "cpu", threads=2)
        s.configure(wp.vec3(0.0, 0.0, 0.0), 2, 0.0, 2 * DX, 1 - 2 * DX, parallel=parallel)
        s.frame()
        counts, _ = s.guards()
        (xs,), _, _ = s.state()
        s.close()
        assert s.parallel == parallel
        assert counts[0, 0] >= 1  # the NaN particle was caught, not scattered
        assert counts[0, 2] > 0  # particles pushed past the wall were clamped and counted
        assert xs[1:, 1].min() >= 2 * DX - 1e-6


def test_cpu_runs_are_deterministic_and_thread_count_agrees():
    x = cube()
    p = PhysParams.default("snow")
    a = simulate(x, p, cfg(n_frames=6, threads=2))
    b = simulate(x, p, cfg(n_frames=6, threads=2))
    c = simulate(x, p, cfg(n_frames=6, threads=1))
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.deformation, b.deformation)
    np.testing.assert_allclose(a.positions, c.positions, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_fill_their_box(shape):
    pts = sample_shape(shape, (0.5, 0.5, 0.5), 0.2, 0.01)
    assert len(pts) > 100
    assert (np.abs(pts - 0.5) <= 0.1 + 1e-6).all()
    assert np.ptp(pts, axis=0).max() > 0.17  # it spans its box
    with pytest.raises(ValueError, match="unknown shape"):
        sample_shape("blob", (0.5, 0.5, 0.5), 0.2, 0.01)
