"""simulate_batch: B objects advanced together equal each object simulated alone."""
import numpy as np
import pytest

from physgm.config import MPMConfig
from physgm.materials import MATERIALS, PhysParams
from physgm.sim import sample_shape, simulate, simulate_batch
from physgm.sim.layout import plan
from physgm.sim.solver import plan_groups

RES = 32
DX = 1.0 / RES
FLOOR = 3 * DX


def cfg(**kw):
    return MPMConfig(**{"grid_res": RES, "device": "cpu", "n_frames": 5, "threads": 2, **kw})


def objects():
    """Five materials, mixed sizes (one object above 512 particles: cut in two chunks),
    mixed shapes and initial velocities."""
    specs = [("jelly", "cube", 0.16, (0.3, 0.30, 0.5), (0.0, 0.0, 0.0)),
             ("metal", "sphere", 0.10, (0.6, 0.25, 0.4), (0.2, 0.0, 0.0)),
             ("plasticine", "cylinder", (0.08, 0.12, 0.08), (0.5, 0.2, 0.7), (0.0, -0.5, 0.0)),
             ("sand", "cube", 0.09, (0.5, FLOOR + 0.06, 0.5), (0.0, 0.0, 0.0)),
             ("snow", "sphere", 0.12, (0.4, 0.35, 0.6), (0.0, -1.0, 0.3))]
    xs, ps, vs = [], [], []
    for material, shape, size, centre, vel in specs:
        xs.append(sample_shape(shape, centre, size, DX / 2))
        ps.append(PhysParams.default(material))
        vs.append(np.array(vel))
    return xs, ps, vs


def assert_same(batch, single):
    assert batch.status == single.status
    assert batch.n_frames == single.n_frames
    assert batch.substeps_per_frame == single.substeps_per_frame
    np.testing.assert_allclose(batch.positions, single.positions, atol=1e-5)
    np.testing.assert_allclose(batch.deformation, single.deformation, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_equals_each_object_alone(threads):
    xs, ps, vs = objects()
    assert {p.material.value for p in ps} == {m.value for m in MATERIALS}
    assert max(map(len, xs)) >= 512 and min(map(len, xs)) < 512
    c = cfg(threads=threads)
    batch = simulate_batch(xs, ps, c, velocities=vs)
    assert len(batch) == 5 and all(r.status == "ok" for r in batch)
    assert len({r.substeps_per_frame for r in batch}) > 1  # each its own substep
    for x, p, v, r in zip(xs, ps, vs, batch):
        assert_same(r, simulate(x, p, c, velocities=v))
        assert r.stats["batch"] == 5


def test_batch_is_deterministic_and_thread_counts_agree():
    xs, ps, vs = objects()
    a = simulate_batch(xs, ps, cfg(threads=2), velocities=vs)
    b = simulate_batch(xs, ps, cfg(threads=2), velocities=vs)
    c = simulate_batch(xs, ps, cfg(threads=1), velocities=vs)
    for ra, rb, rc in zip(a, b, c):
        np.testing.assert_array_equal(ra.positions, rb.positions)
        np.testing.assert_allclose(ra.positions, rc.positions, atol=1e-4)


def test_a_member_that_blows_up_leaves_the_others_alone():
    xs, ps, vs = objects()
    bad_v = np.zeros((len(xs[1]), 3))
    bad_v[:, 0] = 30.0  # the metal sphere is thrown at the wall far above cfg.max_speed
    vs_bad = list(vs)
    vs_bad[1] = bad_v
    c = cfg(n_frames=4, max_speed=20.0, substep_dt=1e-4)
    batch = simulate_batch(xs, ps, c, velocities=vs_bad)
    assert batch[1].status != "ok" and batch[1].message
    assert batch[1].n_frames < 4
    for i in (0, 2, 3, 4):
        assert_same(batch[i], simulate(xs[i], ps[i], c, velocities=vs[i]))


def test_parallel_phases_equal_the_serial_frame():
    """A large object runs each substep's phases on the threads: same numbers as one thread
    replaying the whole frame (the chunks and buffers are the same)."""
    import physgm.sim.stepper as stepper

    x = sample_shape("cube", (0.5, 0.3, 0.5), 0.2, DX / 2)
    p = PhysParams.default("jelly")
    old = stepper.PARALLEL_MIN_PARTICLES
    try:
        stepper.PARALLEL_MIN_PARTICLES = 0
        par = simulate(x, p, cfg(n_frames=3))
        stepper.PARALLEL_MIN_PARTICLES = 10 ** 9
        ser = simulate(x, p, cfg(n_frames=3))
    finally:
        stepper.PARALLEL_MIN_PARTICLES = old
    assert par.stats["parallel"] and not ser.stats["parallel"]
    np.testing.assert_array_equal(par.positions, ser.positions)


def test_layout_cuts_each_object_as_alone_and_orders_by_substeps():
    lay = plan([300, 1000, 100], [10, 40, 20], threads=2)
    assert list(lay.order) == [1, 2, 0] and list(lay.n_sub) == [40, 20, 10]
    flat = np.concatenate(lay.perm)
    assert sorted(flat) == list(range(1400))  # every particle once
    # the 1000-particle object is cut in two halves, in buffer order
    assert lay.perm[1][499] < lay.starts[1] <= lay.perm[1][500]
    assert lay.moving_blocks(15) == 2 and lay.moving_blocks(39) == 1
    for t in range(2):
        moving = lay.moving_range(t, 30)
        assert set(lay.pobj[lay.starts[t]:lay.starts[t] + moving]) <= {0}


def test_groups_spread_work_or_share_threads():
    assert plan_groups([500] * 4, [10] * 4, 2) == [[0, 2], [1, 3]]
    assert plan_groups([500] * 4, [10] * 4, 1) == [[0, 1, 2, 3]]
    assert plan_groups([50000, 500], [10, 10], 2) == [[0, 1]]  # one object dominates


def test_bad_input_names_the_member():
    xs, ps, vs = objects()
    with pytest.raises(ValueError, match="params has 4 entries"):
        simulate_batch(xs, ps[:4], cfg())
    with pytest.raises(ValueError, match="velocities has 2 entries"):
        simulate_batch(xs, ps, cfg(), velocities=vs[:2])
    bad = list(xs)
    bad[3] = xs[3] + 2.0  # outside the domain
    with pytest.raises(ValueError, match=r"member 3 \(sand\).*inside the domain"):
        simulate_batch(bad, ps, cfg())
    nan = list(xs)
    nan[2] = xs[2].copy()
    nan[2][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"positions\[2\] contains NaN"):
        simulate_batch(nan, ps, cfg())
    with pytest.raises(ValueError, match=r"params\[1\] must be a PhysParams"):
        simulate_batch(xs, [ps[0], "metal", *ps[2:]], cfg())
    wrong_v = list(vs)
    wrong_v[4] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"member 4 \(snow\): velocities must be"):
        simulate_batch(xs, ps, cfg(), velocities=wrong_v)
    assert simulate_batch([], [], cfg()) == []
