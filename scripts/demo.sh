#!/usr/bin/env bash
# The live demo, one command: a local mosquitto, a 720p video of a cat, the daemon on the shared
# MobileNet V2, and the MQTT messages printed as they arrive. Idempotent; leaves nothing running.
#
#   scripts/demo.sh                 # about 10 s of video, real time
#   DEMO_FRAMES=900 scripts/demo.sh # longer
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-device,dev}" scripts/setup.sh
TESTDATA="${EDGESIGHT_TESTDATA:-../shared/testdata}"
OUT=demo-out
FRAMES="${DEMO_FRAMES:-300}"
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
mkdir -p "$OUT"

for f in models/mobilenet_v2_1.0_224_quant.tflite models/imagenet_labels.txt images/cat_720p.jpg; do
  [ -e "$TESTDATA/$f" ] || { echo "demo: $TESTDATA/$f not found (set EDGESIGHT_TESTDATA)" >&2; exit 1; }
done

VIDEO="$OUT/cat_720p_${FRAMES}.mp4"
if [ ! -s "$VIDEO" ]; then
  echo "demo: writing $VIDEO (1280x720, $FRAMES frames panning across cat_720p.jpg, cv2.VideoWriter)"
  .venv/bin/python - "$TESTDATA/images/cat_720p.jpg" "$VIDEO" "$FRAMES" <<'EOF'
import sys
from pathlib import Path
from edgesight.device.bench.footage import make_test_video
make_test_video(Path(sys.argv[2]), frames=int(sys.argv[3]), fps=30, image=Path(sys.argv[1]))
EOF
fi

PORT="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" > "$OUT/mosquitto.conf"
# Helpers run in their own session (setsid), so Ctrl-C reaches only the daemon: it publishes
# "offline" to a broker that is still there, then the clean-up stops the helpers.
pids=()
background() { setsid "$@" & pids+=($!); }
cleanup() {
  for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  pids=()
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo "demo: stopping"' INT TERM

background "$MOSQUITTO" -c "$OUT/mosquitto.conf" >"$OUT/mosquitto.log" 2>&1
for _ in $(seq 50); do
  mosquitto_sub -h 127.0.0.1 -p "$PORT" -t '$SYS/#' -C 1 -W 1 >/dev/null 2>&1 && break || sleep 0.1
done
echo "demo: mosquitto on 127.0.0.1:$PORT; subscribing to edgesight/# and homeassistant/#"
# Every message as it arrives (long payloads cut at 200 characters to keep lines readable).
background bash -c "mosquitto_sub -h 127.0.0.1 -p $PORT -v -t 'edgesight/#' -t 'homeassistant/#' | stdbuf -oL cut -c1-200"
sleep 0.3

cat > "$OUT/demo.toml" <<EOF
[source]
realtime = true
[mqtt]
device_id = "demo"
result_every = 15
stats_interval = 3
commands = ["snapshot"]
[state]
window = 5
threshold = 0.5
min_dwell = 1.0
[snapshot]
dir = "$OUT/snapshots"
EOF

echo "demo: edgesight run (Ctrl-C stops it cleanly)"
set +e
.venv/bin/edgesight run --config "$OUT/demo.toml" \
  --model "$TESTDATA/models/mobilenet_v2_1.0_224_quant.tflite" --labels "$TESTDATA/models/imagenet_labels.txt" \
  --source "$VIDEO" --broker "127.0.0.1:$PORT"
rc=$?
set -e
sleep 0.5
echo "demo: daemon exited with $rc; retained messages a new subscriber sees now:"
mosquitto_sub -h 127.0.0.1 -p "$PORT" -v -t edgesight/demo/availability -t edgesight/demo/state -W 1 \
  2>/dev/null | cut -c1-200 || true
exit $rc
