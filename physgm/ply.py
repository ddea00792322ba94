"""3DGS PLY files: the header checked against the file's size, then read into Gaussians.

The original 3D Gaussian Splatting layout (Kerbl et al. 2023; what its trainer, PhysGaussian
and most splat tools write): one ``vertex`` element with scalar properties

    x y z  nx ny nz  f_dc_0..2  f_rest_0..R−1  opacity  scale_0..2  rot_0..3

stored as log scales, logit opacity, spherical-harmonic (SH) colour coefficients and an
unnormalised quaternion (w, x, y, z). R = 3·((d+1)² − 1) for SH degree d: 0, 9, 24 or 45
for d = 0..3. Reading applies the activations of the Gaussians contract: colours =
clip(0.5 + C0·f_dc, 0, 1), opacities = sigmoid(opacity), scales = exp(scale_i), quaternions
normalised on use (an all-zero one becomes the identity).

**SH beyond DC.** ``f_rest_*`` are checked (a partial set names the missing ones) and then
dropped: physgm renders SH degree 0, so a degree-1..3 scene loses its view-dependent
shading (specular highlights) and shows its DC colour, the colour averaged over view
directions. ``PlyLayout.sh_degree`` reports what the file held. Normals (``nx..nz``, zeros
in 3DGS files) are optional and ignored; other extra properties are ignored and listed in
``PlyLayout.ignored``.

**Untrusted files.** A header can declare any count (``element vertex 1000000000000`` in a
few hundred bytes): ``inspect_ply`` checks every declared element against the bytes that
follow the header before anything is allocated, and ``max_gaussians`` caps the count.
Problems raise ``PlyError`` (a ValueError) whose ``reason`` is "malformed" (not a PLY, or a
header that the bytes contradict), "too_large" (over ``max_gaussians``) or "invalid"
(missing properties, NaN/Inf values).
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np
import torch

from physgm.gaussians import _OPACITY_EPS, PLY_FIELDS, SH_C0, Gaussians

MAX_HEADER_BYTES = 64 * 1024
SH_REST_COUNTS = {0: 0, 1: 9, 2: 24, 3: 45}            # SH degree → number of f_rest_*
REQUIRED = tuple(f for f in PLY_FIELDS if f not in ("nx", "ny", "nz"))
_CODES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2",
          "int16": "i2", "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4",
          "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4", "double": "f8",
          "float64": "f8"}
_SIZES = {k: int(v[1]) for k, v in _CODES.items()}
_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")
_COUNT = re.compile(r"^\d{1,19}$")


class PlyError(ValueError):
    """A PLY the reader refuses; ``reason`` is "malformed", "too_large" or "invalid"."""

    def __init__(self, message: str, reason: Literal["malformed", "too_large", "invalid"]):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PlyLayout:
    """What a 3DGS PLY holds: ``format`` (ascii | binary_little_endian | binary_big_endian),
    ``n_gaussians`` (vertex count), ``sh_degree`` (0..3, from the f_rest_* count), ``ignored``
    (vertex properties not used: normals, SH beyond DC, extras) and ``header_bytes``."""

    format: str
    n_gaussians: int
    sh_degree: int
    ignored: tuple[str, ...]
    header_bytes: int


def _malformed(msg: str) -> PlyError:
    return PlyError(msg, "malformed")


def _parse_header(head: bytes) -> tuple[str, list[tuple[str, int, list[tuple]]], int]:
    """→ (format, [(element, count, [(property, size | None for lists, list count size
    (0 for scalars), item size | numpy code of a scalar)])], header length in bytes)."""
    if not (head.startswith(b"ply\n") or head.startswith(b"ply\r\n")):
        raise _malformed("not a PLY file (it must start with the line 'ply')")
    end = head.find(b"end_header", 0, MAX_HEADER_BYTES)
    if end < 0:
        raise _malformed(f"no 'end_header' line in the first {MAX_HEADER_BYTES // 1024} KiB: "
                         "the header is cut short or is not a PLY header")
    stop = end + len(b"end_header")
    if head[stop:stop + 2] == b"\r\n":
        stop += 2
    elif head[stop:stop + 1] == b"\n":
        stop += 1
    else:
        raise _malformed("'end_header' must end its line")
    try:
        lines = head[:end].decode("ascii").splitlines()[1:]
    except UnicodeDecodeError:
        raise _malformed("the PLY header holds non-ASCII bytes") from None
    fmt, elements = None, []
    for line in lines:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise _malformed(f"unknown PLY format line {line!r}; expected one of "
                                 f"{', '.join(_FORMATS)}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not _COUNT.match(words[2]):
                raise _malformed(f"bad element line {line!r}: expected 'element NAME COUNT'")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise _malformed(f"property before any element: {line!r}")
            props = elements[-1][2]
            if len(words) == 5 and words[1] == "list" and words[2] in _SIZES \
                    and words[3] in _SIZES:
                props.append((words[4], None, _SIZES[words[2]], _SIZES[words[3]]))
            elif len(words) == 3 and words[1] in _SIZES:
                props.append((words[2], _SIZES[words[1]], 0, _CODES[words[1]]))
            else:
                raise _malformed(f"bad property line {line!r}")
        else:
            raise _malformed(f"unknown PLY header line {line!r}")
    if fmt is None:
        raise _malformed("the PLY header has no 'format' line")
    return fmt, elements, stop


def _check_sizes(fmt: str, elements, body_bytes: int) -> None:
    """Every declared element must fit in the bytes after the header (lists counted at their
    smallest, an empty list), so nothing larger than the file is ever allocated."""
    need = 0
    for name, count, props in elements:
        if fmt == "ascii":   # a value is at least one character and one separator
            row = 2 * max(1, len(props))
        else:
            row = sum(size if size is not None else cnt for _, size, cnt, _ in props)
        need += count * row
        if need > body_bytes + 1:
            raise _malformed(f"the header declares {count:,} '{name}' rows (at least "
                             f"{count * row:,} bytes) but the file holds {body_bytes:,} bytes "
                             "after its header: it is truncated or its header is wrong")


def _sh_degree(names: set[str]) -> int:
    rest = sorted(int(n[7:]) for n in names if re.fullmatch(r"f_rest_\d+", n))
    count = len(rest)
    for degree, n in SH_REST_COUNTS.items():
        if count == n and (n == 0 or rest[-1] == n - 1):
            return degree
    if count > SH_REST_COUNTS[3] or (rest and rest[-1] >= SH_REST_COUNTS[3]):
        raise PlyError(f"{count} f_rest_* properties (up to f_rest_{rest[-1]}): SH degrees "
                       "above 3 are not supported; export the scene with SH degree ≤ 3",
                       "invalid")
    want = min(n for n in SH_REST_COUNTS.values() if n >= max(count, rest[-1] + 1))
    missing = [f"f_rest_{i}" for i in range(want) if i not in set(rest)]
    raise PlyError(f"the SH coefficients are incomplete: missing {_names(missing)} (SH "
                   f"degree {[d for d, n in SH_REST_COUNTS.items() if n == want][0]} needs "
                   f"f_rest_0..f_rest_{want - 1})", "invalid")


def _names(names: list[str]) -> str:
    return ", ".join(names)             # at most the 14 required and 45 SH names: all listed


def inspect_ply(head: bytes, total_bytes: int, max_gaussians: Optional[int] = None
                ) -> PlyLayout:
    """Check a 3DGS PLY from its first bytes (``head``, ≥ the header) and its size.

    Raises PlyError: malformed header, declared rows that the file cannot hold, no
    ``vertex`` element, missing properties (all named), SH degree > 3, more than
    ``max_gaussians`` vertices."""
    fmt, elements, stop = _parse_header(head)
    _check_sizes(fmt, elements, total_bytes - stop)
    vertex = [e for e in elements if e[0] == "vertex"]
    if not vertex:
        raise PlyError("the PLY has no 'vertex' element; is it a Gaussian-splat PLY?", "invalid")
    _, count, props = vertex[0]
    names = {p[0] for p in props}
    missing = [f for f in REQUIRED if f not in names]
    if missing:
        raise PlyError(f"the PLY lacks the 3DGS properties {_names(missing)}; a 3DGS scene has "
                       f"{', '.join(REQUIRED)} (plus optional nx, ny, nz, f_rest_*)", "invalid")
    lists = [p[0] for p in props if p[1] is None and p[0] in REQUIRED]
    if lists:
        raise PlyError(f"3DGS properties {_names(lists)} are lists; they must be scalars",
                       "invalid")
    degree = _sh_degree(names)
    if count == 0:
        raise PlyError("the PLY holds no Gaussians (element vertex 0)", "invalid")
    if max_gaussians is not None and count > max_gaussians:
        raise PlyError(f"the PLY holds {count:,} Gaussians; at most {max_gaussians:,} are "
                       "accepted: prune or downsample the scene", "too_large")
    ignored = tuple(p[0] for p in props if p[0] not in REQUIRED)
    return PlyLayout(fmt, count, degree, ignored, stop)


def _binary_vertices(buf, fmt: str, elements, start: int) -> Optional[np.ndarray]:
    """The vertex rows of a binary PLY as a structured array viewing ``buf`` (no per-row
    parsing), or None when an element before them has list properties."""
    offset = start
    endian = "<" if fmt == "binary_little_endian" else ">"
    for name, count, props in elements:
        if any(size is None for _, size, _, _ in props):
            return None
        if name == "vertex":
            dtype = np.dtype([(p, endian + code) for p, _, _, code in props])
            return np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
        offset += count * sum(size for _, size, _, _ in props)
    return None


def read_ply(source: Union[str, Path, bytes], max_gaussians: Optional[int] = None
             ) -> tuple[Gaussians, PlyLayout]:
    """A 3DGS PLY (a path or the file's bytes) → (Gaussians float32 on the CPU, PlyLayout).
    Raises FileNotFoundError for a missing path and PlyError (see the module docstring)."""
    from plyfile import PlyData, PlyParseError

    if isinstance(source, (bytes, bytearray, memoryview)):
        buf = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no PLY file at {path}")
        if path.stat().st_size == 0:
            raise _malformed(f"{path} is empty")
        buf = np.memmap(path, dtype=np.uint8, mode="r")    # mapped, read only where used
    head = bytes(buf[:MAX_HEADER_BYTES])
    layout = inspect_ply(head, len(buf), max_gaussians)    # before anything is allocated
    fmt, elements, start = _parse_header(head)
    v = None if fmt == "ascii" else _binary_vertices(buf, fmt, elements, start)
    if v is None:                        # ascii, or list elements first: plyfile, row by row
        try:
            v = PlyData.read(io.BytesIO(bytes(buf)))["vertex"].data
        except (PlyParseError, ValueError, UnicodeDecodeError, IndexError, KeyError) as err:
            raise _malformed(f"the PLY body cannot be read ({type(err).__name__}: "
                             f"{err})") from None

    def col(*names: str) -> torch.Tensor:
        try:
            with np.errstate(all="ignore"):    # NaN/overflow are reported just below
                arr = np.stack([np.asarray(v[n], dtype=np.float64) for n in names], axis=-1)
                bad = ~np.isfinite(arr.astype(np.float32))   # beyond float32 counts as Inf
        except (TypeError, ValueError) as err:
            raise PlyError(f"properties {', '.join(names)} are not numbers ({err})",
                           "invalid") from None
        if bad.any():
            worst = names[int(bad.sum(0).argmax())]
            raise PlyError(f"{int(bad.any(1).sum()):,} Gaussians have NaN/Inf values (e.g. in "
                           f"'{worst}'); remove them or re-export the scene", "invalid")
        return torch.from_numpy(arr)

    quats = col("rot_0", "rot_1", "rot_2", "rot_3")
    zero = quats.norm(dim=-1) < 1e-12
    quats[zero] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=quats.dtype)
    g = Gaussians(means=col("x", "y", "z"),
                  # clamped so that float32 holds them (exp(±100) would be 0 or inf)
                  scales=torch.exp(col("scale_0", "scale_1", "scale_2")).clamp(1e-30, 1e30),
                  quats=quats,
                  opacities=torch.sigmoid(col("opacity")[:, 0]),
                  colors=(col("f_dc_0", "f_dc_1", "f_dc_2") * SH_C0 + 0.5).clamp(0.0, 1.0))
    return g.to(dtype=torch.float32), layout


def write_ply(gaussians: Gaussians, path: Union[str, Path]) -> Path:
    """Write the standard 3DGS PLY (binary little-endian, float32 ``PLY_FIELDS``, SH degree
    0): log scales, logit opacity (clamped to [1e-6, 1 − 1e-6]), SH DC colour, zero normals,
    quaternions as stored; ``covs`` are factorised first."""
    from plyfile import PlyData, PlyElement

    g = gaussians.factorized().detach().to("cpu", torch.float64)
    if bool((g.scales <= 0).any()):
        raise ValueError("save_ply: scales must be > 0 m (they are stored as log scales)")
    op = g.opacities.clamp(_OPACITY_EPS, 1 - _OPACITY_EPS)
    zeros = torch.zeros(len(g), dtype=torch.float64)
    cols = {"x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2],
            "nx": zeros, "ny": zeros, "nz": zeros, "opacity": torch.log(op) - torch.log1p(-op)}
    for i in range(3):
        cols[f"f_dc_{i}"] = (g.colors[:, i] - 0.5) / SH_C0
        cols[f"scale_{i}"] = torch.log(g.scales[:, i])
    for i in range(4):
        cols[f"rot_{i}"] = g.quats[:, i]
    arr = np.empty(len(g), dtype=[(f, "f4") for f in PLY_FIELDS])
    for f in PLY_FIELDS:
        arr[f] = cols[f].numpy().astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(arr, "vertex")], byte_order="<").write(str(path))
    return path
