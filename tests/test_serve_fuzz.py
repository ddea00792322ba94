"""Fuzzing the upload decoders without Ray: truncated and bit-flipped PNG/JPEG views with
junk cameras, and truncated or bit-flipped 3DGS PLYs, only ever give model inputs or an
InputError with a 4xx status."""
import io
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from uploads import ball, ply_bytes

from serving.inputs import InputError, Limits, parse_views

LIMITS = Limits(min_px=32, max_px=256, max_views=4, max_bytes=1 << 20)


def png(w, h, mode="RGB", color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(w, h) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), np.uint8)).save(
        buf, format="JPEG")
    return buf.getvalue()


_SEEDS = [png(48, 40), jpeg(64, 64), png(40, 40, "RGBA", (1, 2, 3, 4)), png(40, 40, "P", 3)]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.sampled_from(_SEEDS), cut=st.integers(0, 400),
       flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
       cameras=st.one_of(st.none(), st.text(max_size=40),
                         st.lists(st.dictionaries(st.sampled_from(["K", "c2w", "x"]),
                                                  st.lists(st.floats(allow_nan=True), max_size=4)),
                                  max_size=2).map(json.dumps)))
def test_mutated_uploads_only_ever_raise_input_errors(seed, cut, flips, cameras):
    """Truncated or bit-flipped PNG/JPEG files and junk cameras: either valid model inputs
    or an InputError with a 4xx status, never another exception."""
    data = bytearray(seed[:max(cut, 1)] if cut < len(seed) else seed)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try:
        mi = parse_views([("v.png", bytes(data))], cameras, LIMITS, 32)
    except InputError as err:
        assert 400 <= err.status < 500 and err.detail
    else:
        assert mi.images.shape == (1, 3, 32, 32) and np.isfinite(mi.plucker).all()


_PLY_SEEDS = [ply_bytes(ball(40), 0), ply_bytes(ball(30), 3), ply_bytes(ball(20), 1, fmt="ascii")]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.sampled_from(_PLY_SEEDS), cut=st.integers(0, 4000),
       flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6))
def test_mutated_ply_uploads_only_ever_raise_input_errors(seed, cut, flips):
    """Truncated or bit-flipped 3DGS PLYs (headers included): Gaussians the views can be
    rendered from, or an InputError with a 4xx status, never another exception."""
    from serving.ply_upload import prediction_views, read_upload

    data = bytearray(seed[:max(cut, 1)] if cut < len(seed) else seed)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try:
        g = read_upload(bytes(data), 1000)
        mi = prediction_views(g, 16, 1)
    except InputError as err:
        assert 400 <= err.status < 500 and err.detail
    else:
        assert mi.images.shape == (1, 3, 16, 16) and np.isfinite(mi.images).all()
