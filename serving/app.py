"""The HTTP API (FastAPI) and its Serve ingress deployment.

    GET  /healthz          → {"status": "ok", "model_version"}
    GET  /v1/models        → the default model and the ids served beside it
    POST /v1/predict       multipart images (1–4 PNG/JPEG) [+ cameras JSON] → Prediction
    POST /v1/gaussians     same inputs [+ ?min_opacity=] → 3DGS PLY bytes
    POST /v1/simulate      same inputs, or a 3DGS PLY in 'gaussians' [+ material, E
                           overrides] [?format=mp4|gif] → video
    GET  /                 demo page (static/index.html); /openapi.json, /docs

Every POST takes a model id (header ``serve_multiplexed_model_id``, or the form field
``model``): one of ``/v1/models``' ids (e.g. ``pretrained``, ``dpo``); without it the
default model answers. The id travels to the model deployment as Serve's multiplexed model
id, so requests go to replicas that already hold that model.

The ingress validates and decodes everything a client sends (``serving.inputs``), then calls
the model deployment (batched predict, or the per-pixel Gaussians) and, for simulate, the
simulation deployment. Client mistakes are 4xx with a JSON ``detail`` (docs/architecture.md); a
model or simulation failure is 503, a call over ``serve.request_timeout_s`` 504. Binary
replies carry ``X-Model-Version``.
"""
from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from ray import serve

import physgm
from physgm.gaussians import Gaussians
from physgm.materials import Material
from serving.inputs import CameraDefaults, InputError, Limits, ModelInputs, parse_views
from serving.ply_upload import prediction_views, read_upload, sim_payload
from serving.scene import resolve_params
from physgm.ply_scene import thin_gaussians
from serving.schemas import ERROR_RESPONSES, Health, ModelsOut, Prediction
from serving.security import RequestGuard

STATIC_DIR = Path(__file__).resolve().parent / "static"
INFO_TTL_S = 2.0

IMAGES_DOC = ("1 to 4 views of one object, PNG or JPEG (typed by content), each side "
              "32–4096 px by default; non-square views are centre-cropped")
CAMERAS_DOC = ('optional JSON list, one {"K": 3×3 intrinsics in pixels of that image, '
               '"c2w": 4×4 camera-to-world in metres, OpenCV axes} per image, in order; '
               "without it the views are assumed on an orbit around the object "
               "(serve.default_camera_*)")
MODEL_DOC = ("model id to answer with (see GET /v1/models, e.g. pretrained or dpo); the "
             "header serve_multiplexed_model_id does the same; default: the default model")
MODEL_HEADER = "serve_multiplexed_model_id"
PLY_DOC = ("instead of images: a 3DGS scene (.ply in the original layout, SH degree 0–3, "
           "≤ serve.max_ply_gaussians Gaussians, any units): the model predicts its physics "
           "from renders of it, then it is filled, simulated and rendered")
PLY_VIEWS = 2


