"""Material-correlated appearance of synthetic objects: a colour and opacity per Gaussian.

Each material has a palette (HSV ranges of its base colour, an opacity range), a shading
style and a texture, roughly as in the world:

- metal: grey to bluish (s 0–0.25, v 0.45–0.85), opaque; strong shading, a specular
  highlight and brushed stripes (high contrast);
- jelly: any hue, saturated (s 0.55–1, v 0.6–1), translucent (opacity 0.3–0.65); soft
  shading and gloss;
- plasticine: any hue (s 0.45–0.9, v 0.45–0.85), opacity 0.8–1; matte, low-frequency
  kneading noise;
- sand: beige/brown (h 0.05–0.13, s 0.25–0.6), opaque; strong per-grain noise, finer splats;
- snow: white to light blue (s 0–0.15, v 0.82–1), opacity 0.85–1; soft, slight sparkle.

The ranges overlap on purpose (light metal vs snow, translucent plasticine vs jelly, brown
plasticine vs sand), and with probability ``mix_probability`` a scene uses another random
material's palette (a painted object): a model can learn the material from pixels, but not
trivially. Shading is baked into the colours in the object's rest pose (light from above
and in front), so it moves with the material when the object deforms.

Within a palette, the colour also tells the physics, as a denser gel or a harder clay looks
darker and a work-hardened metal duller (``physics_cue`` c in [0, 1]): the brightness
position in the palette's value range is c·(1 − t_E) + (1 − c)·u and the saturation position
c·t_2 + (1 − c)·u', where t_E is the object's log10 E position in its true material's range
(0 softest, 1 stiffest), t_2 the same for the material's second parameter (``SECOND_CUE``)
and u, u' uniform draws. With c = 0 the colour says nothing beyond the material (then no
image model can tell two objects of one material apart, and a per-material constant is the
best prediction of E); the same random draws are consumed for every c.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from physgm.materials import MATERIALS, PARAM_RANGES, LOG_PARAMS, Material, PhysParams

LIGHT_DIR = np.array([0.3, 1.0, 0.5]) / np.linalg.norm([0.3, 1.0, 0.5])

# (hue range, saturation range, value range, opacity range) per palette.
PALETTES: dict[Material, tuple[tuple[float, float], ...]] = {
    Material.metal: ((0.52, 0.66), (0.0, 0.25), (0.45, 0.85), (0.95, 1.0)),
    Material.jelly: ((0.0, 1.0), (0.55, 1.0), (0.6, 1.0), (0.3, 0.65)),
    Material.plasticine: ((0.0, 1.0), (0.45, 0.9), (0.45, 0.85), (0.8, 1.0)),
    Material.sand: ((0.05, 0.13), (0.25, 0.6), (0.45, 0.85), (0.95, 1.0)),
    Material.snow: ((0.5, 0.62), (0.0, 0.15), (0.82, 1.0), (0.85, 1.0)),
}

# (ambient, specular strength, specular exponent, per-particle noise, smooth-noise amplitude)
STYLES: dict[Material, tuple[float, float, float, float, float]] = {
    Material.metal: (0.3, 0.7, 20.0, 0.02, 0.0),
    Material.jelly: (0.65, 0.35, 12.0, 0.02, 0.0),
    Material.plasticine: (0.55, 0.0, 1.0, 0.02, 0.08),
    Material.sand: (0.6, 0.0, 1.0, 0.12, 0.03),
    Material.snow: (0.75, 0.1, 30.0, 0.04, 0.0),
}

# The parameter besides E that the saturation tells, per true material: the one the video
# depends on most after E (where plasticine and metal yield, the angle a sand pile keeps).
SECOND_CUE: dict[Material, str] = {
    Material.jelly: "nu", Material.metal: "yield_stress", Material.plasticine: "yield_stress",
    Material.sand: "friction_angle", Material.snow: "hardening",
}

# Gaussian std as a fraction of the particle spacing (grains look finer).
SCALE_FACTOR: dict[Material, float] = {Material.sand: 0.5}
DEFAULT_SCALE_FACTOR = 0.65


@dataclass
class Appearance:
    """colors (N, 3) float32 RGB in [0, 1]; opacities (N,) float32 in [0, 1]; scale_factor:
    Gaussian std / particle spacing; info: JSON-safe record of the draw (stored as the scene's
    ``appearance`` attribute)."""

    colors: np.ndarray
    opacities: np.ndarray
    scale_factor: float
    info: dict = field(default_factory=dict)


def _smooth_noise(points: np.ndarray, rng: np.random.Generator, wavelength_m: float) -> np.ndarray:
    """(N,) noise in about [-1, 1]: a sum of 4 random plane waves of ~``wavelength_m``."""
    out = np.zeros(len(points))
    for _ in range(4):
        k = rng.normal(size=3)
        k *= 2 * np.pi / (wavelength_m * np.linalg.norm(k))
        out += np.sin(points @ k + rng.uniform(0, 2 * np.pi))
    return out / 2.0


def range_position(params: PhysParams, name: str,
                   ranges: dict[str, tuple[float, float]] | None = None) -> float:
    """Where ``params.<name>`` lies in its material's range (``ranges[name]`` when given, the
    range the value was drawn from): 0 at the low end, 1 at the high end (in log10 for E,
    density and yield stress)."""
    lo, hi = (ranges or {}).get(name, PARAM_RANGES[params.material][name])
    value = getattr(params, name)
    if name in LOG_PARAMS:
        value, lo, hi = np.log10(value), np.log10(lo), np.log10(hi)
    return float(np.clip((value - lo) / (hi - lo), 0.0, 1.0)) if hi > lo else 0.5


def sample_appearance(material: Material | str, particles: np.ndarray, rng: np.random.Generator,
                      mix_probability: float = 0.1, physics: PhysParams | None = None,
                      physics_cue: float = 0.0,
                      ranges: dict[str, tuple[float, float]] | None = None,
                      hue: float | None = None, typical: bool = False) -> Appearance:
    """Colours and opacities for the Gaussians at ``particles`` (N, 3) [m] (rest pose).

    The palette is ``material``'s, except with probability ``mix_probability`` where it is
    another material's (uniformly). ``physics`` (the true parameters, of ``material``) with
    ``physics_cue`` > 0 ties brightness to E and saturation to the second parameter (module
    docstring), positions taken in ``ranges`` ({name: (low, high)}: the ranges the true
    parameters were drawn from) where given. ``hue`` in [0, 1) fixes the base colour's hue
    instead of drawing it (the demo's samples; the same random draws are consumed); ``typical``
    puts saturation, value and opacity at the middle of the palette's ranges instead of
    drawn positions (a typical object of the palette, not a corner of it; the same draws
    are consumed). Normals for shading are the directions from the object's centroid (a
    convex-hull approximation)."""
    material = Material(material)
    if not 0.0 <= mix_probability <= 1.0:
        raise ValueError(f"mix_probability must be in [0, 1], got {mix_probability}")
    if not 0.0 <= physics_cue <= 1.0:
        raise ValueError(f"physics_cue must be in [0, 1], got {physics_cue}")
    if hue is not None and not 0.0 <= hue < 1.0:
        raise ValueError(f"hue must be in [0, 1), got {hue}")
    if physics_cue > 0 and (physics is None or physics.material != material):
        raise ValueError("physics_cue > 0 needs the object's true parameters (physics=) of "
                         f"material '{material.value}'")
    palette = material
    if rng.random() < mix_probability:
        palette = MATERIALS[int(rng.choice([i for i, m in enumerate(MATERIALS) if m != material]))]
    (h0, h1), (s0, s1), (v0, v1), (o0, o1) = PALETTES[palette]
    drawn_hue, u_s, u_v = rng.uniform(h0, h1), rng.random(), rng.random()
    hue = drawn_hue if hue is None else hue
    if typical:
        u_s = u_v = 0.5
    t_s = t_v = 0.0
    if physics_cue > 0:
        t_v = 1.0 - range_position(physics, "E", ranges)  # stiffer → darker
        t_s = range_position(physics, SECOND_CUE[material], ranges)
    c = physics_cue
    hsv = (hue, s0 + (s1 - s0) * (c * t_s + (1 - c) * u_s),
           v0 + (v1 - v0) * (c * t_v + (1 - c) * u_v))
    base = np.array(colorsys.hsv_to_rgb(*hsv))
    ambient, spec, shininess, grain, smooth = STYLES[palette]

    p = np.asarray(particles, np.float64)
    rel = p - p.mean(0)
    extent = float(np.ptp(p, axis=0).max()) or 1.0
    normals = rel / np.maximum(np.linalg.norm(rel, axis=1, keepdims=True), 1e-9)
    lambert = np.clip(normals @ LIGHT_DIR, 0.0, 1.0)
    view = np.array([0.0, 0.3, 1.0]) / np.linalg.norm([0.0, 0.3, 1.0])
    half = (LIGHT_DIR + view) / np.linalg.norm(LIGHT_DIR + view)
    highlight = spec * np.clip(normals @ half, 0.0, 1.0) ** shininess
    shade = ambient + (1.0 - ambient) * lambert
    texture = 1.0 + grain * rng.uniform(-1.0, 1.0, len(p))
    if smooth > 0:
        texture += smooth * _smooth_noise(p, rng, wavelength_m=0.5 * extent)
    if palette == Material.metal:  # brushed stripes along a random direction
        d = rng.normal(size=3)
        texture += 0.06 * np.sin(p @ (d / np.linalg.norm(d)) * 2 * np.pi / (0.08 * extent))
    colors = base[None] * (shade * texture)[:, None] + highlight[:, None]
    opacity = rng.uniform(o0, o1)
    if typical:
        opacity = (o0 + o1) / 2.0
    opacities = np.full(len(p), opacity, np.float32)
    info = {"palette": palette.value, "hsv": [float(x) for x in hsv], "opacity": float(opacity),
            "physics_cue": float(physics_cue)}
    return Appearance(np.clip(colors, 0.0, 1.0).astype(np.float32), opacities,
                      SCALE_FACTOR.get(palette, DEFAULT_SCALE_FACTOR), info)
