"""Bad physical input is refused before anything runs, with a ValueError naming the field
(issue list: hardening NaN, snow ξ < 0, E = inf, gravity NaN, velocities of a wrong shape,
parameters outside PARAM_RANGES, E = 1e12 Pa, ν = 0.49999, a substep whose rounding breaks
the CFL bound)."""
import math

import numpy as np
import pytest

from physgm.config import MPMConfig
from physgm.materials import PhysParams
from physgm.sim import sample_shape, simulate, stable_dt
from physgm.sim.validate import ParamRangeWarning

RES = 32
DX = 1.0 / RES


def cfg(**kw):
    return MPMConfig(**{"grid_res": RES, "device": "cpu", **kw})


def cube():
    return sample_shape("cube", (0.5, 0.3, 0.5), 0.1, DX / 2)


@pytest.mark.parametrize("material,field", [
    ("jelly", "E"), ("jelly", "nu"), ("jelly", "density"), ("metal", "yield_stress"),
    ("sand", "friction_angle"), ("plasticine", "hardening"), ("snow", "hardening"),
    ("snow", "critical_compression"), ("snow", "critical_stretch")])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_physparams_field_must_be_finite(material, field, value):
    with pytest.raises(ValueError, match=field):
        PhysParams.default(material, **{field: value})


@pytest.mark.parametrize("material,value", [("snow", -50.0), ("snow", 80.0),
                                            ("plasticine", -20.0), ("plasticine", 500.0)])
def test_hardening_outside_its_physical_range_is_refused(material, value):
    with pytest.raises(ValueError, match="hardening"):
        PhysParams.default(material, hardening=value)
    PhysParams.default(material, hardening=0.0)  # the edge of both ranges is valid


@pytest.mark.parametrize("field,value", [
    ("gravity", (0.0, math.nan, 0.0)), ("gravity", (math.inf, 0.0, 0.0)),
    ("domain_size", math.inf), ("frame_dt", math.nan), ("substep_dt", math.inf),
    ("friction", math.nan), ("cfl", math.nan), ("max_speed", math.inf),
    ("escape_fraction", math.nan), ("substep_dt", 0.1), ("max_substeps_per_frame", 0)])
def test_every_mpmconfig_field_must_be_finite_and_in_range(field, value):
    with pytest.raises(ValueError, match=field):
        MPMConfig(**{field: value})
    c = MPMConfig()
    with pytest.raises(ValueError, match=field):  # assignment is validated too
        setattr(c, field, value)


@pytest.mark.parametrize("velocities", [np.zeros((5, 3)), np.zeros(2), np.zeros((1, 3, 1)),
                                        "fast", (0.0, math.nan, 0.0)])
def test_velocities_of_a_wrong_shape_or_value_name_the_field(velocities):
    with pytest.raises(ValueError, match="velocities"):
        simulate(cube(), PhysParams.default("jelly"), cfg(n_frames=1), velocities=velocities)


def test_parameters_outside_param_ranges_run_with_a_warning():
    with pytest.warns(ParamRangeWarning, match="E=2e\\+06 outside"):
        r = simulate(cube(), PhysParams.default("jelly", E=2e6), cfg(n_frames=1))
    assert r.status == "ok"


@pytest.mark.filterwarnings("ignore::physgm.sim.validate.ParamRangeWarning")
@pytest.mark.parametrize("overrides,field", [({"E": 1e12}, "E=1e\\+12"),
                                             ({"E": 1e6, "nu": 0.49999}, "nu=0.49999")])
def test_a_run_above_max_substeps_per_frame_is_refused_with_its_cost(overrides, field):
    p = PhysParams.default("jelly", **overrides)
    with pytest.raises(ValueError, match=field) as err:
        simulate(cube(), p, cfg())
    msg = str(err.value)
    assert "substeps per frame" in msg and " h for 50 frames" in msg
    assert "sim.max_substeps_per_frame=10000" in msg and "coarsen sim.grid_res" in msg


def test_the_rounded_substep_is_what_is_checked():
    """frame_dt = 3.3 · the Courant-1 limit and substep_dt = frame_dt / 3.45 (under it):
    round(3.45) = 3 substeps would run at Courant 1.1, so it is refused."""
    p = PhysParams.default("jelly")
    base = cfg(grid_res=8)
    limit = stable_dt(p, base, courant=1.0)
    frame_dt = 3.3 * limit
    given = frame_dt / 3.45
    assert given < limit
    x = sample_shape("cube", (0.5, 0.5, 0.5), 0.2, 1 / 16)
    with pytest.raises(ValueError, match="substep_dt.*frame_dt/3"):
        simulate(x, p, cfg(grid_res=8, frame_dt=frame_dt, substep_dt=given))
