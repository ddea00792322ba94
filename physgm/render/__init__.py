"""Gaussian-splatting renderer: ``rasterize`` (torch backend, differentiable; gsplat CUDA
backend; warp backend, forward only, one API) and ``render_video`` for simulated sequences
(warp on the CPU by default). ``rasterize_dense`` is the untiled torch reference (tests,
benchmarks)."""
from physgm.render.api import RenderOutput, rasterize, render_video, resolve_backend
from physgm.render.projection import project_gaussians
from physgm.render.torch_backend import rasterize_dense, rasterize_tiled

__all__ = ["RenderOutput", "rasterize", "render_video", "resolve_backend", "rasterize_dense",
           "rasterize_tiled", "project_gaussians"]
