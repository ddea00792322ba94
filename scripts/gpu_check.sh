#!/usr/bin/env bash
# GPU readiness of physgm on a lent GPU machine (the device tool's H200), in under 8 minutes:
#
#   bash scripts/gpu_check.sh [WHEELS]        # prints one JSON line (scripts/gpu_check.py)
#
# The machine's image has Python 3.12 and a CUDA build of torch but none of warp-lang,
# gsplat, deepspeed, ray or the smaller pure-Python needs: WHEELS (default .whl, a folder
# git ignores) holds them as Python 3.12 manylinux wheels, fetched here by
# scripts/gpu_wheels.sh. A wheel too large for one call's 64 MiB travels split
# (NAME.whl.part-aa, NAME.whl.part-ab, …) over consecutive calls into that folder while the
# machine stays warm; the parts are joined here first.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:-.whl}
SITE=/tmp/physgm-site
for first in "$WHEELS"/*.whl.part-aa; do
  [ -e "$first" ] || continue
  cat "${first%.part-aa}".part-* > "${first%.part-aa}"
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "$WHEELS"/*.whl
export PYTHONPATH="$SITE:$PWD" RAY_AUTH_MODE=disabled MLFLOW_DISABLE_TELEMETRY=true \
  PYTHONUNBUFFERED=1 DS_ACCELERATOR=cuda
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
timeout 470 python3 scripts/gpu_check.py --budget-s 400
