#!/usr/bin/env bash
# The main job on built-in defaults. (Replaced by the live MQTT demo once the daemon lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-device,dev}" scripts/setup.sh
TESTDATA="${EDGESIGHT_TESTDATA:-../shared/testdata}"
exec .venv/bin/edgesight predict "$TESTDATA/models/mobilenet_v2_1.0_224_quant.tflite" "$TESTDATA/images" \
  --labels "$TESTDATA/models/imagenet_labels.txt"
