"""Checks of a simulation's physical inputs before anything runs (pure numpy, no warp).

Where each rule lives:
- ``PhysParams`` and ``MPMConfig`` (pydantic) refuse non-finite values and values outside
  their physical range on construction, naming the field (``ValidationError`` is a
  ``ValueError``).
- ``stability.choose_substeps`` refuses a substep beyond the CFL bound (after rounding to
  whole substeps per frame) and runs above ``sim.max_substeps_per_frame``.
- here: the initial velocities, and parameters outside ``PARAM_RANGES`` (the range the
  model and the dataset cover). Those are physically valid, so ``simulate`` runs them and
  warns (``ParamRangeWarning``) rather than refusing: a user's own scene may well be
  stiffer than anything the model was trained on.
"""
from __future__ import annotations

import warnings

import numpy as np

from physgm.materials import PhysParams


class ParamRangeWarning(UserWarning):
    """A parameter lies outside ``PARAM_RANGES`` (physically valid, but outside the range
    the model covers and the default substep is tuned for)."""


def initial_velocities(velocities, n: int) -> np.ndarray:
    """(N, 3) float64 [m/s] from None (at rest), a (3,) vector for every particle or (N, 3)."""
    if velocities is None:
        return np.zeros((n, 3))
    try:
        v = np.asarray(velocities, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"velocities must be numbers, (3,) or (N, 3)=({n}, 3) [m/s]") from None
    if v.shape not in ((3,), (n, 3)):
        raise ValueError(f"velocities must be (3,) for all particles or (N, 3)=({n}, 3) "
                         f"[m/s], got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("velocities contain NaN or Inf")
    return np.broadcast_to(v, (n, 3)).copy()


def warn_out_of_range(params: PhysParams, stacklevel: int = 2) -> list[str]:
    """Warn (``ParamRangeWarning``) about each value outside ``PARAM_RANGES``; returns them.
    ``stacklevel`` as in ``warnings.warn``, counted from the caller of this function."""
    messages = params.out_of_range()
    for message in messages:
        warnings.warn(f"{message} (PARAM_RANGES, the range the model covers): physically "
                      f"valid, so it is simulated as given", ParamRangeWarning,
                      stacklevel=stacklevel + 1)
    return messages


def check_run(params: PhysParams, velocities, n: int, stacklevel: int = 3) -> np.ndarray:
    """The per-run checks of ``simulate``: warns about out-of-range parameters and returns
    the initial velocities (N, 3) [m/s]. ``stacklevel``: the warning's frame, counted from
    the caller of this function (3: the caller of a function that calls this one's caller)."""
    warn_out_of_range(params, stacklevel=stacklevel)
    return initial_velocities(velocities, n)
