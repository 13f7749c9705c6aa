#!/bin/sh
# Make the line's first model when none exists: train on a folder of normal images (good parts only) and put the
# model at $LINEGUARD_MODEL_PATH. The compose `train` service (as /usr/local/bin/lineguard-first-model in the
# training image) and scripts/stack.sh both run it; with a model in place it does nothing.
#   LINEGUARD_MODEL_PATH=/models/model.onnx first-model.sh NORMAL_DIR [lineguard train options...]
set -eu
model=${LINEGUARD_MODEL_PATH:?set LINEGUARD_MODEL_PATH to where the consumer reads its model}
normal=${1:?usage: first-model.sh NORMAL_DIR [lineguard train options...]}
shift
if [ -f "$model" ]; then
    echo "first model: $model is there, nothing to train"
    exit 0
fi
if [ -z "$(ls -A "$normal" 2>/dev/null)" ]; then
    echo "error: no model at $model and no images in $normal: put images of good parts there (or a model file)" >&2
    exit 1
fi
# Train into a folder beside the model and move the result in, so that a run cut short leaves no half-written model
# that the next start would take for a finished one.
work=$(dirname "$model")/.first-model
rm -rf "$work"
mkdir -p "$work"
echo "first model: training on $normal -> $model"
lineguard train "$normal" --out "$work/model.onnx" "$@"
mv "$work/model.onnx" "$model"
rm -rf "$work"
echo "first model: $model ready"
