"""Materials: enum, parameter validation, ranges and the model's normalised space."""
import math

import numpy as np
import pytest
from pydantic import ValidationError

from physgm.materials import (DEFAULTS, MATERIAL_SLOTS, MATERIALS, NORM, PARAM_NAMES,
                              PARAM_RANGES, Material, PhysParams, denormalize, normalize,
                              sample_params)


def test_the_five_materials():
    assert {m.value for m in Material} >= {"jelly", "metal", "plasticine", "sand", "snow"}
    assert Material("sand") is Material.sand


@pytest.mark.parametrize("material", MATERIALS)
def test_defaults_lie_in_their_ranges(material):
    p = PhysParams.default(material)
    assert p.out_of_range() == []
    for name, (lo, hi) in PARAM_RANGES[material].items():
        assert lo < hi and lo <= DEFAULTS[material][name] <= hi


def test_validation_names_the_field():
    with pytest.raises(ValidationError, match="nu"):
        PhysParams(material="jelly", E=1e5, nu=0.5)
    with pytest.raises(ValidationError, match="E"):
        PhysParams(material="jelly", E=-1.0, nu=0.3)
    with pytest.raises(ValidationError, match="friction_angle does not apply to jelly"):
        PhysParams(material="jelly", E=1e5, nu=0.3, friction_angle=30.0)
    with pytest.raises(ValidationError):
        PhysParams(material="glass", E=1e5, nu=0.3)


def test_material_specific_defaults_are_filled():
    p = PhysParams(material="snow", E=1e5, nu=0.2)
    assert p.critical_compression == DEFAULTS[Material.snow]["critical_compression"]
    assert PhysParams(material="metal", E=1e6, nu=0.3).yield_stress == 1e4
    assert "E=1e+08" in PhysParams(material="jelly", E=1e8, nu=0.3).out_of_range()[0]


def test_lame_and_wave_speed_match_the_formulas():
    p = PhysParams.default("jelly", E=1e5, nu=0.3, density=1000.0)
    mu, lam = p.lame()
    assert mu == pytest.approx(1e5 / 2.6) and lam == pytest.approx(1e5 * 0.3 / (1.3 * 0.4))
    assert p.wave_speed() == pytest.approx(math.sqrt((lam + 2 * mu) / 1000.0))


@pytest.mark.parametrize("material", MATERIALS)
def test_normalise_round_trip_and_range(material):
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = sample_params(material, rng)
        z, mask = normalize(p)
        assert z.shape == mask.shape == (len(PARAM_NAMES),)
        assert set(np.flatnonzero(mask)) == set(MATERIAL_SLOTS[p.material])
        assert (np.abs(z[mask]) <= 1.0 + 1e-6).all()  # the union of ranges spans [-1, 1]
        back = denormalize(material, z)
        for name, value in p.values().items():
            assert getattr(back, name) == pytest.approx(value, rel=1e-4)


def test_log10_E_is_what_the_model_sees():
    centre, half = NORM["E"]
    z, _ = normalize(PhysParams.default("jelly", E=10 ** centre))
    assert z[PARAM_NAMES.index("E")] == pytest.approx(0.0, abs=1e-6)
    z2, _ = normalize(PhysParams.default("jelly", E=10 ** (centre + half / 2)))
    assert z2[PARAM_NAMES.index("E")] == pytest.approx(0.5, abs=1e-6)


def test_denormalize_clips_any_sample_into_the_valid_range():
    p = denormalize("metal", np.full(len(PARAM_NAMES), 5.0))
    assert p.out_of_range() == []
    assert p.E == pytest.approx(PARAM_RANGES[Material.metal]["E"][1])
    with pytest.raises(ValueError, match="expected 8"):
        denormalize("metal", np.zeros(3))
