"""Response models of the HTTP API (they make ``/openapi.json`` describe every reply)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

from physgm.materials import Material


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model_version: str = Field(description="label of the weights being served")


class MaterialOut(BaseModel):
    name: Material = Field(description="most probable material")
    probs: dict[str, float] = Field(description="{material: probability}, sums to 1")


class ParamOut(BaseModel):
    """One continuous parameter of the most probable material, SI units. For E, density and
    yield stress (predicted in log10), ``mean`` is 10^log10_mean and ``std`` the
    delta-method ln(10)·mean·log10_std."""

    mean: float
    std: float
    log10_mean: Optional[float] = None
    log10_std: Optional[float] = None


class Prediction(BaseModel):
    material: MaterialOut
    params: dict[str, ParamOut] = Field(description="E [Pa], nu, density [kg/m³], and the "
                                        "material's own (yield_stress [Pa], friction_angle "
                                        "[deg], hardening, ...)")
    model_version: str
    views: int = Field(description="number of input views used")
    cameras: Literal["given", "default"] = Field(description="whether the request's cameras "
                                                 "or the default orbit cameras were used")
    model: Optional[str] = Field(None, description="the model id that answered (absent: the "
                                 "default model)")


class ModelsOut(BaseModel):
    default: dict[str, str] = Field(description="the default model: model_version, source")
    models: dict[str, str] = Field(description="{id: source} of the models served beside it "
                                   "(Serve model multiplexing), e.g. pretrained and dpo")


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong and what to change")


# Status codes every upload endpoint documents (docs/architecture.md, HTTP).
ERROR_RESPONSES = {
    400: {"model": ErrorOut, "description": "malformed request (corrupt image, bad JSON)"},
    401: {"model": ErrorOut, "description": "missing or wrong X-API-Key"},
    413: {"model": ErrorOut, "description": "request larger than the limit"},
    415: {"model": ErrorOut, "description": "not multipart/form-data, or a file that is not "
          "PNG/JPEG"},
    422: {"model": ErrorOut, "description": "invalid values (image size, number of views, "
          "cameras, overrides, model id, PLY properties)"},
    503: {"model": ErrorOut, "description": "model or simulation unavailable"},
    504: {"model": ErrorOut, "description": "model or simulation took too long"},
}
