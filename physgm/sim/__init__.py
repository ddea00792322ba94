"""MLS-MPM simulator in warp: ``simulate(positions, params, cfg) -> SimResult``.

One code path for CPU and CUDA (``MPMConfig.device``); constitutive models in
``constitutive``, substep kernels in ``kernels``, time-step choice in ``stability``,
particle sampling of primitive shapes in ``shapes``.
"""
from physgm.config import MPMConfig
from physgm.sim.shapes import SHAPES, sample_shape
from physgm.sim.solver import SimResult, simulate
from physgm.sim.stability import choose_substeps, stable_dt

__all__ = ["MPMConfig", "SimResult", "simulate", "sample_shape", "SHAPES", "choose_substeps",
           "stable_dt"]
