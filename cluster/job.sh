#!/usr/bin/env bash
# Run a command inside the installed project on the cluster, with the cluster's settings:
#
#   ray job submit --address http://127.0.0.1:8265 -- \
#       bash ~/physgm-cluster/job.sh physgm pretrain --config configs/paper.yaml
#
# The job driver runs on the head: it logs to the MLflow server there and resolves the
# config's relative paths (checkpoints/, runs/) from ~/physgm, as the Ray workers do.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC1091
source "$HERE/cluster.env"
ROOT=$HOME/physgm
[ -x "$ROOT/.venv/bin/physgm" ] || { echo "error: $ROOT is not installed (see ray up's setup output)" >&2; exit 1; }
cd "$ROOT"
export PATH=$ROOT/.venv/bin:$PATH
export RAY_AUTH_MODE=token
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-http://${PHYSGM_MLFLOW_HOST:-127.0.0.1}:${PHYSGM_MLFLOW_PORT:-5000}}
export MLFLOW_DISABLE_TELEMETRY=true
exec "$@"
