"""Procedural objects and their appearance (no simulation: pure numpy)."""
import colorsys

import numpy as np
import pytest

from physgm.data.appearance import PALETTES, sample_appearance
from physgm.data.objects import ObjectSpec, Part, random_object, random_rotation, sample_object
from physgm.materials import Material
from physgm.sim.shapes import sample_shape

IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def _spec(shape="cube", taper=0.0, bend=0.0, size_m=0.2, parts=None):
    parts = parts or (Part(shape, (0.0, 0.0, 0.0), (2.0, 2.0, 2.0), IDENTITY),)
    return ObjectSpec(tuple(parts), taper, bend, IDENTITY, size_m)


def test_single_cube_matches_the_lattice_of_sample_shape():
    spacing = 1 / 64
    pts, used = sample_object(_spec("cube", size_m=0.2), spacing)
    ref = sample_shape("cube", (0, 0, 0), 0.2, spacing)
    assert used == spacing
    # same particle count (±1 layer of lattice rounding) and same extent
    assert abs(len(pts) - len(ref)) <= 3 * 13 * 13
    np.testing.assert_allclose(np.ptp(pts, 0), np.ptp(ref, 0), atol=spacing + 1e-6)


def test_forward_inverse_round_trip():
    R = random_rotation(np.random.default_rng(1))
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) > 0
    spec = ObjectSpec((Part("sphere", (0, 0, 0), (2, 2, 2), IDENTITY),), 0.3, -0.25,
                      tuple(map(tuple, R)), 0.2)
    u = np.random.default_rng(0).uniform(-1, 1, (500, 3))
    np.testing.assert_allclose(spec.inverse(spec.forward(u)), u, atol=1e-9)


def test_taper_and_bend_change_the_shape():
    cyl = (Part("cylinder", (0, 0, 0), (1.0, 2.0, 1.0), IDENTITY),)
    plain, _ = sample_object(_spec(parts=cyl), 0.01)
    tapered, _ = sample_object(_spec(parts=cyl, taper=0.4), 0.01)
    bent, _ = sample_object(_spec(parts=cyl, bend=0.4), 0.01)
    top = lambda p: p[p[:, 1] > np.percentile(p[:, 1], 90)]  # noqa: E731
    bottom = lambda p: p[p[:, 1] < np.percentile(p[:, 1], 10)]  # noqa: E731
    # taper > 0 widens the top relative to the bottom; the plain cylinder does not
    ratio = lambda p: np.ptp(top(p)[:, 0]) / np.ptp(bottom(p)[:, 0])  # noqa: E731
    assert ratio(tapered) > 1.3 and abs(ratio(plain) - 1) < 0.15
    # bend shifts the middle sideways relative to the ends
    mid = bent[np.abs(bent[:, 1] - np.median(bent[:, 1])) < 0.01][:, 0].mean()
    ends = np.concatenate([top(bent), bottom(bent)])[:, 0].mean()
    assert abs(mid - ends) > 0.01


def test_random_objects_fit_size_and_particle_budget():
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(25):
        spec = random_object(rng, (0.12, 0.25))
        kinds.add(len(spec.parts))
        pts, spacing = sample_object(spec, 1 / 64, max_particles=800)
        assert pts.dtype == np.float32 and pts.ndim == 2 and pts.shape[1] == 3
        assert 0 < len(pts) <= 800
        assert spacing >= 1 / 64
        extent = np.ptp(pts, 0).max()
        assert extent <= spec.size_m + 1e-6 and extent >= 0.5 * spec.size_m
        np.testing.assert_allclose((pts.min(0) + pts.max(0)) / 2, 0, atol=spacing)
    assert kinds == {1, 2, 3}


