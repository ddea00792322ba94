#!/usr/bin/env bash
# Node setup for cluster/ray_cluster.yaml. Every step is idempotent: `ray up` re-runs it.
#
#   setup.sh install ENV_FILE   every node: Python 3.11 venv at ~/physgm/.venv with the
#                               project at PHYSGM_COMMIT, checkpoints in ~/physgm-checkpoints
#                               (linked as ~/physgm/checkpoints), runs/ on shared storage
#   setup.sh head ENV_FILE      head only: the autoscaler's AWS client (boto3)
#   setup.sh mlflow ENV_FILE    head only: (re)start the MLflow server on PHYSGM_MLFLOW_HOST
#
# ENV_FILE is cluster/cluster.env (see the comments there).
set -euo pipefail

usage() { echo "usage: $0 {install|head|mlflow} ENV_FILE" >&2; exit 2; }
[ $# -eq 2 ] || usage
CMD=$1
ENV_FILE=$2
[ -f "$ENV_FILE" ] || { echo "error: $ENV_FILE not found (file_mounts in ray_cluster.yaml copy cluster/cluster.env)" >&2; exit 2; }
# shellcheck disable=SC1090
source "$ENV_FILE"

ROOT=$HOME/physgm
CKPT=$HOME/physgm-checkpoints
VENV=$ROOT/.venv
SAM2_URL=https://dl.fbaipublicfiles.com/segment_anything_2/092824
COTRACKER_URL=https://huggingface.co/facebook/cotracker3/resolve/main
LPIPS_URL=https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth
VGG16_URL=https://download.pytorch.org/models/vgg16-397923af.pth

die() { echo "error: $*" >&2; exit 1; }
log() { echo "[physgm setup] $*"; }

# Download URL/URI $1 to $2 unless $2 already exists (atomically: .part, then rename).
fetch() {
  local src=$1 dst=$2
  if [ -s "$dst" ]; then log "have $(basename "$dst")"; return 0; fi
  log "downloading $(basename "$dst") from $src"
  case "$src" in
    s3://*) command -v aws >/dev/null || die "the AWS CLI is needed to read $src"
            aws s3 cp --only-show-errors "$src" "$dst.part" ;;
    http://*|https://*) curl -fL --retry 5 --retry-delay 5 -sS -o "$dst.part" "$src" ;;
    *) [ -f "$src" ] || die "$src does not exist on $(hostname)"
       cp "$src" "$dst.part" ;;
  esac
  mv "$dst.part" "$dst"
}

python311() {
  if command -v python3.11 >/dev/null; then command -v python3.11; return; fi
  if [ ! -x "$HOME/.local/bin/uv" ]; then
    curl -LsSf https://astral.sh/uv/install.sh | env UV_NO_MODIFY_PATH=1 sh >/dev/null
  fi
  "$HOME/.local/bin/uv" python install 3.11 >/dev/null
  "$HOME/.local/bin/uv" python find 3.11
}

