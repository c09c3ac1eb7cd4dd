#!/usr/bin/env bash
# The accelerator path on real data, one command: flowers5 -> a fine-tuned MobileNetV2 (the shared
# pretrained backbone) -> a bundle with model.onnx (and model_edgetpu.tflite when edgetpu_compiler
# is installed) -> ONNX-vs-TFLite agreement on the held-out photos -> every runtime this machine
# has, side by side in one bench table. On a Jetson it also builds and times a TensorRT engine.
#
#   scripts/accel_check.sh              # about 2 minutes on a 2-core workstation
#   OUT=/tmp/accel scripts/accel_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TESTDATA="${EDGESIGHT_TESTDATA:-../shared/testdata}"
OUT="${OUT:-runs/accel}"
E=.venv/bin/edgesight
WEIGHTS="$TESTDATA/weights/mobilenet_v2_1.0_160_no_top.weights.h5"
[ -x "$E" ] || { echo "accel_check: run scripts/setup.sh first" >&2; exit 1; }
[ -e "$WEIGHTS" ] || { echo "accel_check: $WEIGHTS not found (set EDGESIGHT_TESTDATA)" >&2; exit 1; }
mkdir -p "$OUT"

[ -e "$OUT/dataset/dataset.json" ] || $E data import "$TESTDATA/datasets/flowers5" "$OUT/dataset"
[ -e "$OUT/run/model.keras" ] || $E train "$OUT/dataset" --out "$OUT/run" --size 160 --weights "$WEIGHTS" \
  --epochs-head 8 --epochs-finetune 0

EXPORT_FLAGS=(--onnx)
if command -v edgetpu_compiler >/dev/null || [ -n "${EDGETPU_COMPILER:-}" ]; then
  EXPORT_FLAGS+=(--edgetpu)
else
  echo "accel_check: edgetpu_compiler not installed: no model_edgetpu.tflite (x86_64 only; see README)"
fi
$E export "$OUT/run" --out "$OUT/bundle" "${EXPORT_FLAGS[@]}"

if .venv/bin/python -c "import tensorrt" 2>/dev/null; then
  $E build-engine "$OUT/bundle" --fp16
fi
$E info "$OUT/bundle" | sed -n '1,3p;/^runtime/p'
$E bench "$OUT/bundle" --all-variants --runtime all --threads 1,2 --runs 200 \
  --skip pipeline,sequential,cold_start,limit --no-progress --json "$OUT/bench.json"
echo "accel_check: manifest $OUT/bundle/manifest.json (keys onnx, edgetpu), bench $OUT/bench.json"
