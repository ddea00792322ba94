"""Pinhole cameras, orbit/random placement around an object, rays and Plücker coordinates.

Conventions (docs/architecture.md): OpenCV camera axes (x right, y down, z forward); world y is up;
``K`` (3, 3) intrinsics in pixels with pixel centres at ``i + 0.5`` (pixel (0, 0) covers
[0, 1)², so a centred principal point is ``(W/2, H/2)``); ``c2w`` (4, 4) camera-to-world
rigid transform in metres. Tensors are float32 on the CPU unless moved with ``to``.

Serialised form (HTTP, zarr): ``{"K": 3×3 list, "c2w": 4×4 list}`` plus optional ``width``
and ``height``; without them the size is read from the principal point (W = 2·cx).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]

# Tolerance on ‖RᵀR − I‖_max: loose enough for poses that went through JSON with ~6
# significant digits, tight enough to reject scaled or sheared matrices.
ORTHONORMAL_TOL = 1e-3


def _as_tensor(x: ArrayLike, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(x, dtype=np.float64) if not torch.is_tensor(x) else x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"camera {name} must be a numeric {shape} array: {err}") from None
    if tuple(t.shape) != shape:
        raise ValueError(f"camera {name} must have shape {shape}, got {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.double()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"camera {name} has NaN or Inf entries; pass finite numbers")
    return t


@dataclass(eq=False)
class Camera:
    """A pinhole camera.

    Args:
        K: (3, 3) intrinsics [px]: ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (a skew term
            ``K[0, 1]`` is allowed).
        c2w: (4, 4) camera-to-world transform [m]; rotation columns are the camera's
            x (right), y (down), z (forward) axes in world coordinates.
        width, height: image size [px].

    Raises ``ValueError`` naming the problem for non-finite entries, non-positive focal
    lengths, a last row of K other than (0, 0, 1), a rotation that is not orthonormal or
    is a reflection, or a non-positive size.
    """

    K: torch.Tensor
    c2w: torch.Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        K = _as_tensor(self.K, "K", (3, 3))
        c2w = _as_tensor(self.c2w, "c2w", (4, 4))
        if not (float(K[0, 0]) > 0 and float(K[1, 1]) > 0):
            raise ValueError(f"camera K must have positive focal lengths fx=K[0][0], fy=K[1][1]; "
                             f"got fx={float(K[0, 0]):g}, fy={float(K[1, 1]):g}")
        if not torch.allclose(K[2].double(), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
                              atol=1e-6) or abs(float(K[1, 0])) > 1e-6:
            raise ValueError(f"camera K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]]; got "
                             f"{K.tolist()}")
        if not torch.allclose(c2w[3].double(), torch.tensor([0.0, 0.0, 0.0, 1.0],
                                                            dtype=torch.float64), atol=1e-6):
            raise ValueError(f"camera c2w last row must be [0, 0, 0, 1]; got {c2w[3].tolist()}")
        R = c2w[:3, :3].double()
        err = float((R.T @ R - torch.eye(3, dtype=torch.float64)).abs().max())
        if err > ORTHONORMAL_TOL:
            raise ValueError(f"camera c2w rotation (upper-left 3x3) is not orthonormal "
                             f"(max |RᵀR − I| = {err:.3g} > {ORTHONORMAL_TOL:g}); pass a rigid "
                             "pose without scale or shear")
        if float(torch.linalg.det(R)) < 0:
            raise ValueError("camera c2w rotation has determinant −1 (a reflection); OpenCV "
                             "axes are right-handed: x right, y down, z forward")
        try:
            w, h = int(self.width), int(self.height)
        except (TypeError, ValueError):
            raise ValueError(f"camera width/height must be integers, got "
                             f"{self.width!r}, {self.height!r}") from None
        if w <= 0 or h <= 0 or w != self.width or h != self.height:
            raise ValueError(f"camera width/height must be positive integers, got "
                             f"{self.width!r}, {self.height!r}")
        self.K = K.to(torch.float32)
        self.c2w = c2w.to(torch.float32)
        self.width, self.height = w, h

    # ----------------------------------------------------------------- properties
    @property
    def w2c(self) -> torch.Tensor:
        """(4, 4) world-to-camera transform (the "view matrix"): [Rᵀ, −Rᵀt; 0, 1]."""
        R, t = self.c2w[:3, :3], self.c2w[:3, 3]
        w2c = torch.eye(4, dtype=self.c2w.dtype, device=self.c2w.device)
        w2c[:3, :3] = R.T
        w2c[:3, 3] = -R.T @ t
        return w2c

    @property
    def position(self) -> torch.Tensor:
        """(3,) camera centre in world coordinates [m]."""
        return self.c2w[:3, 3]

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    # ----------------------------------------------------------------- constructors
    @classmethod
    def look_at(cls, eye: ArrayLike, target: ArrayLike, fov_deg: float, width: int,
                height: int, up: ArrayLike = (0.0, 1.0, 0.0)) -> "Camera":
        """A camera at ``eye`` looking at ``target`` with vertical field of view ``fov_deg``
        (square pixels, centred principal point). ``up`` (world) appears upwards in the
        image; when the view direction is parallel to ``up`` (a top-down view), world −z
        (or +x if that is parallel too) is used as the image's up instead."""
        if not 0.0 < float(fov_deg) < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
        eye_t = torch.as_tensor(np.asarray(eye, dtype=np.float64))
        tgt_t = torch.as_tensor(np.asarray(target, dtype=np.float64))
        up_t = torch.as_tensor(np.asarray(up, dtype=np.float64))
        forward = tgt_t - eye_t
        if float(forward.norm()) < 1e-12:
            raise ValueError("look_at: eye and target coincide; move the camera away")
        forward = forward / forward.norm()
        right = torch.linalg.cross(forward, up_t)
        for alt in ((0.0, 0.0, -1.0), (1.0, 0.0, 0.0)):
            if float(right.norm()) > 1e-6:
                break
            right = torch.linalg.cross(forward, torch.tensor(alt, dtype=torch.float64))
        right = right / right.norm()
        down = torch.linalg.cross(forward, right)
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye_t
        f = 0.5 * height / math.tan(math.radians(fov_deg) / 2.0)
        K = torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]],
                         dtype=torch.float64)
        return cls(K.float(), c2w.float(), width, height)

    @classmethod
    def from_dict(cls, d: dict, width: Optional[int] = None,
                  height: Optional[int] = None) -> "Camera":
        """From ``{"K": 3×3, "c2w": 4×4[, "width", "height"]}``; explicit ``width``/``height``
        arguments win, then the dict's, then ``2·cx`` × ``2·cy``."""
        if not isinstance(d, dict) or "K" not in d or "c2w" not in d:
            raise ValueError('a camera must be a mapping {"K": 3x3 list, "c2w": 4x4 list}')
        K = _as_tensor(d["K"], "K", (3, 3))
        w = width if width is not None else d.get("width")
        h = height if height is not None else d.get("height")
        if w is None:
            w = int(round(2.0 * float(K[0, 2])))
        if h is None:
            h = int(round(2.0 * float(K[1, 2])))
        return cls(K, d["c2w"], w, h)

    def to_dict(self) -> dict:
        """Plain-Python form (JSON/zarr-attribute safe): K, c2w as nested lists, width, height."""
        return {"K": self.K.double().cpu().tolist(), "c2w": self.c2w.double().cpu().tolist(),
                "width": self.width, "height": self.height}

    # ----------------------------------------------------------------- derived cameras
    def scaled(self, width: int, height: int) -> "Camera":
        """The same camera for an image resized to ``width`` × ``height`` (fx, cx scale by
        width ratio; fy, cy by height ratio — exact for the i + 0.5 pixel-centre convention)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.clone()
        K[0] = K[0] * sx
        K[1] = K[1] * sy
        K[2] = torch.tensor([0.0, 0.0, 1.0], dtype=K.dtype, device=K.device)
        return Camera(K, self.c2w.clone(), width, height)

    def to(self, device: Union[str, torch.device]) -> "Camera":
        """The same camera with its tensors on ``device``."""
        cam = Camera.__new__(Camera)
        cam.K, cam.c2w = self.K.to(device), self.c2w.to(device)
        cam.width, cam.height = self.width, self.height
        return cam

    # ----------------------------------------------------------------- geometry
    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (N, 3) [m] → pixel coordinates (N, 2) (u right, v down, continuous:
        pixel i's centre is i + 0.5) and camera-frame depth z (N,) [m]."""
        w2c = self.w2c.to(points)
        pc = points @ w2c[:3, :3].T + w2c[:3, 3]
        z = pc[:, 2]
        uvw = pc @ self.K.to(points).T
        return uvw[:, :2] / z[:, None], z

    def rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays through every pixel centre: origins (H, W, 3) and unit directions (H, W, 3),
        world coordinates."""
        dev, dt = self.K.device, self.K.dtype
        v, u = torch.meshgrid(torch.arange(self.height, device=dev, dtype=dt) + 0.5,
                              torch.arange(self.width, device=dev, dtype=dt) + 0.5,
                              indexing="ij")
        pix = torch.stack([u, v, torch.ones_like(u)], dim=-1)            # (H, W, 3)
        d_cam = pix @ torch.linalg.inv(self.K).T
        d = d_cam @ self.c2w[:3, :3].T
        d = d / d.norm(dim=-1, keepdim=True)
        o = self.c2w[:3, 3].expand_as(d)
        return o, d


def plucker(camera: Camera) -> torch.Tensor:
    """Plücker ray coordinates (6, H, W): channels 0–2 the moment o × d, channels 3–5 the
    unit direction d (world frame; o the camera centre)."""
    o, d = camera.rays()
    m = torch.linalg.cross(o, d, dim=-1)
    return torch.cat([m, d], dim=-1).permute(2, 0, 1).contiguous()


def plucker_batch(cameras: Iterable[Camera]) -> torch.Tensor:
    """Plücker coordinates of several cameras of one size: (V, 6, H, W)."""
    cams = list(cameras)
    if not cams:
        raise ValueError("plucker_batch needs at least one camera")
    sizes = {(c.width, c.height) for c in cams}
    if len(sizes) != 1:
        raise ValueError(f"plucker_batch needs cameras of one image size, got {sorted(sizes)}; "
                         "use Camera.scaled(width, height) first")
    return torch.stack([plucker(c) for c in cams])


def _orbit_eye(target: torch.Tensor, radius: float, elevation_deg: float,
               azimuth_deg: float) -> torch.Tensor:
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    offset = torch.tensor([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)],
                          dtype=torch.float64)
    return target + radius * offset


def orbit_cameras(n: int, radius: float, elevation_deg: float,
                  target: ArrayLike = (0.0, 0.0, 0.0), fov_deg: float = 40.0,
                  width: int = 64, height: int = 64,
                  azimuth_start_deg: float = 0.0) -> list[Camera]:
    """``n`` cameras evenly spaced in azimuth on a circle of ``radius`` [m] around
    ``target``, ``elevation_deg`` above its horizontal plane (world y up), looking at it.
    Azimuth 0 is on the +z side of the target; it increases towards +x."""
    if n < 1:
        raise ValueError(f"orbit_cameras needs n ≥ 1, got {n}")
    if radius <= 0:
        raise ValueError(f"orbit radius must be > 0 m, got {radius}")
    tgt = torch.as_tensor(np.asarray(target, dtype=np.float64))
    return [Camera.look_at(_orbit_eye(tgt, radius, elevation_deg, azimuth_start_deg + 360.0 * k / n),
                           tgt, fov_deg, width, height) for k in range(n)]


def random_cameras(n: int, generator: Union[torch.Generator, np.random.Generator, int, None] = None,
                   radius: tuple[float, float] = (1.5, 2.5),
                   elevation_deg: tuple[float, float] = (0.0, 45.0),
                   azimuth_deg: tuple[float, float] = (0.0, 360.0),
                   target: ArrayLike = (0.0, 0.0, 0.0), fov_deg: float = 40.0,
                   width: int = 64, height: int = 64) -> list[Camera]:
    """``n`` cameras looking at ``target`` from radius, elevation and azimuth drawn
    uniformly from the given (low, high) ranges. ``generator`` is a ``torch.Generator``,
    a ``numpy.random.Generator`` or an int seed (None: numpy's default entropy)."""
    if n < 1:
        raise ValueError(f"random_cameras needs n ≥ 1, got {n}")
    for name, (lo, hi) in (("radius", radius), ("elevation_deg", elevation_deg),
                           ("azimuth_deg", azimuth_deg)):
        if hi < lo:
            raise ValueError(f"random_cameras {name} range must be (low, high), got {(lo, hi)}")
    if radius[0] <= 0:
        raise ValueError(f"random_cameras radius must be > 0 m, got {radius}")
    if isinstance(generator, torch.Generator):
        u = torch.rand(n, 3, generator=generator, dtype=torch.float64).numpy()
    else:
        rng = generator if isinstance(generator, np.random.Generator) else \
            np.random.default_rng(generator)
        u = rng.random((n, 3))
    tgt = torch.as_tensor(np.asarray(target, dtype=np.float64))
    cams = []
    for k in range(n):
        r = radius[0] + u[k, 0] * (radius[1] - radius[0])
        el = elevation_deg[0] + u[k, 1] * (elevation_deg[1] - elevation_deg[0])
        az = azimuth_deg[0] + u[k, 2] * (azimuth_deg[1] - azimuth_deg[0])
        cams.append(Camera.look_at(_orbit_eye(tgt, r, el, az), tgt, fov_deg, width, height))
    return cams
