"""torch.distributed / DeepSpeed helpers shared by the pretraining workers and the DPO
learner: free ports, the one-process group, the DeepSpeed import, full weights out of a
(possibly ZeRO-3 partitioned) engine, and RNG state capture for exact resumption."""
from __future__ import annotations

import os
import random
import socket
from typing import Optional

import numpy as np
import torch


def free_port(preferred: Optional[int] = None, host: str = "127.0.0.1") -> int:
    """``preferred`` if it can be bound on ``host`` now, else a port the OS picks."""
    with socket.socket() as s:
        if preferred:
            try:
                s.bind((host, preferred))
                return preferred
            except OSError:
                pass
        s.bind((host, 0))
        return s.getsockname()[1]


def import_deepspeed(gpu: bool):
    """Import DeepSpeed, selecting its CPU accelerator when no GPU is used (it otherwise
    probes for CUDA and fails on a CPU-only machine)."""
    if not gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed

    return deepspeed


def init_process_group(gpu: bool) -> None:
    """Make sure a torch.distributed group exists; alone, a world of one.

    Ray Train's workers already have their group (nothing happens). A lone process gets a
    fresh rendezvous port, never one inherited from another group, and the address and port
    are removed again afterwards so that later groups or subprocesses do not reuse them.
    RANK/LOCAL_RANK/WORLD_SIZE stay set: ``deepspeed.initialize`` reads LOCAL_RANK later.
    ``LOCAL_SIZE`` is dropped: on CPU it selects a shared-memory transport that leaks."""
    deepspeed = import_deepspeed(gpu)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    saved = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT")}
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)
    os.environ.pop("LOCAL_SIZE", None)
    try:
        deepspeed.init_distributed(dist_backend="nccl" if gpu else "gloo", verbose=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def full_state_dict(engine) -> dict:
    """The module's weights as CPU fp32 tensors, whole even under ZeRO-3.

    ZeRO-3 partitions every parameter across ranks (each rank's ``state_dict()`` holds empty
    placeholders), so the parameters are gathered first; collective under ZeRO-3: call on
    every rank of the engine."""
    module = engine.module
    partitioned = getattr(engine, "zero_optimization_partition_weights", lambda: False)()
    if not partitioned:
        return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items()}
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        return {k: v.detach().float().cpu().clone() for k, v in module.state_dict().items()}


def capture_rng() -> dict:
    """This process's RNG states as plain data + tensors (safe for weights_only loading)."""
    version, state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    out = {"python": [version, list(state), gauss],
           "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
                     int(np_has_gauss), float(np_gauss)],
           "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(states: dict) -> None:
    """Inverse of ``capture_rng``."""
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
