"""Last stage of ``physgm run``: serve the DPO model with Ray Serve, send one prediction
request over HTTP with a held-out scene's views, print the answer, and stop serving."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from physgm.config import RunConfig
from runtime.distributed import free_port


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def held_out_scene(cfg: RunConfig) -> tuple[str, str]:
    """(store path, scene id) of a scene no training saw: the first of the final test store
    (``eval.test_scenes``), else of the data store's test or validation split."""
    from pipeline.run import held_out_config
    from runtime.scenes import scene_split

    test = held_out_config(cfg, "test")
    if test is not None and Path(test.data.path).exists():
        return test.data.path, scene_split(test, "all")[0]
    for split in ("test", "val"):
        try:
            return cfg.data.path, scene_split(cfg, split)[0]
        except ValueError:
            continue
    raise ValueError(f"no held-out scene to send the served model: set eval.test_scenes > 0 "
                     f"or data.test_fraction > 0 ({cfg.data.path} has no test or val split)")


def serve_and_predict(cfg: RunConfig, say: Callable = print) -> dict:
    import requests
    from ray import serve

    from learner.dpo import dpo_checkpoint_path
    from physgm.data.store import open_store, read_scene
    from serving.deploy import start
    from serving.model_source import ModelSource

    ckpt = dpo_checkpoint_path(cfg)
    source = ModelSource("checkpoint", str(ckpt.resolve()), 0, None)
    port = free_port(cfg.serve.port)
    host = "127.0.0.1"
    store, sid = held_out_scene(cfg)
    scene = read_scene(open_store(store, "r"), sid, arrays=("images", "K", "c2w"))
    v = min(2, scene.images.shape[0])
    files = [("images", (f"view{i}.png", _png(scene.images[i]), "image/png")) for i in range(v)]
    cameras = json.dumps([{"K": scene.K[i].tolist(), "c2w": scene.c2w[i].tolist()}
                          for i in range(v)])
    t0 = time.perf_counter()
    start(cfg, source, host=host, port=port)
    try:
        url = f"http://{host}:{port}"
        t1 = time.perf_counter()
        resp = requests.post(f"{url}/v1/predict", files=files, data={"cameras": cameras},
                             timeout=120)
        latency = time.perf_counter() - t1
        resp.raise_for_status()
        answer = resp.json()
    finally:
        serve.shutdown()
    mat = answer["material"]
    e = answer["params"]["E"]
    say(f"  served {ckpt} at {url} (up in {t1 - t0:.1f} s); prediction for held-out scene "
        f"{sid} ({v} views) in {latency * 1000:.0f} ms:")
    say(f"    material {mat['name']} (p={mat['probs'][mat['name']]:.2f}), "
        f"E = {e['mean']:.3g} Pa (log10 {e.get('log10_mean', float('nan')):.2f} ± "
        f"{e.get('log10_std', float('nan')):.2f}), model_version {answer['model_version']}")
    return {"store": store, "scene_id": sid, "prediction": answer, "latency_s": round(latency, 3),
            "startup_s": round(t1 - t0, 1), "url": url}
