"""benchmarks/bench_serve.py helpers (the benchmark itself runs a Serve deployment:
`physgm bench serve`)."""
import importlib.util
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_serve.py"
_spec = importlib.util.spec_from_file_location("bench_serve", _path)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_sim_sizes_parse_and_reject():
    assert bench._parse_sim("32:16:5000:2:64,64:25:40000:4:128") == [
        (32, 16, 5000, 2, 64), (64, 25, 40000, 4, 128)]
    for bad in ("32:16:5000", "a:b:c:d:e", "32:16:5000:2:64:1"):
        with pytest.raises(SystemExit, match="GRID:FRAMES"):
            bench._parse_sim(bad)


def test_percentiles_and_mean_batch():
    xs = list(range(1, 101))
    assert bench._percentile(xs, 50) in (50, 51)
    assert bench._percentile(xs, 95) in (95, 96)
    assert bench._percentile([3.0], 95) == 3.0
    before = {1: 4, 2: 1}
    after = {1: 6, 2: 1, 4: 2}                   # 2 new singles and 2 new batches of 4
    assert bench._mean_batch(before, after) == pytest.approx((2 * 1 + 2 * 4) / 4)
    assert bench._mean_batch(after, after) == 0.0


def test_views_are_decodable_pngs():
    from serving.inputs import Limits, decode_image

    files = bench._views(3, size=64)
    assert len(files) == 3 and all(f[0] == "images" for f in files)
    img = decode_image(files[0][1][1], "v0", Limits())
    assert img.shape == (64, 64, 3) and img.max() > 100 and img[0, 0].sum() == 0


def test_model_time_per_request():
    before = {"counters": {"requests": 10, "predict_s": 1.0}}
    after = {"counters": {"requests": 30, "predict_s": 1.5}}
    assert bench._model_ms(before, after) == pytest.approx(25.0)
    assert bench._model_ms(after, after) == 0.0
