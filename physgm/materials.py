"""Materials, their physical parameters, valid ranges and the model's normalised space.

The five materials are the ones PhysGM simulates (arXiv 2508.13911, §3): jelly
(fixed-corotated elasticity), metal (von Mises on Hencky strain, perfectly plastic),
plasticine (von Mises with softening/hardening), sand (Drucker–Prager, Klár et al. 2016)
and snow (Stomakhin et al. 2013).

Units are SI: ``E`` and ``yield_stress`` in Pa, ``density`` in kg/m³, ``friction_angle`` in
degrees; ``nu``, ``hardening``, ``critical_compression`` and ``critical_stretch`` are
dimensionless.

The model predicts parameters in a *normalised space*: one slot per name of
``PARAM_NAMES``; E, density and yield stress are taken as log10; every slot is then mapped
affinely so that the union of the materials' ranges spans [-1, 1]. A material uses only
its own slots (``MATERIAL_SLOTS``); the others are ignored.
"""
from __future__ import annotations

import math
from enum import Enum
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Material(str, Enum):
    jelly = "jelly"
    metal = "metal"
    plasticine = "plasticine"
    sand = "sand"
    snow = "snow"


MATERIALS: tuple[Material, ...] = tuple(Material)

# (low, high) per material and parameter, physical units. Chosen so that every value in
# range simulates stably at the default CFL substep (E ≤ 1e7 Pa keeps the elastic wave
# speed ≤ ~100 m/s) and the materials stay distinguishable on video.
PARAM_RANGES: dict[Material, dict[str, tuple[float, float]]] = {
    Material.jelly: {"E": (1e4, 1e6), "nu": (0.2, 0.45), "density": (500.0, 2000.0)},
    Material.metal: {"E": (1e5, 1e7), "nu": (0.25, 0.4), "density": (2000.0, 8000.0),
                     "yield_stress": (1e4, 1e6)},  # below ~1e4 Pa a metal flows like dough
    Material.plasticine: {"E": (1e4, 1e6), "nu": (0.3, 0.45), "density": (500.0, 2000.0),
                          "yield_stress": (1e2, 1e4), "hardening": (-0.5, 5.0)},
    Material.sand: {"E": (1e4, 1e6), "nu": (0.2, 0.4), "density": (1200.0, 2500.0),
                    "friction_angle": (20.0, 45.0)},
    Material.snow: {"E": (1e4, 1e6), "nu": (0.1, 0.35), "density": (100.0, 900.0),
                    "hardening": (5.0, 15.0), "critical_compression": (1e-2, 5e-2),
                    "critical_stretch": (2.5e-3, 1e-2)},
}

DEFAULTS: dict[Material, dict[str, float]] = {
    Material.jelly: {"E": 1e5, "nu": 0.3, "density": 1000.0},
    Material.metal: {"E": 2e6, "nu": 0.3, "density": 5000.0, "yield_stress": 1e4},
    Material.plasticine: {"E": 2e5, "nu": 0.4, "density": 1200.0, "yield_stress": 1e3,
                          "hardening": 1.0},
    Material.sand: {"E": 3.5e5, "nu": 0.3, "density": 2200.0, "friction_angle": 35.0},
    # Stomakhin et al. 2013, Table 1 ("reference" snow).
    Material.snow: {"E": 1.4e5, "nu": 0.2, "density": 400.0, "hardening": 10.0,
                    "critical_compression": 2.5e-2, "critical_stretch": 7.5e-3},
}

# Physically meaningful limits of the material-specific ``hardening`` (checked on
# construction, unlike PARAM_RANGES): plasticine h per unit equivalent plastic strain
# (-10: softens to its floor within 9 % plastic strain; 100: σ_y doubles within 1 %), snow ξ
# (a negative ξ would soften snow as it compacts).
HARDENING_LIMITS: dict[Material, tuple[float, float]] = {
    Material.plasticine: (-10.0, 100.0),
    Material.snow: (0.0, 50.0),
}

# Largest stiffness factor exp(ξ (1 − J_P)) of hardened snow: compaction beyond it stiffens
# no further. It bounds snow's wave speed by √SNOW_MAX_HARDENING × its rest value, which the
# substep accounts for (physgm.sim.stability).
SNOW_MAX_HARDENING = 10.0

