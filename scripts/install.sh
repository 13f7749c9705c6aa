#!/usr/bin/env bash
# The one install recipe: scripts/dev.sh (development venv), deploy/Dockerfile.line and deploy/Dockerfile.train all
# install through it, with the exact versions of deploy/constraints.txt (tests/deploy checks that they do); the line
# image's CUDA and cuDNN wheels also with deploy/cuda-wheels.txt.
#   PIP=.venv/bin/pip scripts/install.sh dev|line|review|train
#     dev     torch first, then the project editable with the train, dev, review and line extras (the GPU runtime)
#     line    the runtime on onnxruntime-gpu + PostgreSQL driver + the CUDA 13 / cuDNN 9 wheels it names (no torch)
#     review  the runtime on the CPU onnxruntime + PostgreSQL driver + the review page (no CUDA libraries, no torch)
#     train   torch first, then the runtime on the CPU onnxruntime + PostgreSQL driver + the training package
#
# onnxruntime (CPU) and onnxruntime-gpu are two distributions of one `onnxruntime` module: installed together, the
# second writes its files over the first's, and uninstalling either one leaves the other broken. The project depends
# on the CPU build (what `pip install lineguard` gives); its `line` extra adds the GPU build, which pip would install
# beside it. So the GPU installs (the line image, and the development venv, which runs what the line image runs: the
# GPU build falls back to the CPU provider on a machine without CUDA) first install the project's requirements less
# the CPU build, then the project itself with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-pip}
PYTHON=${PYTHON:-python3}
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

without_cpu_onnxruntime() {  # pyproject.toml's requirements with the extras named in $1 (a,b,...), less onnxruntime
    "$PYTHON" - "$1" <<'PY'
import re
import sys
import tomllib

with open("pyproject.toml", "rb") as file:
    project = tomllib.load(file)["project"]
requirements = list(project["dependencies"])
for extra in filter(None, sys.argv[1].split(",")):
    requirements += project["optional-dependencies"][extra]
for requirement in requirements:
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    if re.sub(r"[-_.]+", "-", name).lower() != "onnxruntime":
        print(requirement)
PY
}

gpu_install() {  # gpu_install EXTRAS PROJECT [MORE...]: the project on onnxruntime-gpu, without the CPU onnxruntime
    local requirements
    requirements=$(without_cpu_onnxruntime "$1")
    readarray -t requirements <<<"$requirements"
    pip_install "${requirements[@]}" "${@:3}"
    pip_install --no-deps "$2"
    # A venv that had the CPU build (`pip install -e .` by hand): its files are the module's files too, so it goes and
    # the GPU build is laid again over the holes.
    if $PIP show --quiet onnxruntime >/dev/null 2>&1; then
        $PIP uninstall --quiet --yes onnxruntime
        pip_install --force-reinstall --no-deps "$(pin onnxruntime-gpu)"
    fi
}

case "${1:-}" in
    dev) pip_install "$(pin torch)"; gpu_install train,dev,review,line --editable=. ;;
    line) gpu_install line,postgres . --constraint deploy/cuda-wheels.txt "onnxruntime-gpu[cuda,cudnn]" ;;
    review) pip_install '.[postgres,review]' ;;
    train) pip_install "$(pin torch)"; pip_install '.[train,postgres]' ;;
    *) echo "usage: scripts/install.sh dev|line|review|train" >&2; exit 2 ;;
esac
