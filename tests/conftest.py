"""Shared test settings: CPU only, one BLAS/OpenMP thread per process (tests run beside Ray
workers on 2 cores, where oversubscribed torch threads are ~50× slower), no telemetry; and
MLflow's tracking URI kept to the test (or module) that set it."""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

# MLflow's process-wide URIs: ``mlflow.set_tracking_uri`` (runtime.tracking and
# serving.mlflow_model call it) sets a module global that wins over MLFLOW_TRACKING_URI and
# also exports the variable; ``set_registry_uri`` likewise. Left set, a later test that
# names its store by the variable would read and write the earlier test's store.
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def mlflow_uris() -> tuple:
    """(tracking global, registry global, (the MLFLOW_ENV variables)); the globals are None
    while MLflow is not imported (then nothing can have set them)."""
    env = tuple(os.environ.get(k) for k in MLFLOW_ENV)
    if "mlflow" not in sys.modules:
        return None, None, env
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    return tracking._tracking_uri, registry._registry_uri, env


def set_mlflow_uris(state: tuple) -> None:
    """Put MLflow's URIs and their variables as ``state`` (from ``mlflow_uris``) says."""
    tracking_uri, registry_uri, env = state
    if "mlflow" in sys.modules:
        import mlflow
        from mlflow.tracking._model_registry import utils as registry

        mlflow.set_tracking_uri(tracking_uri)  # None too: also resets the tracer's URI
        registry._registry_uri = registry_uri
    for key, value in zip(MLFLOW_ENV, env):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True, scope="module")
def _mlflow_uris_kept_to_module():
    """A module-scoped fixture that sets MLflow's URI (e.g. by running a stage) leaks it no
    further than its module."""
    state = mlflow_uris()
    yield
    set_mlflow_uris(state)


@pytest.fixture(autouse=True)
def _mlflow_uris_kept_to_test():
    """A test that sets MLflow's URI leaks it to no later test."""
    state = mlflow_uris()
    yield
    set_mlflow_uris(state)


@pytest.fixture
def own_mlflow_uri(tmp_path):
    """This test's own MLflow store (sqlite under ``tmp_path``), named as a user names it:
    MLFLOW_TRACKING_URI, with MLflow's process-wide URIs cleared (a module fixture may have
    set them); all put back afterwards. Returns the URI."""
    import mlflow  # noqa: F401 - its globals exist from here on, to be saved and restored

    state = mlflow_uris()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    set_mlflow_uris((None, None, (uri, None)))
    yield uri
    set_mlflow_uris(state)
