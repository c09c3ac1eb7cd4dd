#!/usr/bin/env bash
# The Pi install, checked on an x86 machine: an arm64 Debian bookworm root (Raspberry Pi OS's base)
# under qemu-user emulation, edgesight[device] installed there from PyPI's aarch64 wheels the way a
# Pi user would, then `edgesight predict` on the shared MobileNet and `edgesight run` on a short
# video against a mosquitto on the host. Speed under emulation means nothing; that it installs and
# gives the host's top-1 does. Slow (the first run builds the root): not part of the CI suite.
#
#   sudo scripts/arm64_check.sh
#   ARM64_ROOT=/var/tmp/arm64 MIRROR=http://deb.debian.org/debian scripts/arm64_check.sh
#   ARM64_FRESH=1 scripts/arm64_check.sh     # throw the cached root away and build it again
#
# Exit: 0 PASS, 1 FAIL (a check or a phase failed), 2 cannot run here (not root, no binfmt, no data).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"

ROOT="${ARM64_ROOT:-$HOME/.cache/edgesight/arm64-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
HOST_VENV="${VENV:-.venv}"
MAX_FRAMES=20
DEVICE_ID=arm64check
say() { echo "arm64_check: $*"; }
die() { local code="$1"; shift; say "$*" >&2; say "FAIL" >&2; exit "$code"; }

[ "$(id -u)" -eq 0 ] || { echo "arm64_check: must run as root (debootstrap, chroot and mounts need it)" >&2; exit 2; }

# The shared oracle data: EDGESIGHT_TESTDATA, else ../shared/testdata, else /work/shared/testdata.
TESTDATA="${EDGESIGHT_TESTDATA:-}"
for candidate in "$TESTDATA" ../shared/testdata /work/shared/testdata; do
  if [ -n "$candidate" ] && [ -f "$candidate/models/mobilenet_v2_1.0_224_quant.tflite" ]; then
    TESTDATA="$(cd "$candidate" && pwd)"; break
  fi
  TESTDATA=""
done
[ -n "$TESTDATA" ] || { echo "arm64_check: shared testdata not found (set EDGESIGHT_TESTDATA)" >&2; exit 2; }
MODEL=mobilenet_v2_1.0_224_quant.tflite
LABELS=imagenet_labels.txt
IMAGE=cat.bmp
[ -x "$HOST_VENV/bin/edgesight" ] || { echo "arm64_check: no host venv at $HOST_VENV (run scripts/setup.sh first)" >&2; exit 2; }

# --- host tools, from Debian apt as setup.sh does ------------------------------------------------
need_apt=()
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
command -v qemu-aarch64-static >/dev/null 2>&1 || need_apt+=(qemu-user-static)
command -v update-binfmts >/dev/null 2>&1 || [ -x /usr/sbin/update-binfmts ] || need_apt+=(binfmt-support)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

# --- binfmt: the kernel must hand aarch64 ELF files to qemu ---------------------------------------
# Without it nothing can run in the root: qemu-user runs one program, but every exec() that
# program makes (dpkg in debootstrap's second stage, pip's build steps) needs binfmt again.
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/register" ]; then
  mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || true
fi
if [ ! -e "$BINFMT/qemu-aarch64" ] || ! grep -q '^enabled' "$BINFMT/qemu-aarch64"; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if [ ! -e "$BINFMT/qemu-aarch64" ] || ! grep -q '^enabled' "$BINFMT/qemu-aarch64"; then
  echo "arm64_check: cannot register qemu-aarch64 with binfmt_misc ($BINFMT not writable here); see docs/arm64.md" >&2
  exit 2
fi
# Without the F flag the kernel looks the interpreter up inside the chroot: put it there.
INTERP="$(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64")"
binfmt_fixed() { sed -n 's/^flags: //p' "$BINFMT/qemu-aarch64" | grep -q F; }

