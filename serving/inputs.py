"""Request inputs → model inputs: image decoding and camera validation (no Ray, no HTTP).

Every problem a client can cause raises ``InputError(status, detail)`` with the HTTP status
of the HTTP contract (400 malformed, 413 too large, 415 unsupported type, 422 invalid values)
and a message that says what to change. Images are typed by their content (magic bytes),
not by the declared content type or file name; their size is checked from the header before
the pixels are decoded.

Views are centre-cropped to a square (the camera's principal point moves with the crop)
and resized to the model's ``image_size`` S (the intrinsics scale with it), so the model
sees ``images (V, 3, S, S)`` in [0, 1] with Plücker rays ``(V, 6, S, S)`` of matching
cameras.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from physgm.camera import Camera, orbit_cameras, plucker_batch
from physgm.config import ServeConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): they carry the
# image size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD9)) | {0x01}    # RSTn, SOI, EOI, TEM: no length
MAX_CAMERAS_CHARS = 64 * 1024   # 16 cameras of 25 numbers take ~10 kB


class InputError(ValueError):
    """A client error: ``status`` is the HTTP code, ``detail`` says what to change."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    """Request limits: image side in [min_px, max_px] pixels, 1..max_views views, the whole
    request at most max_bytes."""

    min_px: int = 32
    max_px: int = 4096
    max_views: int = 4
    max_bytes: int = 20 * 2 ** 20

    @classmethod
    def from_config(cls, cfg: ServeConfig) -> "Limits":
        return cls(cfg.min_image_px, cfg.max_image_px, cfg.max_views,
                   int(cfg.max_request_mb * 2 ** 20))


@dataclass(frozen=True)
class CameraDefaults:
    """Cameras assumed when a request sends none: V views evenly spaced in azimuth on an
    orbit of ``radius_m`` at ``elevation_deg`` around ``target`` [m] (world y up)."""

    radius_m: float = 0.8
    elevation_deg: float = 25.0
    fov_deg: float = 30.0
    target: tuple[float, float, float] = (0.5, 0.25, 0.5)

    @classmethod
    def from_config(cls, cfg: ServeConfig) -> "CameraDefaults":
        return cls(cfg.default_camera_radius, cfg.default_camera_elevation_deg,
                   cfg.default_camera_fov_deg, tuple(cfg.default_camera_target))

    def cameras(self, n: int, width: int, height: int) -> list[Camera]:
        return orbit_cameras(n, self.radius_m, self.elevation_deg, target=self.target,
                             fov_deg=self.fov_deg, width=width, height=height)


@dataclass(eq=False)
class ModelInputs:
    """images (V, 3, S, S) float32 in [0, 1]; plucker (V, 6, S, S); origins and directions
    (V, S, S, 3) world rays [m] of every pixel; cameras at S × S; cameras_given tells whether
    the request sent them."""

    images: np.ndarray
    plucker: np.ndarray
    origins: np.ndarray
    directions: np.ndarray
    cameras: list[Camera]
    cameras_given: bool

    @property
    def n_views(self) -> int:
        return self.images.shape[0]


def sniff_image_type(data: bytes) -> Optional[str]:
    """"png", "jpeg" or None, from the first bytes of the file."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    return None


def declared_size(data: bytes, kind: str) -> Optional[tuple[int, int]]:
    """(width, height) [px] as the file's header declares them, read without decoding
    anything (PNG: the IHDR chunk; JPEG: the first start-of-frame marker), or None when the
    header is cut short or malformed. A few hundred bytes can declare 100,000 × 100,000 px:
    this is checked before any decoder sees the file."""
    if kind == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    i = 2                                              # after SOI (FF D8)
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:                             # fill byte before a marker
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            return (int.from_bytes(data[i + 7:i + 9], "big"),
                    int.from_bytes(data[i + 5:i + 7], "big"))
        if marker == 0xDA:                             # scan data before any frame header
            return None
        i += 2 + length
    return None


