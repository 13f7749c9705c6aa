#!/usr/bin/env bash
# The one install recipe: scripts/dev.sh (development venv), deploy/Dockerfile.line and deploy/Dockerfile.train all
# install through it, with the exact versions of deploy/constraints.txt (tests/deploy checks that they do); the line
# image's CUDA and cuDNN wheels also with deploy/cuda-wheels.txt.
#   PIP=.venv/bin/pip scripts/install.sh dev|line|review|train
#     dev     torch first, then the project editable with the train, dev and review extras
#     line    the runtime + PostgreSQL driver + the CUDA 13 / cuDNN 9 wheels onnxruntime-gpu names (no torch)
#     review  the runtime + PostgreSQL driver + the review page (no CUDA libraries, no torch)
#     train   torch first, then the runtime + PostgreSQL driver + the training package
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-pip}
CONSTRAINTS=deploy/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK=1

pin() {  # the exact requirement of one package in the constraints file, e.g. "torch==2.13.0"
    local line
    line=$(grep -E "^$1==" "$CONSTRAINTS") || { echo "error: no $1== line in $CONSTRAINTS" >&2; exit 1; }
    echo "$line"
}

pip_install() {
    $PIP install --quiet --constraint "$CONSTRAINTS" "$@"
}

case "${1:-}" in
    dev) pip_install "$(pin torch)"; pip_install -e '.[train,dev,review]' ;;
    line) pip_install --constraint deploy/cuda-wheels.txt '.[postgres]' "onnxruntime-gpu[cuda,cudnn]" ;;
    review) pip_install '.[postgres,review]' ;;
    train) pip_install "$(pin torch)"; pip_install '.[train,postgres]' ;;
    *) echo "usage: scripts/install.sh dev|line|review|train" >&2; exit 2 ;;
esac
