"""MLS-MPM simulator in warp: ``simulate(positions, params, cfg) -> SimResult`` and
``simulate_batch(positions, params, cfg) -> list[SimResult]`` (B objects advanced together).

One code path for CPU and CUDA (``MPMConfig.device``); constitutive models in
``constitutive``, substep kernels in ``kernels``, time-step choice in ``stability``, input
checks in ``validate``, particle sampling of primitive shapes in ``shapes``. Models,
conventions and measured fidelity: docs/simulator.md.
"""
import warp as _wp

_wp.config.quiet = True  # no banner or module-load lines on stdout: `--json` output stays clean
_wp.config.log_level = max(_wp.config.log_level, _wp.LOG_WARNING)


def _init_warp() -> None:
    """Initialise warp now. On a machine without an NVIDIA driver its native code prints
    "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver" on the stderr of every
    process (each data-synthesis worker, each actor): without a driver that line says
    nothing, so stderr is closed for the call; with a driver warp speaks as usual."""
    import ctypes.util
    import os
    import sys

    if ctypes.util.find_library("cuda") is not None:
        _wp.init()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            _wp.init()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_init_warp()

from physgm.config import MPMConfig  # noqa: E402
from physgm.sim.shapes import SHAPES, sample_shape  # noqa: E402
from physgm.sim.solver import SimResult, simulate, simulate_batch  # noqa: E402
from physgm.sim.stability import choose_substeps, stable_dt  # noqa: E402

__all__ = ["MPMConfig", "SimResult", "simulate", "simulate_batch", "sample_shape", "SHAPES", "choose_substeps",
           "stable_dt"]
