"""Files that tests write themselves: 3DGS PLY scenes in the original layout (written by hand,
not by physgm, so the reader is checked against the format rather than against its own
writer), and cheap uploads whose headers declare huge sizes."""
from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

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


# ------------------------------------------------------------------ HTTP uploads
def view_png(w=64, h=64, seed=0) -> bytes:
    """A w × h PNG: a coloured square on black (an object view)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[h // 4:3 * h // 4, w // 4:3 * w // 4] = np.random.default_rng(seed).integers(
        60, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def view_jpeg(w=64, h=48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 90)).save(buf, format="JPEG")
    return buf.getvalue()


def as_views(*datas):
    """The multipart field list of ``requests``: one ``images`` file per datum."""
    return [("images", (f"v{i}.png", d, "image/png")) for i, d in enumerate(datas)]


def streamed_upload(mb: int):
    """A valid multipart body of ``mb`` MiB sent chunked (no Content-Length)."""
    yield (b'--xyz\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n'
           b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n")
    for _ in range(mb):
        yield b"\0" * 2 ** 20
    yield b"\r\n--xyz--\r\n"


def bad_view_uploads(samples: Path) -> dict:
    """{name: (requests kwargs, *accepted status codes)}: bad uploads for every endpoint."""
    nan_cam = json.loads((samples / "samples.json").read_text())[0]["cameras"][:1]
    nan_cam[0]["c2w"][0][3] = float("nan")
    good_cam = json.loads((samples / "samples.json").read_text())[0]["cameras"][:1]
    return {
        "empty body": ({"data": b"", "headers": {"content-type":
                                                 "multipart/form-data; boundary=xyz"}}, 400, 422),
        "no images field": ({"files": [("other", ("a.png", view_png(), "image/png"))]}, 422),
        "empty file": ({"files": as_views(b"")}, 400),
        "not an image": ({"files": as_views(b"%PDF-1.7 hello")}, 415),
        "text as image": ({"files": [("images", (None, "just text"))]}, 415, 422),
        "truncated PNG": ({"files": as_views(view_png()[:120])}, 400),
        "5 views": ({"files": as_views(*[view_png()] * 5)}, 422),
        "tiny image": ({"files": as_views(view_png(16, 16))}, 422),
        "huge image": ({"files": as_views(view_png(4200, 32))}, 422),
        "PNG declaring 100,000² px": ({"files": as_views(bomb_png())}, 422),    # was a 500
        "JPEG declaring 65,000² px": ({"files": as_views(bomb_jpeg())}, 422),
        "cameras nested 5,000 deep": ({"files": as_views(view_png()),
                                       "data": {"cameras": "[" * 5000}}, 400),
        "unknown model": ({"files": as_views(view_png()), "data": {"model": "gpt"}}, 422),
        "NaN camera": ({"files": as_views(view_png()),
                        "data": {"cameras": json.dumps(nan_cam)}}, 422),
        "camera not JSON": ({"files": as_views(view_png()), "data": {"cameras": "[{"}}, 400),
        "cameras count": ({"files": as_views(view_png(), view_png()),
                           "data": {"cameras": json.dumps(good_cam)}}, 422),
        "wrong content type": ({"json": {"images": ["a.png"]}}, 415),
        "too large": ({"files": as_views(b"\x89PNG\r\n\x1a\n" + os.urandom(21 * 2 ** 20))}, 413),
        "too large, streamed": ({"data": streamed_upload(25), "headers": {
            "content-type": "multipart/form-data; boundary=xyz"}}, 413),   # chunked: no length
        "garbled multipart": ({"data": b"--xyz\r\nnonsense", "headers": {
            "content-type": "multipart/form-data; boundary=xyz"}}, 400, 422),
    }


def bad_ply_uploads(max_gaussians: int) -> dict:
    """{name: (PLY bytes, form fields, status)} for ``POST /v1/simulate`` with ``gaussians``."""
    nan = ball(50)
    nan["xyz"][0, 0] = np.nan
    return {
        "header declares 10^12": (ply_bytes(ball(50), count=10 ** 12), {}, 400),
        "not a PLY": (b"%PDF-1.4 nope", {}, 400),
        "empty": (b"", {}, 400),
        "missing properties": (ply_bytes(ball(50), drop=("opacity", "rot_0")), {}, 422),
        "NaN": (ply_bytes(nan), {}, 422),
        "too many Gaussians": (ply_bytes(ball(max_gaussians + 1)), {}, 413),
        "with cameras": (ply_bytes(ball(50)), {"cameras": "[]"}, 422),
    }
