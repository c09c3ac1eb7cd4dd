#!/usr/bin/env bash
# The real-data run: flowers5 (200 photos, 5 classes) -> import -> train -> export -> evaluate,
# then 5-fold cross-validation, with the local pretrained MobileNetV2 weights (no network needed).
#
#   scripts/train_flowers.sh [OUT_DIR]          (default runs/flowers5-YYYYmmdd-HHMMSS)
#   KFOLD=0 scripts/train_flowers.sh            skip the k-fold run
#   TRAIN_ARGS="--size 224" scripts/train_flowers.sh   extra/overriding train flags
#
# Prints the wall time of each step and writes a summary to OUT_DIR/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
TESTDATA=${EDGESIGHT_TESTDATA:-../shared/testdata}
OUT=${1:-runs/flowers5-$(date +%Y%m%d-%H%M%S)}
KFOLD=${KFOLD:-5}
PHOTOS=$TESTDATA/datasets/flowers5
WEIGHTS=$TESTDATA/weights/mobilenet_v2_1.0_160_no_top.weights.h5
WEIGHTS_SHA256=b5c304ecf01494f614fd05d36a075cb14f45d054af9af5ef17092bbf870e8e2f
ES=${EDGESIGHT:-.venv/bin/edgesight}

[ -d "$PHOTOS" ] || { echo "train_flowers.sh: $PHOTOS not found (set EDGESIGHT_TESTDATA)" >&2; exit 1; }
[ ! -e "$OUT" ] || { echo "train_flowers.sh: $OUT exists; pick another OUT_DIR (nothing is overwritten)" >&2; exit 2; }
echo "$WEIGHTS_SHA256  $WEIGHTS" | sha256sum --check --quiet - || {
  echo "train_flowers.sh: $WEIGHTS does not match its published sha256" >&2; exit 1; }
mkdir -p "$OUT"

# MobileNetV2 alpha 1.0 at 224 px (the 160 px weights load at any size; 224 scored ~3 points more
# than 160 in 5-fold), photos stretched to the square; phase 1 on cached features of each photo,
# its mirror and 6 augmented views, phase 2 fine-tunes the top layers (kept only if val improves).
# shellcheck disable=SC2206
TRAIN=(--arch mobilenet_v2 --alpha 1.0 --size 224 --fit stretch --weights "$WEIGHTS" ${TRAIN_ARGS:-})

step() {  # step NAME CMD... : run, time, log
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.log"
  local dt=$((SECONDS - t0))
  echo "$name $dt s" >> "$OUT/times.txt"
  echo "== $name took $dt s"
}

start=$SECONDS
# --no-move: the shared photos are read-only input; rejects are listed, not moved
step import   "$ES" data import "$PHOTOS" "$OUT/dataset" --no-move --seed 0
step train    "$ES" train "$OUT/dataset" --out "$OUT/run" "${TRAIN[@]}"
step export   "$ES" export "$OUT/run" --out "$OUT/bundle" --name flowers5
step evaluate "$ES" evaluate "$OUT/bundle" "$OUT/dataset" --split heldout   # val + test: 40 photos never trained on
pipeline=$((SECONDS - start))
echo "pipeline (import -> train -> export -> evaluate) $pipeline s" | tee -a "$OUT/times.txt"
"$ES" predict "$OUT/bundle" "$PHOTOS/sunflowers" --top-k 1 | head -4

if [ "$KFOLD" -gt 1 ]; then
  step kfold "$ES" train "$OUT/dataset" --out "$OUT/kfold" --kfold "$KFOLD" "${TRAIN[@]}"
fi
{
  echo "flowers5 run in $OUT"
  cat "$OUT/times.txt"
  grep -E "accuracy|agreement" "$OUT/export.log" || true
  sed -n '/^class/,/^report/p' "$OUT/evaluate.log"
  [ "$KFOLD" -gt 1 ] && grep -E "fold" "$OUT/kfold.log" || true
} | tee "$OUT/summary.txt"
