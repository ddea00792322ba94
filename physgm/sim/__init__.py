"""MLS-MPM simulator in warp: ``simulate(positions, params, cfg) -> SimResult``.

One code path for CPU and CUDA (``MPMConfig.device``); constitutive models in
``constitutive``, substep kernels in ``kernels``, time-step choice in ``stability``, input
checks in ``validate``, particle sampling of primitive shapes in ``shapes``. Models,
conventions and measured fidelity: docs/simulator.md.
"""
import warp as _wp

_wp.config.quiet = True  # no banner or module-load lines on stdout: `--json` output stays clean
_wp.config.log_level = max(_wp.config.log_level, _wp.LOG_WARNING)

from physgm.config import MPMConfig  # noqa: E402
from physgm.sim.shapes import SHAPES, sample_shape  # noqa: E402
from physgm.sim.solver import SimResult, simulate  # noqa: E402
from physgm.sim.stability import choose_substeps, stable_dt  # noqa: E402

__all__ = ["MPMConfig", "SimResult", "simulate", "sample_shape", "SHAPES", "choose_substeps",
           "stable_dt"]
