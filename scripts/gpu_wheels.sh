#!/usr/bin/env bash
# Fetch the Python 3.12 manylinux wheels scripts/gpu_check.sh installs on the GPU machine
# (whose image has torch but not the rest of physgm's stack), pinned as constraints.txt
# pins them, into .whl/ (git-ignored); wheels over 60 MiB are split into parts for the
# device tool's 64 MiB per call.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.whl}
mkdir -p "$OUT"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
pin() { grep -i "^$1==" constraints.txt | head -1; }
PKGS=(warp-lang gsplat deepspeed ray pydantic pydantic-core typer rich click zarr numcodecs
      pyyaml plyfile imageio av hjson py-cpuinfo msgpack ninja annotated-types
      typing-inspection jaxtyping donfig crc32c)
for name in "${PKGS[@]}"; do
  spec=$(pin "$name"); spec=${spec:-$name}
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$OUT" "$spec" \
    || echo "warning: no wheel for $spec" >&2
done
for whl in "$OUT"/*.whl; do
  if [ "$(stat -c %s "$whl")" -gt $((60 * 1024 * 1024)) ]; then
    split -b 55M -a 2 "$whl" "$whl.part-" && rm "$whl"
  fi
done
du -sh "$OUT"