def _readable(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
        hint = " (send 1–4 PNG/JPEG files in the multipart field 'images')" \
            if loc.startswith("images") else ""
        parts.append(f"{loc}: {e.get('msg', 'invalid')}{hint}")
    return "; ".join(parts)


class _Backend:
    """Calls into the model and simulation deployments, with the time limit and the
    mapping of their failures to 503/504."""

    def __init__(self, model, sim, timeout_s: float):
        self.model, self.sim, self.timeout_s = model, sim, timeout_s
        self._info: Optional[dict] = None
        self._info_at = 0.0

    async def call(self, response, what: str):
        async def wait():
            return await response
        try:
            return await asyncio.wait_for(wait(), self.timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise HTTPException(504, f"{what} took longer than {self.timeout_s:g} s; retry "
                                "later or send fewer views") from None
        except HTTPException:
            raise
        except Exception as err:  # replica died, back-pressure, model error: not the client's
            raise HTTPException(503, f"{what} unavailable ({type(err).__name__}); retry "
                                "later") from None

    def model_handle(self, model_id: Optional[str]):
        """The model deployment, routed to replicas holding ``model_id`` (multiplexing)."""
        return self.model.options(multiplexed_model_id=model_id) if model_id else self.model

    async def info(self, fresh: bool = False) -> dict:
        if fresh or self._info is None or time.monotonic() - self._info_at > INFO_TTL_S:
            self._info = await self.call(self.model.info.remote(), "model")
            self._info_at = time.monotonic()
        return self._info


def build_api(model, sim, settings: dict) -> FastAPI:
    """The FastAPI app around deployment handles ``model`` and ``sim``. ``settings``:
    ``limits`` (Limits fields), ``cameras`` (CameraDefaults fields), ``timeout_s``,
    ``api_key_digest``."""
    limits = Limits(**settings["limits"])
    defaults = CameraDefaults(**settings["cameras"])
    ply = {"max_gaussians": 200_000, "keep": 5000, **settings.get("ply", {})}
    backend = _Backend(model, sim, float(settings["timeout_s"]))
    api = FastAPI(title="PhysGM", version=physgm.__version__,
                  description="Physics from 1–4 images: material and parameters with "
                  "uncertainty, 3D Gaussians, and a simulated video (arXiv 2508.13911).")
    api.add_middleware(RequestGuard, max_bytes=limits.max_bytes,
                       api_key_digest=settings.get("api_key_digest"))

    @api.exception_handler(InputError)
    async def _input_error(_: Request, exc: InputError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _readable(exc)}, status_code=422)

    async def read_views(images: list[UploadFile], cameras: Optional[str]) -> ModelInputs:
        files = [(f.filename or f"images[{i}]", await f.read()) for i, f in enumerate(images)]
        info = await backend.info()
        lim = replace(limits, max_views=min(limits.max_views, int(info["max_views"])))
        return await asyncio.to_thread(parse_views, files, cameras, lim,
                                       int(info["image_size"]), defaults)

    async def gaussians_of(mi: ModelInputs, model_id: Optional[str]) -> dict:
        return await backend.call(backend.model_handle(model_id).gaussians.remote(
            {"images": mi.images, "plucker": mi.plucker, "origins": mi.origins,
             "directions": mi.directions, "model": model_id}), "model")

    async def predict_of(images: np.ndarray, plucker: np.ndarray,
                         model_id: Optional[str]) -> dict:
        return await backend.call(backend.model_handle(model_id).predict.remote(
            {"images": images, "plucker": plucker, "model": model_id}), "model")

    async def choose_model(request: Request, field: Optional[str]) -> Optional[str]:
        """The request's model id (header first, then the form field), checked."""
        model_id = (request.headers.get(MODEL_HEADER) or field or "").strip() or None
        if model_id is not None:
            served = (await backend.info())["models"]
            if model_id not in served:
                raise InputError(422, f"model {model_id!r} is not served; choose one of "
                                 f"{sorted(served) or '(none: only the default model)'} or "
                                 "leave it out for the default model")
        return model_id

    @api.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> Health:
        """Liveness and the weights being served."""
        return Health(model_version=(await backend.info(fresh=True))["model_version"])

    @api.get("/v1/models", response_model=ModelsOut, tags=["service"])
    async def models() -> ModelsOut:
        """The default model and the models served beside it, by id (send the id in the
        header serve_multiplexed_model_id or the form field model)."""
        info = await backend.info(fresh=True)
        return ModelsOut(default={"model_version": info["model_version"],
                                  "source": info["source"]}, models=info["models"])

    @api.post("/v1/predict", response_model=Prediction, response_model_exclude_none=True,
              responses=ERROR_RESPONSES, tags=["model"])
    async def predict(request: Request, response: Response,
                      images: list[UploadFile] = File(..., description=IMAGES_DOC),
                      cameras: Optional[str] = Form(None, description=CAMERAS_DOC),
                      model: Optional[str] = Form(None, description=MODEL_DOC)) -> dict:
        """Material probabilities and the physical parameters (mean ± std, SI units) of the
        most probable material. Concurrent requests are batched on the model replica."""
        model_id = await choose_model(request, model)
        mi = await read_views(images, cameras)
        out = await predict_of(mi.images, mi.plucker, model_id)
        response.headers["X-Model-Version"] = out["model_version"]
        return {"material": out["material"], "params": out["params"],
                "model_version": out["model_version"], "views": mi.n_views,
                "cameras": "given" if mi.cameras_given else "default", "model": model_id}

    @api.post("/v1/gaussians", response_class=Response, tags=["model"],
              responses={**ERROR_RESPONSES, 200: {
                  "content": {"application/octet-stream": {}},
                  "description": "binary little-endian PLY, 3DGS layout (log scales, logit "
                  "opacity, SH DC colour); one Gaussian per input pixel"}})
    async def gaussians(request: Request,
                        images: list[UploadFile] = File(..., description=IMAGES_DOC),
                        cameras: Optional[str] = Form(None, description=CAMERAS_DOC),
                        model: Optional[str] = Form(None, description=MODEL_DOC),
                        min_opacity: float = Query(0.0, ge=0.0, le=1.0, description=
                                                   "leave out Gaussians less opaque")):
        """The predicted 3D Gaussians as a PLY file (opens in 3DGS viewers)."""
        model_id = await choose_model(request, model)
        out = await gaussians_of(await read_views(images, cameras), model_id)
        data = await asyncio.to_thread(_ply_bytes, out, min_opacity)
        return Response(data, media_type="application/octet-stream", headers={
            "Content-Disposition": 'attachment; filename="gaussians.ply"',
            "X-Model-Version": out["model_version"]})

    @api.post("/v1/simulate", response_class=Response, tags=["simulation"],
              responses={**ERROR_RESPONSES, 200: {
                  "content": {"video/mp4": {}, "image/gif": {}},
                  "description": "the object dropped on the floor, simulated with MPM with the "
                  "predicted mean parameters (or the overrides); headers X-Sim-Status "
                  "(ok | unstable | escaped), X-Sim-Params (JSON), X-Sim-Particles, "
                  "X-Sim-Substeps, X-Sim-Appearance (predicted | pixels: the model's "
                  "Gaussians were transparent, input pixel colours shown), X-Sim-Timings, "
                  "X-Model-Version"}})
    async def simulate(request: Request,
                       images: Optional[list[UploadFile]] = File(None, description=IMAGES_DOC),
                       gaussians: Optional[UploadFile] = File(None, description=PLY_DOC),
                       cameras: Optional[str] = Form(None, description=CAMERAS_DOC),
                       model: Optional[str] = Form(None, description=MODEL_DOC),
                       material: Optional[Material] = Form(
                           None, description="simulate as this material instead (its "
                           "predicted parameters are used)"),
                       E: Optional[float] = Form(None, gt=0, allow_inf_nan=False,
                                                 description="Young's modulus [Pa] instead of "
                                                 "the predicted one; within the material's range"),
                       format: Literal["mp4", "gif"] = Query("mp4", description="video type")):
        """What the predicted physics does: the reconstructed object (or the uploaded 3DGS
        scene) falls onto the floor."""
        if (images is None) == (gaussians is None):
            raise InputError(422, "send either 1–4 views in the multipart field 'images' or "
                             "one 3DGS .ply in the field 'gaussians', not both or neither")
        model_id = await choose_model(request, model)
        if gaussians is not None:
            if cameras:
                raise InputError(422, "cameras describe uploaded images; a 'gaussians' scene "
                                 "needs none: leave the field out")
            data = await gaussians.read()
            g = await asyncio.to_thread(read_upload, data, int(ply["max_gaussians"]))
            g = thin_gaussians(g, int(ply["keep"]))
            info = await backend.info()
            mi = await asyncio.to_thread(prediction_views, g, int(info["image_size"]),
                                         min(PLY_VIEWS, int(info["max_views"])), defaults)
            out = {**await predict_of(mi.images, mi.plucker, model_id), **sim_payload(g)}
            request_sim = {"scene": "ply"}
        else:
            mi = await read_views(images, cameras)
            out = await gaussians_of(mi, model_id)
            request_sim = {"pixel_rgb": mi.images.transpose(0, 2, 3, 1).reshape(-1, 3)}
        mat = material.value if material is not None else None
        try:
            resolve_params(out["mu"], out["material"]["name"], mat, E)
        except ValueError as err:
            raise InputError(422, str(err)) from None
        request_sim.update({k: out[k] for k in ("means", "scales", "quats", "opacities",
                                                "colors", "mu")})
        request_sim.update(name=out["material"]["name"], material=mat, E=E, format=format)
        res = await backend.call(backend.sim.simulate.remote(request_sim), "simulation")
        headers = {"X-Model-Version": out["model_version"], "X-Sim-Status": res["status"],
                   "X-Sim-Params": json.dumps(res["params"]),
                   "X-Sim-Particles": str(res["n_particles"]),
                   "X-Sim-Substeps": str(res["substeps_per_frame"]),
                   "X-Sim-Appearance": res["appearance"],
                   "X-Sim-Timings": json.dumps(res["timings_s"]),
                   "Content-Disposition": f'inline; filename="simulation.{format}"'}
        if model_id:
            headers["X-Model-Id"] = model_id
        return Response(res["video"], media_type="video/mp4" if format == "mp4" else "image/gif",
                        headers=headers)

    @api.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    api.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return api


def _ply_bytes(out: dict, min_opacity: float) -> bytes:
    g = Gaussians(*(torch.tensor(np.asarray(out[k], np.float32))
                    for k in ("means", "scales", "quats", "opacities", "colors")))
    if min_opacity > 0:
        g = g.subset(g.opacities >= min_opacity)
    with tempfile.TemporaryDirectory() as tmp:
        return g.save_ply(Path(tmp) / "gaussians.ply").read_bytes()


@serve.deployment(name="PhysGMIngress", max_ongoing_requests=256)
@serve.ingress()
class PhysGMIngress:
    """HTTP ingress: the FastAPI app of ``build_api`` around the two deployments."""

    def __init__(self, model, sim, settings: dict):
        self.model, self.sim, self.settings = model, sim, settings

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self.model, self.sim, self.settings)

    def check_health(self) -> None:
        """The page and its assets must be there (a broken install serves 404s); the model
        and simulation deployments have their own checks (the ingress does not call them:
        one slow replica must not mark every ingress unhealthy)."""
        missing = [p for p in ("index.html", "app.js", "style.css")
                   if not (STATIC_DIR / p).is_file()]
        if missing:
            raise RuntimeError(f"demo page files missing from {STATIC_DIR}: {missing}")