# Slots of the normalised parameter vector, in order, and which are log10-transformed.
PARAM_NAMES: tuple[str, ...] = ("E", "nu", "density", "yield_stress", "friction_angle",
                                "hardening", "critical_compression", "critical_stretch")
LOG_PARAMS = frozenset({"E", "density", "yield_stress"})
MATERIAL_SLOTS: dict[Material, tuple[int, ...]] = {
    m: tuple(i for i, n in enumerate(PARAM_NAMES) if n in PARAM_RANGES[m]) for m in MATERIALS
}


def _transform(name: str, value: float) -> float:
    return math.log10(value) if name in LOG_PARAMS else float(value)


def _inverse(name: str, t: float) -> float:
    return 10.0 ** t if name in LOG_PARAMS else float(t)


def _norm_affine(name: str) -> tuple[float, float]:
    """(centre, half_width) of the union of all materials' ranges, in transformed units."""
    lows = [_transform(name, r[name][0]) for r in PARAM_RANGES.values() if name in r]
    highs = [_transform(name, r[name][1]) for r in PARAM_RANGES.values() if name in r]
    lo, hi = min(lows), max(highs)
    return (lo + hi) / 2.0, (hi - lo) / 2.0


NORM: dict[str, tuple[float, float]] = {n: _norm_affine(n) for n in PARAM_NAMES}


