"""The floors of the layout (docs/architecture.md), checked on the code itself.

Floors, top to bottom: ``physgm/cli.py`` and ``pipeline/`` may import anything; the stages
(pretrain, actors, reward, learner, serving) import ``runtime/`` and ``physgm/``, and each
other only learner → actors, learner → reward, actors → reward; ``runtime/`` imports
``physgm/`` and libraries; ``physgm/`` imports no stage, no ``runtime/``, no ``pipeline/``
and no Ray. Every module imports on its own, and no source file exceeds 400 lines.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"pretrain", "actors", "reward", "learner", "serving"}
PACKAGES = ("physgm", "runtime", "pretrain", "actors", "reward", "learner", "serving",
            "pipeline", "cluster")
ALLOWED = {("learner", "actors"), ("learner", "reward"), ("actors", "reward")}
MAX_LINES = 400


def modules() -> list[tuple[str, Path]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            out.append((".".join(rel.parts).removesuffix(".__init__"), path))
    return out


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def crossing(module: str, target: str) -> str | None:
    """Why ``module`` may not import the package ``target`` (None: it may)."""
    top = module.split(".")[0]
    if top == target or top == "pipeline" or module == "physgm.cli":
        return None
    if top == "physgm" and target in STAGES | {"runtime", "pipeline", "cluster", "ray"}:
        return f"the core imports {target}"
    if top == "runtime" and target in STAGES | {"pipeline", "cluster"}:
        return f"runtime/ imports {target}"
    if top in STAGES and target in STAGES and (top, target) not in ALLOWED:
        return f"{top} imports {target}"
    if top in STAGES | {"cluster"} and target == "pipeline":
        return f"{top} imports pipeline"
    return None


def test_every_import_respects_the_floors():
    bad = [f"{path.relative_to(ROOT)}:{line}: {why}"
           for module, path in modules() for line, target in imported(path)
           if (why := crossing(module, target))]
    assert not bad, "imports across a floor the wrong way:\n" + "\n".join(bad)


def test_the_layering_rule_itself():
    # the checker must catch what it exists to catch
    assert crossing("physgm.sim.solver", "ray") and crossing("physgm.data.cli", "learner")
    assert crossing("runtime.scenes", "actors") and crossing("reward.cli", "actors")
    assert crossing("pretrain.train", "learner") and crossing("serving.app", "pipeline")
    assert not crossing("learner.evaluate", "reward") and not crossing("actors.sim_actor", "runtime")
    assert not crossing("pipeline.run", "serving") and not crossing("physgm.cli", "learner")


def test_every_module_imports_alone_in_a_fresh_process():
    names = [m for m, _ in modules() if not m.endswith("__main__")]  # that one runs the CLI
    assert len(names) > 80  # the walk found the packages
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "import_alone.py"), *names],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, "modules that fail to import on their own:\n" + r.stdout + r.stderr


def test_no_source_file_is_over_400_lines():
    files = [p for pkg in PACKAGES + ("benchmarks", "tests") for p in (ROOT / pkg).rglob("*.py")]
    long = [f"{p.relative_to(ROOT)} ({n} lines)" for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, "split these files (one job each):\n" + "\n".join(long)