def decode_image(data: bytes, name: str, limits: Limits) -> np.ndarray:
    """PNG/JPEG bytes → (H, W, 3) uint8 RGB; transparency is composited on black (the
    renderer's background). Raises InputError: 400 empty or corrupt/truncated, 415 not a
    PNG/JPEG, 422 a side outside [min_px, max_px] (checked from the header, before PIL
    decodes anything)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError(400, f"image '{name}' is empty; attach the file's bytes")
    kind = sniff_image_type(data)
    if kind is None:
        raise InputError(415, f"'{name}' is not a PNG or JPEG image (type is read from the "
                         "file's content); convert it to PNG or JPEG")
    size = declared_size(data, kind)
    if size is None:
        raise InputError(400, f"image '{name}' looks like {kind.upper()} but its header "
                         "(image size) cannot be read; re-export the file")
    _check_sides(name, *size, limits)
    try:
        img = Image.open(io.BytesIO(data), formats=["PNG" if kind == "png" else "JPEG"])
        width, height = img.size  # header only: the pixels are not decoded yet
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            Image.DecompressionBombError) as err:
        raise InputError(400, f"image '{name}' looks like {kind.upper()} but its header "
                         f"cannot be read ({err}); re-export the file") from None
    _check_sides(name, width, height, limits)
    try:
        img.load()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
            rgb = rgba[..., :3] * (rgba[..., 3:] / 255.0)
            return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except Exception as err:  # noqa: BLE001 - any decoder failure is a bad file, not ours
        raise InputError(400, f"image '{name}' is truncated or corrupt ({type(err).__name__}: "
                         f"{err}); re-export the file") from None


def _check_sides(name: str, width: int, height: int, limits: Limits) -> None:
    if min(width, height) < limits.min_px or max(width, height) > limits.max_px:
        raise InputError(422, f"image '{name}' is {width}×{height} px; each side must be "
                         f"between {limits.min_px} and {limits.max_px} px: resize it")


def parse_cameras(text: Optional[str], sizes: Sequence[tuple[int, int]]) -> Optional[list[Camera]]:
    """The ``cameras`` form field: a JSON list with one ``{"K": 3×3, "c2w": 4×4}`` per image
    (K in pixels of that image, c2w camera-to-world in metres, OpenCV axes). ``sizes`` are
    the images' (width, height). None or blank → None (default cameras). Raises InputError:
    400 not JSON, 422 wrong count, shape or values (NaN, non-rigid pose...)."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_CAMERAS_CHARS:
        raise InputError(413, f"cameras is {len(text):,} characters; one camera per image "
                         f"takes a few hundred: send at most {MAX_CAMERAS_CHARS:,}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, 4300+ digit ints, nesting
        raise InputError(400, f"cameras is not valid JSON ({err}); send a JSON list like "
                         '[{"K": [[fx,0,cx],[0,fy,cy],[0,0,1]], "c2w": [[...4 numbers], ×4]}]'
                         ) from None
    if not isinstance(data, list):
        raise InputError(422, f"cameras must be a JSON list (one camera per image), got "
                         f"{type(data).__name__}")
    if len(data) != len(sizes):
        raise InputError(422, f"cameras has {len(data)} entries for {len(sizes)} images; "
                         "send exactly one camera per image, in the same order")
    cams = []
    for i, (d, (w, h)) in enumerate(zip(data, sizes)):
        if not isinstance(d, dict) or "K" not in d or "c2w" not in d:
            raise InputError(422, f"cameras[{i}] must be an object with keys K (3×3) and "
                             "c2w (4×4)")
        try:
            cams.append(Camera.from_dict({"K": d["K"], "c2w": d["c2w"]}, width=w, height=h))
        except (ValueError, TypeError) as err:
            raise InputError(422, f"cameras[{i}]: {err}") from None
    return cams


def _square(img: np.ndarray, cam: Optional[Camera]) -> tuple[np.ndarray, Optional[Camera]]:
    """Centre crop to the shorter side; the principal point shifts with the crop."""
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    if (h, w) == (s, s):
        return img, cam
    if cam is not None:
        K = cam.K.clone()
        K[0, 2] -= x0
        K[1, 2] -= y0
        cam = Camera(K, cam.c2w, s, s)
    return img[y0:y0 + s, x0:x0 + s], cam


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if img.shape[0] == size and img.shape[1] == size:
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BOX
                                                  if img.shape[0] > size else
                                                  Image.Resampling.BILINEAR))


def prepare_views(images: Sequence[np.ndarray], cameras: Optional[Sequence[Camera]],
                  size: int, defaults: CameraDefaults = CameraDefaults()) -> ModelInputs:
    """Decoded views (H_v, W_v, 3) uint8 and their cameras (None: ``defaults``) → the model's
    square ``size`` × ``size`` inputs (see ModelInputs)."""
    given = cameras is not None
    out_imgs, cams = [], []
    for v, img in enumerate(images):
        img, cam = _square(img, cameras[v] if given else None)
        out_imgs.append(_resize(img, size))
        if cam is not None:
            cams.append(cam.scaled(size, size))
    if not given:
        cams = defaults.cameras(len(images), size, size)
    arr = np.stack(out_imgs).astype(np.float32) / 255.0                 # (V, S, S, 3)
    rays = [c.rays() for c in cams]
    return ModelInputs(
        images=np.ascontiguousarray(arr.transpose(0, 3, 1, 2)),
        plucker=plucker_batch(cams).numpy().astype(np.float32),
        origins=torch.stack([o for o, _ in rays]).numpy().astype(np.float32),
        directions=torch.stack([d for _, d in rays]).numpy().astype(np.float32),
        cameras=cams, cameras_given=given)


def parse_views(files: Sequence[tuple[str, bytes]], cameras_text: Optional[str],
                limits: Limits, size: int,
                defaults: CameraDefaults = CameraDefaults()) -> ModelInputs:
    """The whole input check of a request: ``files`` [(name, bytes)] of the ``images`` field
    and the ``cameras`` text → ModelInputs, or InputError."""
    if not files:
        raise InputError(422, "no images: send 1 to "
                         f"{limits.max_views} PNG/JPEG files in the multipart field 'images'")
    if len(files) > limits.max_views:
        raise InputError(422, f"{len(files)} images sent; the model takes 1 to "
                         f"{limits.max_views} views: send fewer")
    decoded = [decode_image(data, name, limits) for name, data in files]
    cams = parse_cameras(cameras_text, [(im.shape[1], im.shape[0]) for im in decoded])
    return prepare_views(decoded, cams, size, defaults)


def finite_float(value: Optional[float], name: str) -> Optional[float]:
    """A form number that must be finite (NaN/Inf → 422)."""
    if value is not None and not math.isfinite(value):
        raise InputError(422, f"{name} must be a finite number, got {value}")
    return value
