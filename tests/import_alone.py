"""Import each given project module alone, each in its own fresh process.

    python tests/import_alone.py physgm.cli learner.cli ...    (prints failures, exit 1)

A circular import shows only when a module is imported *first*, so each module gets a
process in which no project module has been imported yet. To keep that affordable (about a
hundred modules, most of them behind torch), this process first imports the heavy
third-party libraries the project uses — never a project module — and then forks once per
module: each child starts with no project module loaded, imports its one module and exits.
"""
from __future__ import annotations

import importlib
import os
import sys
import traceback

PROJECT = ("physgm", "runtime", "pretrain", "actors", "reward", "learner", "serving",
           "pipeline", "cluster")
# third-party libraries imported before forking (their import time dominates)
PRELOAD = ("numpy", "torch", "typer", "pydantic", "yaml", "zarr", "warp", "ray", "ray.serve",
           "ray.train", "mlflow", "fastapi", "PIL", "imageio", "cv2")


def _child(module: str, fd: int) -> None:
    assert not [m for m in sys.modules if m.split(".")[0] in PROJECT], "project module preloaded"
    try:
        importlib.import_module(module)
        code = 0
    except BaseException:  # noqa: BLE001 - report whatever the import raised
        os.write(fd, traceback.format_exc().strip().splitlines()[-1].encode()[:500])
        code = 1
    os._exit(code)


def main(modules: list[str]) -> int:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    failures = []
    for module in modules:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _child(module, write)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        message = os.read(read, 1000).decode(errors="replace")
        os.close(read)
        if os.waitstatus_to_exitcode(status) != 0:
            failures.append(f"{module}: {message or 'exit status ' + str(status)}")
    for line in failures:
        print(line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