def test_random_object_is_deterministic_and_round_trips_its_description():
    a = random_object(np.random.default_rng(7))
    b = random_object(np.random.default_rng(7))
    assert a == b
    assert ObjectSpec.from_dict(a.describe()) == a
    pa, _ = sample_object(a, 0.01)
    pb, _ = sample_object(ObjectSpec.from_dict(a.describe()), 0.01)
    np.testing.assert_array_equal(pa, pb)


def test_disconnected_union_keeps_the_largest_piece():
    parts = (Part("cube", (-0.8, 0, 0), (1.0, 1.0, 1.0), IDENTITY),
             Part("cube", (0.9, 0, 0), (0.5, 0.5, 0.5), IDENTITY))
    pts, _ = sample_object(_spec(parts=parts, size_m=0.3), 0.01)
    big_edge = 0.3 * 1.0 / (0.9 + 0.25 + 0.8 + 0.5)  # union spans x in [-1.3, 1.15] units
    # only the big cube is left: a cube of its edge, 13 particles a side
    np.testing.assert_allclose(np.ptp(pts, 0), big_edge, atol=0.011)
    assert len(pts) == len({tuple(k) for k in np.round(pts / 0.01).astype(int)})
    assert abs(len(pts) - round(big_edge / 0.01) ** 3) <= 3 * 13 * 13


def test_unknown_shape_and_bad_spacing_raise():
    with pytest.raises(ValueError, match="unknown shapes"):
        random_object(np.random.default_rng(0), shapes=("blob",))
    with pytest.raises(ValueError, match="spacing"):
        sample_object(_spec(), 0.0)


def _hsv(colors):
    return np.array([colorsys.rgb_to_hsv(*c) for c in colors])


def test_appearance_follows_the_material():
    pts, _ = sample_object(_spec("sphere"), 0.02)
    stats = {}
    for m in Material:
        sat, opa, val = [], [], []
        for s in range(40):
            look = sample_appearance(m, pts, np.random.default_rng(s), mix_probability=0.0)
            assert look.colors.shape == (len(pts), 3) and look.opacities.shape == (len(pts),)
            assert look.colors.min() >= 0 and look.colors.max() <= 1
            assert look.info["palette"] == m.value
            hsv = _hsv(look.colors)
            sat.append(np.median(hsv[:, 1]))
            val.append(np.median(hsv[:, 2]))
            opa.append(look.opacities.mean())
        stats[m] = (np.mean(sat), np.mean(opa), np.mean(val))
    others = [stats[m][1] for m in Material if m != Material.jelly]
    assert stats[Material.jelly][1] < 0.7 < min(others)
    assert stats[Material.metal][0] < 0.3 and stats[Material.snow][0] < 0.2
    assert stats[Material.jelly][0] > 0.5 and stats[Material.plasticine][0] > 0.4
    assert stats[Material.snow][2] > stats[Material.metal][2]
    assert set(PALETTES) == set(Material)


def _neighbour_jump(pts, values, spacing):
    """Mean |value difference| between lattice neighbours along x (grain, not shading)."""
    keys = {tuple(k): i for i, k in enumerate(np.round(pts / spacing).astype(int))}
    diffs = [abs(values[i] - values[keys[(k[0] + 1, k[1], k[2])]])
             for k, i in keys.items() if (k[0] + 1, k[1], k[2]) in keys]
    return float(np.mean(diffs))


def test_sand_is_grainier_than_plasticine():
    spacing = 0.01
    pts, _ = sample_object(_spec("cube"), spacing)
    jump = {m: np.mean([_neighbour_jump(pts, sample_appearance(m, pts, np.random.default_rng(s),
                                                               0.0).colors.mean(1), spacing)
                        for s in range(5)]) for m in (Material.sand, Material.plasticine)}
    assert jump[Material.sand] > 2 * jump[Material.plasticine]


def test_appearance_mix_uses_other_palettes():
    pts, _ = sample_object(_spec(), 0.04)
    palettes = [sample_appearance("metal", pts, np.random.default_rng(s), 0.5).info["palette"]
                for s in range(200)]
    other = np.mean([p != "metal" for p in palettes])
    assert 0.35 < other < 0.65
    always = {sample_appearance("metal", pts, np.random.default_rng(s), 1.0).info["palette"]
              for s in range(50)}
    assert "metal" not in always and len(always) >= 3


