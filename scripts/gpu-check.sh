#!/usr/bin/env bash
# Every GPU check in one go, for the first time a GPU machine is at hand; about 6 to 9 minutes on one GPU:
#   (a) the GPU, onnxruntime's providers, and the provider line the consumer would log for the model;
#   (b) the pipeline bench (bench/bench_pipeline.py): the fast stand-in and the model (fp32 and fp16), short runs;
#   (c) parity and speed (bench/gpu_parity.py): CPU fp32 vs CUDA fp32 vs CUDA fp16 (+ TensorRT with --tensorrt).
# Everything goes to $OUT when set (the device tool's folder), else bench/results/gpu-check-<UTC time>/: the log of
# the whole run, the bench's and the parity's JSON. It stops at once, saying why, where there is no usable GPU.
#
#   scripts/gpu-check.sh [--tensorrt] [MODEL.onnx]   # no model: train the default one for a minute (needs torch)
#   scripts/gpu-check.sh --cpu-only [MODEL.onnx]     # the same steps on the CPU, small: checks the script itself
#
# PYTHON picks the interpreter (default: .venv/bin/python, else python3); it needs onnxruntime-gpu.
set -uo pipefail
cd "$(dirname "$0")/.."

cpu_only=0 tensorrt=0 model=""
for arg in "$@"; do
    case "$arg" in
        --cpu-only) cpu_only=1 ;;
        --tensorrt) tensorrt=1 ;;
        -*) echo "usage: scripts/gpu-check.sh [--cpu-only] [--tensorrt] [MODEL.onnx]" >&2; exit 64 ;;
        *) model=$arg ;;
    esac
done
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
results=${OUT:-bench/results/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$results"
exec > >(tee -a "$results/gpu-check.log") 2>&1
work=$(mktemp -d "${TMPDIR:-/tmp}/lg-gpu-check.XXXXXX")
failed=()

say() { printf '\n== gpu-check: %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }
stop() { printf 'gpu-check: %s\n' "$*"; exit 2; }
# step NAME SECONDS COMMAND...: run it within its share of the 10 minutes; a failure is recorded and the rest go on
step() {
    local name=$1 seconds=$2
    shift 2
    say "$name"
    timeout --kill-after=10 "$seconds" "$@"
    local rc=$?
    [ $rc -eq 0 ] || { failed+=("$name (exit $rc$([ $rc -eq 124 ] && echo ", over ${seconds}s"))"); echo "-> failed"; }
}

# (a) fail fast: a driver, a GPU, a CUDA build of onnxruntime, and a session that really runs on CUDA
say "GPU and providers"
if [ $cpu_only -eq 0 ]; then
    command -v nvidia-smi >/dev/null || stop "no nvidia-smi: no NVIDIA driver here (no GPU, or a container without one)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || stop "nvidia-smi sees no GPU"
fi
"$python" -c "import onnx, onnxruntime, pipeline.inference, training.export.half" ||
    stop "$python lacks LineGuard's dependencies (scripts/install.sh dev makes .venv; PYTHON=... picks another)"
CPU_ONLY=$cpu_only "$python" - <<'EOF' || stop "onnxruntime cannot score on this GPU (above)"
import os, sys
import onnx, onnxruntime as ort
from onnx import TensorProto, helper
sys.path.insert(0, ".")
from pipeline.inference import CUDA, cuda_fallback_reason, open_session, tensorrt_missing

print(f"python {sys.version.split()[0]}, onnxruntime {ort.__version__} ({ort.get_device()})")
print(f"providers in this build: {ort.get_available_providers()}")
print(f"TensorRT libraries: {tensorrt_missing() or 'found'}")
if os.environ["CPU_ONLY"] == "1":
    sys.exit(0)
if CUDA not in ort.get_available_providers():
    sys.exit("this onnxruntime has no CUDA provider: the GPU build is onnxruntime-gpu (scripts/install.sh dev)")
graph = helper.make_graph(
    [helper.make_node("Relu", ["x"], ["y"])], "probe",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
)
probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
session = open_session(probe.SerializeToString(), "probe", prefer_gpu=True)
if session.get_providers()[0] != CUDA:
    sys.exit(f"the CUDA provider does not load: {cuda_fallback_reason()}")
print("a CUDA session opens")
EOF

if [ -z "$model" ]; then
    say "training the default model for 1 minute"
    model=$work/default.onnx
    timeout 240 "$python" -c "
import sys; from pathlib import Path; sys.path[:0] = ['.', 'bench']
from gpu_parity import default_model
print(default_model(Path(sys.argv[1]), 1.0))" "$work" || stop "no model given, and training the default one failed"
fi
fp16=$work/$(basename "${model%.onnx}").fp16.onnx
"$python" -c "
import sys, onnx; sys.path.insert(0, '.')
from training.export.half import to_float16
onnx.save(to_float16(onnx.load(sys.argv[1])), sys.argv[2])" "$model" "$fp16" || stop "the fp16 conversion failed"

trt_env=()
[ $tensorrt -eq 1 ] && trt_env=(LINEGUARD_TENSORRT=true "LINEGUARD_TENSORRT_CACHE_DIR=$work/trt-cache")
say "the provider line the consumer logs"
for file in "$model" "$fp16"; do
    env "${trt_env[@]}" "$python" -c "
import logging, sys; sys.path.insert(0, '.')
logging.basicConfig(level=logging.INFO, format='%(message)s')
from pipeline.inference import image_loader
from pipeline.settings import load_settings
settings = load_settings()
image_loader(settings)(sys.argv[1], settings.prefer_gpu)" "$file" || failed+=("provider line for $file")
done

# (b) the pipeline bench, short runs (frames 256x256; the stand-in, the model and its fp16 file side by side)
if [ $cpu_only -eq 1 ]; then
    bench_args=(--frames 200 --naive-frames 20 --latency-seconds 2)
else
    bench_args=(--frames 3000 --naive-frames 200 --latency-seconds 5)
fi
step "pipeline bench" 300 "$python" bench/bench_pipeline.py --stand-in --model "$model" --model "$fp16" \
    "${bench_args[@]}" --out "$results"

# (c) parity and speed: FP32 vs FP16 vs the CPU
parity_args=(--model "$model" --out "$results")
if [ $cpu_only -eq 1 ]; then
    parity_args+=(--cpu-only --frames 64 --batch-sizes 1,8)
else
    parity_args+=(--frames 512 --batch-sizes 1,8,32,64)
    [ $tensorrt -eq 1 ] && parity_args+=(--tensorrt)
fi
step "parity FP32 vs FP16 vs CPU" 240 "$python" bench/gpu_parity.py "${parity_args[@]}"

rm -rf "$work"
say "done: results in $results"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'gpu-check: failed: %s\n' "${failed[@]}"
    exit 1
fi