install_code() {
  [ -n "${PHYSGM_REPO:-}" ] || die "set PHYSGM_REPO in cluster/cluster.env (a URL the nodes can clone, or a bundle)"
  [[ "${PHYSGM_COMMIT:-}" =~ ^[0-9a-f]{40}$ ]] || die "set PHYSGM_COMMIT in cluster/cluster.env to a full 40-character commit SHA (got '${PHYSGM_COMMIT:-}')"
  local repo=${PHYSGM_REPO/#\~/$HOME}
  if [ ! -d "$ROOT/.git" ]; then
    git clone --quiet "$repo" "$ROOT"
  fi
  git -C "$ROOT" remote set-url origin "$repo"
  git -C "$ROOT" cat-file -e "$PHYSGM_COMMIT^{commit}" 2>/dev/null || git -C "$ROOT" fetch --quiet origin
  git -C "$ROOT" checkout --quiet --detach "$PHYSGM_COMMIT"
  [ "$(git -C "$ROOT" rev-parse HEAD)" = "$PHYSGM_COMMIT" ] || die "checkout of $PHYSGM_COMMIT failed"
  local stamp=$VENV/.installed-$PHYSGM_COMMIT
  if [ ! -f "$stamp" ]; then
    log "installing the project at $PHYSGM_COMMIT"
    (cd "$ROOT" && PYTHON=$(python311) bash scripts/install.sh)
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}

install_checkpoints() {
  mkdir -p "$CKPT"
  fetch "$SAM2_URL/$PHYSGM_SAM2_CHECKPOINT" "$CKPT/$PHYSGM_SAM2_CHECKPOINT"
  fetch "$COTRACKER_URL/$PHYSGM_COTRACKER_CHECKPOINT" "$CKPT/$PHYSGM_COTRACKER_CHECKPOINT"
  fetch "$LPIPS_URL" "$CKPT/lpips_vgg.pth"
  fetch "$VGG16_URL" "$CKPT/$(basename "$VGG16_URL")"
  local dino=$CKPT/$PHYSGM_DINOV3_FILE
  if [ ! -s "$dino" ]; then
    # Workers get the file from the head (cluster_synced_files) before this runs.
    [ -n "${PHYSGM_DINOV3_URI:-}" ] || die "no $dino: set PHYSGM_DINOV3_URI in cluster/cluster.env (the DINOv3 weights are gated: s3://..., https://... or a path on the head)"
    fetch "${PHYSGM_DINOV3_URI/#\~/$HOME}" "$dino"
  fi
  if [ -n "${PHYSGM_DINOV3_SHA256:-}" ]; then
    echo "$PHYSGM_DINOV3_SHA256  $dino" | sha256sum --check --quiet - || die "$dino does not match PHYSGM_DINOV3_SHA256"
  fi
  ln -sfn "$CKPT" "$ROOT/checkpoints"
}

install_storage() {
  local runs=$ROOT/runs
  if [ -n "${PHYSGM_EFS:-}" ]; then
    if ! mountpoint -q /mnt/physgm; then
      command -v mount.nfs4 >/dev/null || sudo apt-get install -y -q nfs-common >/dev/null
      sudo mkdir -p /mnt/physgm
      sudo mount -t nfs4 -o nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2 \
        "$PHYSGM_EFS:/" /mnt/physgm
      sudo chown "$(id -u):$(id -g)" /mnt/physgm
    fi
    mkdir -p /mnt/physgm/runs
    if [ -d "$runs" ] && [ ! -L "$runs" ]; then
      [ -z "$(ls -A "$runs")" ] || die "$runs holds files; move them to /mnt/physgm/runs first"
      rmdir "$runs"
    fi
    ln -sfn /mnt/physgm/runs "$runs"
  else
    mkdir -p "$runs"
  fi
}

start_mlflow() {
  local pidfile=$HOME/.physgm-mlflow.pid host=${PHYSGM_MLFLOW_HOST:-127.0.0.1} port=${PHYSGM_MLFLOW_PORT:-5000}
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"   # the server this script started last time
    sleep 2
  fi
  mkdir -p "$ROOT/runs/mlartifacts"
  cd "$ROOT"
  MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false nohup \
    "$VENV/bin/mlflow" server --host "$host" --port "$port" \
    --backend-store-uri "sqlite:///$ROOT/runs/mlflow.db" \
    --artifacts-destination "$ROOT/runs/mlartifacts" </dev/null >"$HOME/mlflow.log" 2>&1 &
  echo $! >"$pidfile"
  log "MLflow server on $host:$port (log: ~/mlflow.log)"
}

case "$CMD" in
  install) install_code; install_storage; install_checkpoints
           "$VENV/bin/python" -c "import physgm, ray; print('[physgm setup] ok: ray', ray.__version__)" ;;
  head) "$VENV/bin/python" -m pip install --disable-pip-version-check -q "boto3>=1.34" ;;
  mlflow) start_mlflow ;;
  *) usage ;;
esac
