"""The driver's progress bar of a Ray Train run, read from what rank 0 logs to MLflow.

The training workers run in other processes (other machines on a cluster) and their
console output goes to the Ray logs, not to the driver's terminal; rank 0 logs
``pretrain/loss`` every ``pretrain.log_every`` steps to the run's MLflow store, so the
driver polls that metric's history and moves a bar on its own terminal."""
from __future__ import annotations

import threading
from contextlib import contextmanager

from physgm.config import RunConfig
from runtime import tracking


@contextmanager
def watch_training(cfg: RunConfig, run_id: str, total: int, start: int, show: bool = True,
                   metric: str = "pretrain/loss", every_s: float = 2.0):
    """Show a ``tqdm`` bar of steps ``start..total`` while the body runs (nothing when
    ``show`` is False); the bar stops with the body."""
    if not show:
        yield
        return
    from tqdm import tqdm

    bar = tqdm(desc="pretrain", total=total, initial=start, unit="step", dynamic_ncols=True)
    stop = threading.Event()

    def poll() -> None:
        client = tracking.client(cfg)
        while not stop.wait(every_s):
            try:
                history = client.get_metric_history(run_id, metric)
            except Exception:  # noqa: BLE001 - the store may be busy: try again next time
                continue
            if history:
                last = max(history, key=lambda m: m.step)
                bar.update(max(0, last.step - bar.n))
                bar.set_description(f"pretrain loss {last.value:.4f}")

    thread = threading.Thread(target=poll, name="pretrain-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s + 5)
        bar.close()