class PhysParams(BaseModel):
    """One material and its parameters (SI units); unset material-specific values take the
    material's defaults. Physically invalid values (NaN or ±inf, ν outside (0, 0.5), E ≤ 0,
    a hardening outside ``HARDENING_LIMITS``, a parameter the material does not have) raise
    a ``ValidationError`` (a ``ValueError``) naming the field; ``out_of_range()`` lists
    values outside the model's ``PARAM_RANGES`` (``simulate`` warns about them).

    Conventions (docs/simulator.md): ``yield_stress`` is the uniaxial (von Mises) yield
    stress, ‖dev τ‖ ≤ √(2/3) σ_y; PhysGaussian's solver bounds ‖dev τ‖ by its value
    directly, so its yield stress Y corresponds to σ_y = √(3/2) Y. ``friction_angle`` is
    the friction angle of sand that has flowed (Klár et al. 2016's h0)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    material: Material
    E: float = Field(gt=0, description="Young's modulus [Pa]")
    nu: float = Field(gt=0, lt=0.5, description="Poisson's ratio, in (0, 0.5)")
    density: float = Field(default=1000.0, gt=0, description="[kg/m³]")
    yield_stress: Optional[float] = Field(default=None, gt=0, description="von Mises yield [Pa]")
    friction_angle: Optional[float] = Field(default=None, gt=0, lt=90, description="[deg]")
    hardening: Optional[float] = Field(default=None, description="plasticine: relative yield "
                                       "growth per unit equivalent plastic strain; snow: ξ of "
                                       "Stomakhin et al.")
    critical_compression: Optional[float] = Field(default=None, gt=0, lt=1, description="snow θc")
    critical_stretch: Optional[float] = Field(default=None, gt=0, lt=1, description="snow θs")

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data):
        if not isinstance(data, dict) or "material" not in data:
            return data
        try:
            mat = Material(data["material"])
        except ValueError:
            return data  # the field validator reports the bad name
        out = dict(data)
        for name, value in DEFAULTS[mat].items():
            if out.get(name) is None:
                out[name] = value
        return out

    @model_validator(mode="after")
    def _check_applicable(self):
        ranges = PARAM_RANGES[self.material]
        for name in PARAM_NAMES:
            if name not in ranges and getattr(self, name) is not None:
                raise ValueError(f"{name} does not apply to {self.material.value} "
                                 f"(its parameters: {', '.join(ranges)})")
        if self.material in HARDENING_LIMITS:
            lo, hi = HARDENING_LIMITS[self.material]
            if not lo <= self.hardening <= hi:
                raise ValueError(f"hardening={self.hardening:g} is outside the physical range "
                                 f"[{lo:g}, {hi:g}] of {self.material.value}: choose a value "
                                 f"in it (the model covers "
                                 f"{PARAM_RANGES[self.material]['hardening']})")
        return self

    def out_of_range(self) -> list[str]:
        """Messages for values outside ``PARAM_RANGES`` (physically valid but outside the
        range the model and the dataset cover, and where the default substep is tuned)."""
        return [f"{n}={v:g} outside [{lo:g}, {hi:g}] for {self.material.value}"
                for n, v in self.values().items()
                for lo, hi in [PARAM_RANGES[self.material][n]] if not lo <= v <= hi]

    @classmethod
    def default(cls, material: Material | str, **overrides) -> "PhysParams":
        return cls(material=Material(material), **{**DEFAULTS[Material(material)], **overrides})

    def values(self) -> dict[str, float]:
        """The parameters this material uses, {name: value} in SI units."""
        return {n: float(getattr(self, n)) for n in PARAM_RANGES[self.material]}

    def lame(self) -> tuple[float, float]:
        """Lamé parameters (mu, lambda) [Pa] from E and nu."""
        mu = self.E / (2.0 * (1.0 + self.nu))
        lam = self.E * self.nu / ((1.0 + self.nu) * (1.0 - 2.0 * self.nu))
        return mu, lam

    def wave_speed(self) -> float:
        """P-wave speed sqrt((λ + 2μ)/ρ) [m/s], the bound the CFL substep must respect."""
        mu, lam = self.lame()
        return math.sqrt((lam + 2.0 * mu) / self.density)


def normalize_value(name: str, value: float) -> float:
    """One parameter ``name`` [SI] → its normalised value (see ``normalize``)."""
    centre, half = NORM[name]
    return (_transform(name, value) - centre) / half


def normalize(params: PhysParams) -> tuple[np.ndarray, np.ndarray]:
    """Parameters → (z (P,) float32, mask (P,) bool) in the model's normalised space.

    z[i] = (t_i − centre_i) / half_width_i with t = log10(x) for E, density, yield stress and
    t = x otherwise; slots the material does not use are 0 with mask False.
    """
    z = np.zeros(len(PARAM_NAMES), np.float32)
    mask = np.zeros(len(PARAM_NAMES), bool)
    for i, name in enumerate(PARAM_NAMES):
        value = getattr(params, name)
        if name in PARAM_RANGES[params.material]:
            z[i] = normalize_value(name, value)
            mask[i] = True
    return z, mask


def denormalize(material: Material | str, z, clip: bool = True) -> PhysParams:
    """Inverse of ``normalize`` for one material: z (P,) → PhysParams.

    With ``clip`` (default) each value is clamped into the material's valid range, so any
    sample of the policy maps to a simulatable parameter set.
    """
    material = Material(material)
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    if z.shape[0] != len(PARAM_NAMES):
        raise ValueError(f"expected {len(PARAM_NAMES)} normalised values ({', '.join(PARAM_NAMES)}), "
                         f"got {z.shape[0]}")
    values = {}
    for i, name in enumerate(PARAM_NAMES):
        if name not in PARAM_RANGES[material]:
            continue
        centre, half = NORM[name]
        value = _inverse(name, centre + half * float(z[i]))
        if clip:  # in value space, so log/exp round-off cannot step outside the range
            lo, hi = PARAM_RANGES[material][name]
            value = min(max(value, lo), hi)
        values[name] = value
    return PhysParams(material=material, **values)


def sample_params(material: Material | str, rng: np.random.Generator,
                  ranges: Optional[dict[str, tuple[float, float]]] = None) -> PhysParams:
    """A parameter set drawn uniformly in each range (log-uniformly for the log10 slots);
    ``ranges`` ({name: (low, high)}, SI units) narrows some of ``PARAM_RANGES[material]``.
    The same random draws are consumed whatever the ranges."""
    material = Material(material)
    values = {}
    for name, (lo, hi) in {**PARAM_RANGES[material], **(ranges or {})}.items():
        t = rng.uniform(_transform(name, lo), _transform(name, hi))
        values[name] = _inverse(name, t)
    return PhysParams(material=material, **values)