def test_physics_cue_ties_colour_to_E_and_the_second_parameter():
    """With the cue, brightness falls and saturation rises with E / yield stress within one
    material (rank correlation near ±1 at c = 1); with c = 0 the draws are the cue-free ones."""
    from physgm.data.appearance import range_position
    from physgm.materials import sample_params

    pts, _ = sample_object(_spec("sphere"), 0.04)
    params = [sample_params("plasticine", np.random.default_rng(100 + s)) for s in range(30)]
    hsv = np.array([sample_appearance("plasticine", pts, np.random.default_rng(s), 0.0, p,
                                      physics_cue=1.0).info["hsv"] for s, p in enumerate(params)])
    t_e = [range_position(p, "E") for p in params]
    t_y = [range_position(p, "yield_stress") for p in params]
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(t_e), rank(hsv[:, 2]))[0, 1] < -0.99
    assert np.corrcoef(rank(t_y), rank(hsv[:, 1]))[0, 1] > 0.99
    for s, p in enumerate(params[:5]):
        plain = sample_appearance("plasticine", pts, np.random.default_rng(s), 0.1)
        zero = sample_appearance("plasticine", pts, np.random.default_rng(s), 0.1, p, 0.0)
        np.testing.assert_allclose(plain.colors, zero.colors, atol=1e-6)
    with pytest.raises(ValueError, match="true parameters"):
        sample_appearance("plasticine", pts, np.random.default_rng(0), 0.0, physics_cue=0.5)
    with pytest.raises(ValueError, match="physics_cue"):
        sample_appearance("plasticine", pts, np.random.default_rng(0), 0.0, params[0], 1.5)


def test_a_fixed_hue_changes_the_hue_alone():
    """hue= replaces the drawn hue and consumes the same draws: with the drawn hue given
    back, the colours are the drawn ones; another hue keeps saturation, value and opacity."""
    pts, _ = sample_object(_spec(), 0.04)
    drawn = sample_appearance("jelly", pts, np.random.default_rng(3), 0.0)
    same = sample_appearance("jelly", pts, np.random.default_rng(3), 0.0, hue=drawn.info["hsv"][0])
    np.testing.assert_allclose(same.colors, drawn.colors, atol=1e-6)
    red = sample_appearance("jelly", pts, np.random.default_rng(3), 0.0, hue=0.97)
    assert red.info["hsv"][0] == 0.97 and red.info["hsv"][1:] == drawn.info["hsv"][1:]
    assert red.info["opacity"] == drawn.info["opacity"]
    with pytest.raises(ValueError, match="hue"):
        sample_appearance("jelly", pts, np.random.default_rng(3), 0.0, hue=1.0)


def test_a_typical_look_sits_at_the_middle_of_the_palette():
    """typical=True: saturation, value and opacity at the middle of the palette's ranges
    whatever the seed; hue and texture still drawn, from the same draws."""
    pts, _ = sample_object(_spec(), 0.04)
    (_, _), (s0, s1), (v0, v1), (o0, o1) = PALETTES[Material.jelly]
    looks = [sample_appearance("jelly", pts, np.random.default_rng(s), 0.0, typical=True)
             for s in (0, 1)]
    for look in looks:
        assert look.info["hsv"][1:] == pytest.approx([(s0 + s1) / 2, (v0 + v1) / 2])
        assert look.info["opacity"] == pytest.approx((o0 + o1) / 2)
    assert looks[0].info["hsv"][0] != looks[1].info["hsv"][0]
    drawn = sample_appearance("jelly", pts, np.random.default_rng(0), 0.0)
    assert drawn.info["hsv"][0] == looks[0].info["hsv"][0]
