"""Files that tests write themselves: 3DGS PLY scenes in the original layout (written by hand,
not by physgm, so the reader is checked against the format rather than against its own
writer), and cheap uploads whose headers declare huge sizes."""
from __future__ import annotations

import struct
import zlib

import numpy as np

C0 = 0.28209479177387814


def ball(n: int = 600, radius: float = 1.0, centre=(0.0, 0.0, 0.0), seed: int = 0,
         surface: bool = True) -> dict:
    """Raw 3DGS properties of a ball of Gaussians (scene units): ``surface`` puts them on
    the sphere (a captured object's shell), else throughout. Colours from the height."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    r = radius if surface else radius * rng.uniform(0, 1, (n, 1)) ** (1 / 3)
    xyz = d * r + np.asarray(centre)
    rgb = np.stack([0.2 + 0.6 * (d[:, 1] + 1) / 2, np.full(n, 0.4), np.full(n, 0.7)], 1)
    spacing = radius * np.sqrt(4 * np.pi / n)
    q = rng.normal(size=(n, 4))
    return {"xyz": xyz, "f_dc": (rgb - 0.5) / C0, "opacity": np.full(n, 3.0),   # σ(3) = 0.95
            "scale": np.full((n, 3), np.log(spacing)), "rot": q * 2.5}           # unnormalised


def ply_bytes(props: dict, sh_degree: int = 0, extra: dict | None = None, drop=(),
              fmt: str = "binary_little_endian", count: int | None = None,
              normals: bool = True) -> bytes:
    """A 3DGS PLY of ``props`` (``ball``'s keys) with SH degree ``sh_degree`` (f_rest_* random),
    ``extra`` vertex properties {name: (N,) values}, the properties in ``drop`` left out, and
    optionally a header ``count`` that differs from the rows written."""
    n = len(props["xyz"])
    rng = np.random.default_rng(1)
    cols = {"x": props["xyz"][:, 0], "y": props["xyz"][:, 1], "z": props["xyz"][:, 2]}
    if normals:
        cols.update(nx=np.zeros(n), ny=np.zeros(n), nz=np.zeros(n))
    cols.update({f"f_dc_{i}": props["f_dc"][:, i] for i in range(3)})
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    cols.update({f"f_rest_{i}": rng.normal(0, 0.3, n) for i in range(rest)})
    cols["opacity"] = props["opacity"]
    cols.update({f"scale_{i}": props["scale"][:, i] for i in range(3)})
    cols.update({f"rot_{i}": props["rot"][:, i] for i in range(4)})
    cols.update(extra or {})
    names = [k for k in cols if k not in drop]
    header = ["ply", f"format {fmt} 1.0", "comment written by tests/uploads.py",
              f"element vertex {n if count is None else count}"]
    header += [f"property {'double' if name == 'x' else 'float'} {name}" for name in names]
    head = ("\n".join(header) + "\nend_header\n").encode()
    if fmt == "ascii":
        rows = np.stack([cols[k] for k in names], 1)
        return head + "".join(" ".join(f"{v:.9g}" for v in row) + "\n" for row in rows).encode()
    endian = "<" if fmt == "binary_little_endian" else ">"
    arr = np.empty(n, dtype=[(k, endian + ("f8" if k == "x" else "f4")) for k in names])
    for k in names:
        arr[k] = cols[k]
    return head + arr.tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG of a few dozen bytes whose IHDR declares width × height RGB."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + _chunk(b"IEND", b""))


def bomb_jpeg(width: int = 65_000, height: int = 65_000) -> bytes:
    """A JPEG (SOI, APP0, baseline SOF0, a stub scan) declaring width × height pixels."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + \
        b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + \
        b"\0" * 64 + b"\xff\xd9"
