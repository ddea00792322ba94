"""A simulated annotator: deliberately imperfect physics labels for synthetic scenes.

PhysGM's training labels come from an automatic (VLM) annotator; they are plausible but
wrong in systematic ways, which is what the DPO stage on video fidelity corrects. This
module mimics such an annotator with three seeded error sources, all scaled by
``noise`` (``DataConfig.label_noise``; 0 gives perfect labels, 1 the values below); the
systematic offsets b_m and c_m of E and ν are further multiplied by ``bias``
(``DataConfig.label_bias``, default 1): how far off the annotator's idea of each material is,
apart from how noisy it is:

1. Material confusion, ``CONFUSION[true][label]`` (rows sum to 1, mean accuracy 80 %):
   plasticine ↔ jelly and sand ↔ snow are the likely mix-ups. With noise λ the matrix is
   I + λ·(C − I); rows whose off-diagonal mass would exceed 1 are renormalised.
2. Young's modulus: log10 E_label = log10 E_true + λ·(β·b_m + 0.3·ε), ε ~ N(0, 1), with a bias
   b_m [decades] per *true* material (``E_BIAS_DECADES``: the annotator thinks jelly,
   plasticine and snow stiffer, metal and sand softer than they are).
3. Poisson's ratio: ν_label = ν_true + λ·(β·c_m + 0.03·ε) (``NU_BIAS``); density ± 0.1
   decade, yield stress ± 0.3 decade, friction angle ± 4°, hardening and the snow
   thresholds ± 15 % of their range (no bias).

The label's parameters are those of the *label* material: shared ones start from the true
value, the others from the label material's default; each is then perturbed and clipped
into the label material's ``PARAM_RANGES``. The true parameters (used to simulate the
video) and the label are stored apart (scene attributes ``true`` and ``label``).
"""
from __future__ import annotations

import math

import numpy as np

from physgm.materials import (DEFAULTS, LOG_PARAMS, MATERIALS, PARAM_NAMES, PARAM_RANGES,
                              Material, PhysParams)

_J, _M, _P, _SA, _SN = (Material.jelly, Material.metal, Material.plasticine, Material.sand,
                        Material.snow)

CONFUSION: dict[Material, dict[Material, float]] = {
    _J: {_J: 0.80, _M: 0.02, _P: 0.14, _SA: 0.01, _SN: 0.03},
    _M: {_J: 0.03, _M: 0.88, _P: 0.05, _SA: 0.02, _SN: 0.02},
    _P: {_J: 0.17, _M: 0.03, _P: 0.75, _SA: 0.04, _SN: 0.01},
    _SA: {_J: 0.01, _M: 0.02, _P: 0.03, _SA: 0.78, _SN: 0.16},
    _SN: {_J: 0.02, _M: 0.02, _P: 0.01, _SA: 0.16, _SN: 0.79},
}

E_BIAS_DECADES: dict[Material, float] = {_J: 0.5, _M: -0.3, _P: 0.4, _SA: -0.3, _SN: 0.3}
E_SIGMA_DECADES = 0.3
NU_BIAS: dict[Material, float] = {_J: 0.04, _M: -0.03, _P: -0.03, _SA: 0.03, _SN: 0.04}
NU_SIGMA = 0.03
# Unbiased noise of the other parameters: decades for log parameters, degrees for the
# friction angle; the rest get RANGE_FRACTION_SIGMA × the label material's range width.
OTHER_SIGMA: dict[str, float] = {"density": 0.1, "yield_stress": 0.3, "friction_angle": 4.0}
RANGE_FRACTION_SIGMA = 0.15


def confusion_matrix(noise: float = 1.0) -> np.ndarray:
    """(M, M) row-stochastic matrix P[true, label] (order ``MATERIALS``) at noise λ."""
    if noise < 0:
        raise ValueError(f"label noise must be ≥ 0, got {noise}")
    C = np.array([[CONFUSION[t][lab] for lab in MATERIALS] for t in MATERIALS])
    P = np.eye(len(MATERIALS)) + noise * (C - np.eye(len(MATERIALS)))
    for i in np.flatnonzero(np.diag(P) < 0):  # off-diagonal mass > 1: never correct
        P[i, i] = 0.0
        P[i] /= P[i].sum()
    return P


def _bias_sigma(name: str, true_mat: Material, label_mat: Material) -> tuple[float, float]:
    """(bias, std) of the perturbation of ``name`` in transformed units (decades for logs)."""
    if name == "E":
        return E_BIAS_DECADES[true_mat], E_SIGMA_DECADES
    if name == "nu":
        return NU_BIAS[true_mat], NU_SIGMA
    if name in OTHER_SIGMA:
        return 0.0, OTHER_SIGMA[name]
    lo, hi = PARAM_RANGES[label_mat][name]
    return 0.0, RANGE_FRACTION_SIGMA * (hi - lo)


def annotate(true: PhysParams, rng: np.random.Generator, noise: float = 1.0,
             bias: float = 1.0) -> PhysParams:
    """The annotator's label for an object simulated with ``true``.

    ``noise`` λ scales every error source, ``bias`` β the systematic E and ν offsets
    (module docstring); both ≥ 0.
    Draws a fixed number of random values per call (one uniform, one normal per slot of
    ``PARAM_NAMES``) whatever the outcome, so a seeded generator gives reproducible labels.
    ``noise=0`` returns parameters equal to ``true``.
    """
    if bias < 0:
        raise ValueError(f"label bias must be ≥ 0, got {bias}")
    P = confusion_matrix(noise)
    row = P[MATERIALS.index(true.material)]
    u = rng.random()
    eps = rng.standard_normal(len(PARAM_NAMES))
    label_mat = MATERIALS[min(int(np.searchsorted(np.cumsum(row), u, side="right")),
                              len(MATERIALS) - 1)]
    true_values = true.values()
    values = {}
    for i, name in enumerate(PARAM_NAMES):
        if name not in PARAM_RANGES[label_mat]:
            continue
        base = true_values.get(name, DEFAULTS[label_mat][name])
        offset, sigma = _bias_sigma(name, true.material, label_mat)
        delta = noise * (bias * offset + sigma * float(eps[i]))
        if delta == 0.0:
            value = base
        elif name in LOG_PARAMS:
            value = 10.0 ** (math.log10(base) + delta)
        else:
            value = base + delta
        lo, hi = PARAM_RANGES[label_mat][name]
        values[name] = min(max(value, lo), hi)
    return PhysParams(material=label_mat, **values)
