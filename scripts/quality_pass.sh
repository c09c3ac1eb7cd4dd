#!/usr/bin/env bash
# The quality pass on flowers5 with the shared MobileNetV2 weights, at a small budget:
# import -> data issues on a copy with injected label noise -> train (clean) + train --adversarial -> export both -> evaluate with the robustness
# sweep and the adversarial check, then print the figures (robustness table, FGSM/PGD curves,
# what FGSM training buys and costs, label-issue precision, ECE before/after temperature scaling). The figures in docs/quality.md come from this script.
#
#   scripts/quality_pass.sh [OUT_DIR]             (default runs/quality-YYYYmmdd-HHMMSS)
#   SIZE=160 HEAD=15 FINETUNE=4 scripts/quality_pass.sh   a larger budget
#   ADV_EPS=2 SEVERITIES=1,3,5 EPSILONS=1,2,4,8 ... the sweep settings
set -euo pipefail
cd "$(dirname "$0")/.."
TESTDATA=${EDGESIGHT_TESTDATA:-../shared/testdata}
OUT=${1:-runs/quality-$(date +%Y%m%d-%H%M%S)}
PHOTOS=$TESTDATA/datasets/flowers5
WEIGHTS=$TESTDATA/weights/mobilenet_v2_1.0_160_no_top.weights.h5
ES=${EDGESIGHT:-.venv/bin/edgesight}
SIZE=${SIZE:-128}
HEAD=${HEAD:-8}
FINETUNE=${FINETUNE:-2}
ADV_EPS=${ADV_EPS:-2}
SEVERITIES=${SEVERITIES:-1,3,5}
EPSILONS=${EPSILONS:-1,2,4,8}
SPLIT=${SPLIT:-heldout}   # val + test: 40 photos never trained on (the test split alone is 20)

[ -d "$PHOTOS" ] || { echo "quality_pass.sh: $PHOTOS not found (set EDGESIGHT_TESTDATA)" >&2; exit 1; }
[ -f "$WEIGHTS" ] || { echo "quality_pass.sh: $WEIGHTS not found" >&2; exit 1; }
[ ! -e "$OUT" ] || { echo "quality_pass.sh: $OUT exists; pick another OUT_DIR (nothing is overwritten)" >&2; exit 2; }
mkdir -p "$OUT"
TRAIN=(--arch mobilenet_v2 --alpha 1.0 --size "$SIZE" --weights "$WEIGHTS"
  --epochs-head "$HEAD" --epochs-finetune "$FINETUNE" --unfreeze 20 --lr-finetune 1e-4)

step() {  # step NAME CMD... : run, time, keep the log
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1 || { echo "quality_pass.sh: $name failed, see $OUT/$name.log" >&2; tail -5 "$OUT/$name.log" >&2; exit 1; }
  echo "== $name took $((SECONDS - t0)) s"
}

step import "$ES" data import "$PHOTOS" "$OUT/dataset" --no-move --seed 0
# Label errors: a copy of flowers5 with NOISE daisy photos filed under roses; how many of them
# does 'data issues' rank among its first 2*NOISE label rows?
NOISE=${NOISE:-8}
cp -r "$PHOTOS" "$OUT/noisy-src"
find "$OUT/noisy-src/daisy" -type f | sort | head -n "$NOISE" > "$OUT/injected.txt"
while read -r f; do mv "$f" "$OUT/noisy-src/roses/injected_$(basename "$f")"; done < "$OUT/injected.txt"
step import_noisy "$ES" data import "$OUT/noisy-src" "$OUT/noisy" --no-move --seed 0
step issues "$ES" data issues "$OUT/noisy" --weights "$WEIGHTS" --out "$OUT/issues"
step train "$ES" train "$OUT/dataset" --out "$OUT/run" "${TRAIN[@]}"
step train_adv "$ES" train "$OUT/dataset" --out "$OUT/run_adv" "${TRAIN[@]}" --adversarial "$ADV_EPS"
step export "$ES" export "$OUT/run" --out "$OUT/bundle" --name flowers5
step export_adv "$ES" export "$OUT/run_adv" --out "$OUT/bundle_adv" --name flowers5-fgsm
step evaluate "$ES" evaluate "$OUT/bundle" "$OUT/dataset" --split "$SPLIT" --robustness \
  --severities "$SEVERITIES" --adversarial --epsilons "$EPSILONS"
step evaluate_adv "$ES" evaluate "$OUT/bundle_adv" "$OUT/dataset" --split "$SPLIT" --adversarial \
  --epsilons "$EPSILONS" --no-occlusion


echo
echo "=== clean model ($OUT/bundle/report/report.html)"
sed -n '/^robustness/,$p' "$OUT/evaluate.log" | grep -v '^report:'
echo
echo "=== FGSM-trained model, eps $ADV_EPS/255 ($OUT/bundle_adv/report/report.html)"
sed -n '/^adversarial/,$p' "$OUT/evaluate_adv.log" | grep -v '^report:'
echo
echo "=== label errors ($OUT/issues/issues.html)"
python3 - "$OUT" "$NOISE" <<'PY'
import csv, sys
out, noise = sys.argv[1], int(sys.argv[2])
rows = [r for r in csv.DictReader(open(f"{out}/issues/issues.csv", encoding="utf-8")) if r["kind"] == "label"]
top = rows[: 2 * noise]
found = sum(1 for r in top if "injected_" in r["path"])
print(f"injected {noise} mislabelled photos; {found} of them in the first {len(top)} label rows "
      f"(precision {found / max(1, len(top)):.2f}, recall {found / noise:.2f})")
PY
echo
echo "=== calibration ($OUT/bundle/manifest.json)"
python3 - "$OUT" <<'PY'
import json, sys
cal = json.load(open(f"{sys.argv[1]}/bundle/manifest.json", encoding="utf-8")).get("calibration")
if not cal:
    print("no calibration in the manifest (no validation split?)")
else:
    print(f"temperature {cal['temperature']:.3f}; ECE before {cal['ece_before']:.3f}, after {cal['ece_after']:.3f}")
PY