# --- mounts and the broker, always undone ---------------------------------------------------------
MOUNTS=()
BROKER_PID=""
SUB_PID=""
WORK="$(mktemp -d /tmp/arm64_check.XXXXXX)"
cleanup() {
  set +e
  [ -n "$SUB_PID" ] && kill "$SUB_PID" 2>/dev/null && wait "$SUB_PID" 2>/dev/null
  [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null
  done
  MOUNTS=()
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
mounted_under_root() { grep -q " $ROOT/" /proc/mounts; }

phase_start=0
declare -A TOOK=()
begin() { phase_start=$(date +%s); say "phase $1 ..."; }
end() { TOOK[$1]=$(($(date +%s) - phase_start)); say "phase $1 took ${TOOK[$1]}s"; }
summary() {
  local p line=""
  for p in debootstrap pip_install predict run; do line="$line $p=${TOOK[$p]:--}s"; done
  say "timings:$line"
}

# --- phase 1: the arm64 root, reused when complete -----------------------------------------------
STAMP="$ROOT/.edgesight-root-complete"
if [ "${ARM64_FRESH:-0}" = 1 ] || { [ -d "$ROOT" ] && [ ! -f "$STAMP" ]; }; then
  mounted_under_root && die 1 "something is still mounted under $ROOT; unmount it first"
  say "removing the cached or incomplete root at $ROOT"
  rm -rf "$ROOT"
fi
begin debootstrap
if [ -f "$STAMP" ]; then
  say "reusing $ROOT ($(cat "$STAMP"))"
else
  mkdir -p "$ROOT"
  log="$WORK/debootstrap.log"
  # python3-pip pulls in a compiler toolchain on Debian; venv's ensurepip is all a Pi user needs.
  if ! debootstrap --arch=arm64 --foreign --variant=minbase \
      --include=python3,python3-venv,ca-certificates "$SUITE" "$ROOT" "$MIRROR" >"$log" 2>&1; then
    tail -n 20 "$log" >&2; rm -rf "$ROOT"; die 1 "debootstrap (first stage) failed"
  fi
  binfmt_fixed || { mkdir -p "$ROOT$(dirname "$INTERP")"; cp "$INTERP" "$ROOT$INTERP"; }
  cp /usr/bin/qemu-aarch64-static "$ROOT/usr/bin/"
  if ! chroot "$ROOT" /debootstrap/debootstrap --second-stage >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    mounted_under_root || rm -rf "$ROOT"
    die 1 "debootstrap --second-stage under emulation failed"
  fi
  echo "$SUITE arm64 from $MIRROR, built $(date -u +%FT%TZ)" >"$STAMP"
fi
end debootstrap

# The root shares the host's network (and so the broker on 127.0.0.1) and its name resolution.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# No /sys: with the host's sysfs there, LiteRT's CPU probe (cpuinfo) reads an x86 topology under
# an aarch64 qemu and segfaults (exit 139) before the first inference; nothing here needs /sys.
for m in proc dev; do
  case $m in
    proc) mount -t proc proc "$ROOT/proc" ;;
    dev) mount --bind /dev "$ROOT/dev" ;;
  esac
  MOUNTS+=("$ROOT/$m")
done
# Behind a TLS-intercepting proxy the host trusts a local CA that the fresh root does not: carry the
# host's bundle (Debian's list plus what /usr/local/share/ca-certificates adds) and proxy settings.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
PASS_ENV=()
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_DEFAULT_TIMEOUT PIP_INDEX_URL; do
  [ -n "${!v:-}" ] && PASS_ENV+=("$v=${!v}")
done
in_root() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin \
    PIP_DISABLE_PIP_VERSION_CHECK=1 "${PASS_ENV[@]}" "$@"
}
say "root: $(in_root uname -m), $(in_root /usr/bin/python3 --version)"

# --- phase 2: edgesight[device] from this checkout, its dependencies from PyPI --------------------
# A copy of the working tree (tracked + untracked, not ignored): pip builds in the source folder.
SRC=/opt/edgesight-src
DATA=/opt/edgesight-data
VENV=/opt/edgesight-venv
rm -rf "$ROOT$SRC" "$ROOT$DATA"
mkdir -p "$ROOT$SRC" "$ROOT$DATA"
git -C "$REPO" ls-files -co --exclude-standard -z | tar -C "$REPO" --null -T - -cf - | tar -C "$ROOT$SRC" -xf -
cp "$TESTDATA/models/$MODEL" "$TESTDATA/models/$LABELS" "$TESTDATA/images/$IMAGE" "$ROOT$DATA/"

begin pip_install
log="$WORK/pip.log"
if ! { [ -x "$ROOT$VENV/bin/python" ] || in_root /usr/bin/python3 -m venv "$VENV"; } >"$log" 2>&1 \
  || ! in_root "$VENV/bin/python" -m pip install --upgrade pip >>"$log" 2>&1 \
  || ! in_root "$VENV/bin/python" -m pip install "$SRC[device]" >>"$log" 2>&1; then
  tail -n 30 "$log" >&2
  die 1 "pip install of edgesight[device] in the arm64 root failed"
