#!/usr/bin/env bash
# Create .venv and install the whole stack with the pinned versions of constraints.txt.
# Called by `make` only when pyproject.toml, constraints.txt or this file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q -c constraints.txt)

# 1. torch first, pinned (RECIPES: an unpinned torch pulls a multi-GB newer build).
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1 setuptools wheel
# 2. Packages that import torch in their build: no build isolation, no CUDA build.
SAM2_BUILD_CUDA=0 "${PIP[@]}" --no-build-isolation sam2==1.1.0
DS_BUILD_OPS=0 "${PIP[@]}" --no-build-isolation deepspeed==0.19.8
# 3. The project and everything else.
"${PIP[@]}" -e ".[dev]"
# 4. The official CoTracker3 package ships only inside the autosegmentor wheel, whose own
#    requirements would downgrade the stack: take just its `cotracker/` package.
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -f "$SITE/cotracker/predictor.py" ]; then
  TMP=$(mktemp -d)
  .venv/bin/python -m pip download --disable-pip-version-check -q --no-deps autosegmentor==3.0.1 -d "$TMP"
  .venv/bin/python - "$TMP" "$SITE" <<'PYEOF'
import pathlib, sys, zipfile
tmp, site = map(pathlib.Path, sys.argv[1:])
whl = next(tmp.glob("autosegmentor-*.whl"))
with zipfile.ZipFile(whl) as z:
    members = [m for m in z.namelist() if m.startswith("cotracker/")]
    z.extractall(site, members)
print(f"cotracker: {len(members)} files from {whl.name}")
PYEOF
  rm -rf "$TMP"
fi
.venv/bin/python -c "import torch, warp, ray, deepspeed, sam2, cotracker.predictor, zarr, mlflow, gsplat, physgm; print('install ok: torch', torch.__version__)"
