#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu/Raspberry Pi OS machine: system packages + a venv.
#   scripts/setup.sh            workstation: device + trainer + dev extras
#   EXTRAS=device scripts/setup.sh   a Pi/Jetson: no TensorFlow
# Fast when already done: apt and pip are skipped when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
# "a,b,,a" -> "a,b": each extra once, sorted, so what is printed, installed and stamped agree.
normalise_extras() { echo "$1" | tr ', ' '\n\n' | sed '/^$/d' | sort -u | paste -sd, -; }
EXTRAS="$(normalise_extras "${EXTRAS:-device,trainer,dev}")"

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
# The status-page test drives a real headless browser; only test machines (the dev extra) need it.
case ",$EXTRAS," in *,dev,*) command -v chromium >/dev/null 2>&1 || need_apt+=(chromium) ;; esac
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${need_apt[*]} (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # The Debian package starts a broker on 1883; the demo and tests start their own.
fi

if [ ! -x "$VENV/bin/python" ]; then
  PY="${PYTHON:-python3}"
  # On Raspberry Pi OS picamera2/libcamera come from apt (python3-picamera2): let the venv see them.
  SITE=""; [ -e /usr/lib/python3/dist-packages/picamera2 ] && SITE="--system-site-packages"
  echo "setup: creating $VENV with $($PY --version)"
  "$PY" -m venv $SITE "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi

# The stamp records the pyproject hash and the extras installed; asking for a subset of what is
# already there (the demo's device,dev after the tests' full set) installs nothing.
stamp="$VENV/.edgesight-installed"
MEDIAPIPE="mediapipe>=1.2.3,<1.3"  # installed --no-deps with the trainer extra (see below)
hash="$( { cat pyproject.toml; echo "$MEDIAPIPE"; } | sha256sum | cut -c1-16)"
have_hash=""; have_extras=""
[ -f "$stamp" ] && read -r have_hash have_extras < "$stamp" || true
missing=""
for extra in ${EXTRAS//,/ }; do
  case ",$have_extras," in *",$extra,"*) ;; *) missing="$missing $extra" ;; esac
done
if [ "$have_hash" != "$hash" ] || [ -n "$missing" ]; then
  [ "$have_hash" = "$hash" ] && EXTRAS="$(normalise_extras "$have_extras,$EXTRAS")"  # keep what is installed

  echo "setup: installing edgesight[$EXTRAS] into $VENV"
  log="$VENV/pip-install.log"
  if ! "$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "setup: pip install failed (full log: $log)" >&2
    exit 1
  fi
  case ",$EXTRAS," in *,trainer,*)
    # MediaPipe's TFLite metadata writer (trainer/metadata.py) and, in tests, its ImageClassifier.
    # Without its dependencies: they would add opencv-contrib-python beside pip's headless OpenCV
    # (two packages writing one cv2/, the GUI one needing libGL); what it needs, TensorFlow brings.
    if ! "$VENV/bin/python" -m pip install -q --no-deps "$MEDIAPIPE" >>"$log" 2>&1; then
      tail -n 30 "$log" >&2
      echo "setup: pip install $MEDIAPIPE failed (full log: $log)" >&2
      exit 1
    fi ;;
  esac
  "$VENV/bin/python" -c "import edgesight.device" # fail here, not later, if the install broke
  echo "$hash $EXTRAS" > "$stamp"
fi
read -r _ installed < "$stamp"
echo "setup: ready ($VENV, extras: $installed)"
