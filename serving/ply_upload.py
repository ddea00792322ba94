"""An uploaded 3DGS PLY for ``POST /v1/simulate`` (field ``gaussians``), no Ray, no HTTP.

    bytes ─ read_upload: physgm.ply (header checked against the bytes before anything is
            allocated; serve.max_ply_gaussians) ─► Gaussians in the scene's units
          ─ prediction_views: the object scaled to the synthetic training objects' size
            (VIEW_OBJECT_M), centred on the default cameras' target, rendered from them
            ─► ModelInputs: the model predicts the physics from these views as from photos
          ─ the simulation replica places, fills and simulates it (serving.scene.simulate_ply_video)

Client errors are InputError: 400 not a PLY or a header the bytes contradict, 413 more
Gaussians than allowed, 422 missing properties or NaN/Inf values.
"""
from __future__ import annotations

import numpy as np
import torch

from physgm.gaussians import Gaussians
from physgm.ply import PlyError, read_ply
from physgm.ply_scene import normalising_transform, select_gaussians, transform_gaussians
from serving.inputs import CameraDefaults, InputError, ModelInputs, prepare_views

VIEW_OBJECT_M = 0.2          # longest extent in the prediction views: mid synthetic range
MIN_OPACITY = 0.1            # fainter Gaussians are neither simulated nor shown
_STATUS = {"malformed": 400, "too_large": 413, "invalid": 422}


def read_upload(data: bytes, max_gaussians: int) -> Gaussians:
    """The opaque Gaussians (≥ MIN_OPACITY) of an uploaded PLY, or InputError."""
    if not data:
        raise InputError(400, "the field 'gaussians' is empty; attach a 3DGS .ply file")
    try:
        g, _ = read_ply(data, max_gaussians)
    except PlyError as err:
        raise InputError(_STATUS[err.reason], f"gaussians: {err}") from None
    try:
        return select_gaussians(g, MIN_OPACITY)
    except ValueError as err:
        raise InputError(422, f"gaussians: {err}") from None


def prediction_views(g: Gaussians, size: int, n_views: int,
                     defaults: CameraDefaults = CameraDefaults()) -> ModelInputs:
    """``n_views`` renders (``size`` px) of the object as the model's training views show
    objects: longest extent VIEW_OBJECT_M metres at the default cameras' target."""
    from physgm.render import rasterize

    try:
        T = normalising_transform(g.means, VIEW_OBJECT_M, defaults.target)
    except ValueError as err:
        raise InputError(422, f"gaussians: {err}") from None
    placed = transform_gaussians(g, T)
    cams = defaults.cameras(n_views, size, size)
    with torch.no_grad():
        images = [(rasterize(placed, cam, size, size, backend="torch").rgb.clamp(0, 1)
                   * 255 + 0.5).to(torch.uint8).numpy() for cam in cams]
    mi = prepare_views(images, cams, size, defaults)
    mi.cameras_given = False         # the server chose them, as for views sent without cameras
    return mi


def sim_payload(g: Gaussians) -> dict:
    """The Gaussians as numpy arrays for the simulation replica."""
    return {k: getattr(g, k).detach().cpu().numpy().astype(np.float32)
            for k in ("means", "scales", "quats", "opacities", "colors")}