fi
end pip_install
in_root "$VENV/bin/python" -m pip list 2>/dev/null \
  | grep -iE '^(edgesight|ai-edge-litert|numpy|opencv-python-headless|paho-mqtt) ' \
  | sed 's/^/arm64_check:   /' || true

# --- phase 3: predict, same top-1 as the host -----------------------------------------------------
top1() { "$HOST_VENV/bin/python" -c 'import json,sys; t=json.loads(sys.stdin.readline())["top"][0]; print(t["index"], t["score"], t["label"])'; }
host_top="$("$HOST_VENV/bin/edgesight" predict "$TESTDATA/models/$MODEL" "$TESTDATA/images/$IMAGE" \
  --labels "$TESTDATA/models/$LABELS" --json --top-k 1 | top1)"
say "host  top-1: $host_top"
begin predict
if ! arm_json="$(in_root "$VENV/bin/edgesight" predict "$DATA/$MODEL" "$DATA/$IMAGE" --labels "$DATA/$LABELS" \
  --json --top-k 1 2>"$WORK/predict.err")"; then
  rc=$?; cat "$WORK/predict.err" >&2; die 1 "edgesight predict failed in the arm64 root (exit $rc)"
fi
end predict
arm_top="$(echo "$arm_json" | top1)"
say "arm64 top-1: $arm_top"
failures=()
[ "${arm_top%% *}" = "${host_top%% *}" ] || failures+=("top-1 differs: host '$host_top', arm64 '$arm_top'")

# --- phase 4: run on a video against a broker on the host -----------------------------------------
VIDEO="$ROOT$DATA/cat.avi"
"$HOST_VENV/bin/python" - "$TESTDATA/images/$IMAGE" "$VIDEO" <<'EOF'
import sys, cv2
img = cv2.imread(sys.argv[1])
h, w = img.shape[:2]
side = min(h, w) * 9 // 10
out = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 320))
assert out.isOpened(), "VideoWriter MJPG did not open"
for i in range(40):  # a slow pan over the photo: real decoding, frames that differ
    x, y = (w - side) * (i % 20) // 19, (h - side) // 2
    out.write(cv2.resize(img[y : y + side, x : x + side], (320, 320), interpolation=cv2.INTER_AREA))
out.release()
EOF
PORT="$("$HOST_VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$PORT" >"$WORK/mosquitto.conf"
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
mosquitto_sub -h 127.0.0.1 -p "$PORT" -t "edgesight/$DEVICE_ID/result" -C 5 -W 900 >"$WORK/results.jsonl" 2>&1 &
SUB_PID=$!
sleep 0.5
begin run
if ! in_root "$VENV/bin/edgesight" run --model "$DATA/$MODEL" --labels "$DATA/$LABELS" --source "$DATA/cat.avi" \
  --broker "127.0.0.1:$PORT" --device-id "$DEVICE_ID" --max-frames "$MAX_FRAMES" >"$WORK/run.log" 2>&1; then
  tail -n 20 "$WORK/run.log" >&2; failures+=("edgesight run failed in the arm64 root")
fi
end run
# The subscriber exits after 5 messages; if the run published fewer, do not wait out its -W.
for _ in $(seq 30); do kill -0 "$SUB_PID" 2>/dev/null || break; sleep 0.1; done
kill "$SUB_PID" 2>/dev/null || true
wait "$SUB_PID" 2>/dev/null || true
SUB_PID=""
got="$(grep -c '"top"' "$WORK/results.jsonl" || true)"
say "MQTT: $got result messages received on the host (wanted 5)"
if [ "$got" -ge 5 ]; then
  mqtt_top="$(head -n 1 "$WORK/results.jsonl" | top1)"
  say "first result's top-1: $mqtt_top"
  [ "${mqtt_top%% *}" = "${host_top%% *}" ] || failures+=("the run's top-1 on MQTT is '$mqtt_top', not '$host_top'")
else
  failures+=("the run published $got result messages, wanted 5")
fi

summary
if [ ${#failures[@]} -gt 0 ]; then
  for f in "${failures[@]}"; do say "$f" >&2; done
  say "FAIL"; exit 1
fi
say "PASS (arm64 $SUITE, $(in_root "$VENV/bin/python" --version), top-1 ${arm_top})"
