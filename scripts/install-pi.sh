#!/usr/bin/env bash
# Install edgesight as a systemd service on a Raspberry Pi (or Jetson / any Debian-like box).
#
#   sudo scripts/install-pi.sh                         # code, venv, user, config, unit
#   sudo MODEL=models/flowers scripts/install-pi.sh    # ... and copy a bundle to /opt/edgesight/models/
#   sudo NAME=porch scripts/install-pi.sh              # one camera of several: edgesight@porch.service
#
# What it does (idempotent; safe to run again after a git pull):
#   - apt: python3-venv, and python3-picamera2 on Raspberry Pi OS (libcamera comes from apt only)
#   - a system user 'edgesight' in the video and render groups (cameras, ISP)
#   - /opt/edgesight/.venv with edgesight[device] (no TensorFlow), made with --system-site-packages
#     so apt's picamera2 is visible
#   - /etc/edgesight/edgesight.toml from systemd/edgesight.toml, only if it does not exist yet
#     (your config is never overwritten)
#   - /etc/systemd/system/edgesight.service, enabled; started only when the config passes
#     'edgesight run --check' (a model is configured and loads, the camera opens)
#   - with NAME=<name> (several cameras on one board): /etc/edgesight/<name>.toml instead, with
#     device_id "<name>" and its folders under /var/lib/edgesight/<name>/, and the template unit
#     /etc/systemd/system/edgesight@.service, instance edgesight@<name>.service enabled. Each
#     camera is its own service; they share only the code, the models and the broker.
#
# Environment: PREFIX (default /opt/edgesight), ETC (default /etc/edgesight), DESTDIR (stage into
# a directory instead of /, for packaging; implies SKIP_SYSTEM=1), SKIP_SYSTEM=1 (no apt, useradd,
# systemctl), MODEL (a bundle directory to copy in), EXTRA (default device; scripts/install-jetson.sh
# sets jetson: no pip OpenCV, JetPack's is used and must have GStreamer), NAME (one camera's instance).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="$(pwd)"
PREFIX="${PREFIX:-/opt/edgesight}"
ETC="${ETC:-/etc/edgesight}"
DESTDIR="${DESTDIR:-}"
SKIP_SYSTEM="${SKIP_SYSTEM:-$([ -n "$DESTDIR" ] && echo 1 || echo 0)}"
USER_NAME=edgesight
EXTRA="${EXTRA:-device}"
case "$EXTRA" in device | jetson) ;; *)
  echo "install-pi: EXTRA=$EXTRA: expected device or jetson" >&2
  exit 2
  ;;
esac

NAME="${NAME:-}"
if [ -n "$NAME" ] && ! [[ "$NAME" =~ ^[a-z0-9][a-z0-9_-]{0,31}$ ]]; then
  echo "install-pi: NAME=$NAME: expected 1-32 of a-z, 0-9, - and _ (it becomes a unit, a file and a device id)" >&2
  exit 2
fi
if [ -n "$NAME" ]; then
  UNIT_FILE=edgesight@.service
  SERVICE="edgesight@$NAME.service"
  CONFIG_NAME="$NAME.toml"
else
  UNIT_FILE=edgesight.service
  SERVICE=edgesight.service
  CONFIG_NAME=edgesight.toml
fi

say() { echo "install-pi: $*"; }

if [ -n "${MODEL:-}" ] && [ ! -f "$MODEL/manifest.json" ]; then
  echo "install-pi: MODEL=$MODEL is not a bundle directory (no manifest.json)" >&2
  exit 1
fi

if [ "$SKIP_SYSTEM" != 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-pi: run as root (sudo $0)" >&2
  exit 1
fi

if [ "$SKIP_SYSTEM" != 1 ]; then
  pkgs=(python3-venv python3-pip)
  if apt-cache show python3-picamera2 >/dev/null 2>&1; then pkgs+=(python3-picamera2); fi
  missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! id "$USER_NAME" >/dev/null 2>&1; then
    say "creating system user $USER_NAME"
    useradd --system --home-dir /var/lib/edgesight --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
  fi
  for g in video render; do
    getent group "$g" >/dev/null && usermod -aG "$g" "$USER_NAME"
  done
fi

VENV="$DESTDIR$PREFIX/.venv"
mkdir -p "$DESTDIR$PREFIX/models" "$DESTDIR$ETC"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
say "installing edgesight[$EXTRA] into $VENV"
if ! "$VENV/bin/python" -m pip install -q --upgrade "$SRC[$EXTRA]" >"$VENV/pip-install.log" 2>&1; then
  tail -n 30 "$VENV/pip-install.log" >&2
  echo "install-pi: pip install failed (full log: $VENV/pip-install.log)" >&2
  exit 1
fi
if [ "$EXTRA" = jetson ]; then
  # pip's OpenCV (from an earlier [device] install, or pulled in by another package) shadows
  # JetPack's even with --system-site-packages, and it has no GStreamer: take it out of the venv.
  for dist in opencv-python-headless opencv-python opencv-contrib-python opencv-contrib-python-headless; do
    if "$VENV/bin/python" -m pip show -q "$dist" >/dev/null 2>&1; then
      say "removing pip's $dist from the venv (JetPack's OpenCV has GStreamer)"
      "$VENV/bin/python" -m pip uninstall -q -y "$dist" >>"$VENV/pip-install.log" 2>&1
    fi
  done
  if ! build="$("$VENV/bin/python" -c 'import cv2; print(cv2.__file__); print(cv2.getBuildInformation())' 2>&1)"; then
    echo "install-pi: the venv cannot import JetPack's OpenCV ($(echo "$build" | tail -n 1)); sudo apt install nvidia-opencv (or python3-opencv)" >&2
    exit 2
  fi
  if ! grep -Eq '^[[:space:]]*GStreamer:[[:space:]]*YES' <<<"$build"; then
    echo "install-pi: the OpenCV the venv imports ($(echo "$build" | head -n 1)) has no GStreamer; jetson-csi cannot open. Install JetPack's: sudo apt install nvidia-opencv" >&2
    exit 2
  fi
  say "OpenCV $(echo "$build" | head -n 1): GStreamer YES"
fi
install -m 0644 "$SRC/README.md" "$DESTDIR$PREFIX/README.md"

if [ -n "${MODEL:-}" ]; then
  name="$(basename "$MODEL")"
  if [ -e "$DESTDIR$PREFIX/models/$name" ]; then
    say "$PREFIX/models/$name exists; leaving it (copy a new version under another name)"
  else
    say "copying bundle $MODEL to $PREFIX/models/$name"
    cp -r "$MODEL" "$DESTDIR$PREFIX/models/$name"
  fi
  say "set [model] path = \"$PREFIX/models/$name\" in $ETC/$CONFIG_NAME"
fi

CONFIG="$DESTDIR$ETC/$CONFIG_NAME"
if [ -e "$CONFIG" ]; then
  say "$ETC/$CONFIG_NAME exists; not touching it (see systemd/edgesight.toml for new keys)"
elif [ -n "$NAME" ]; then
  # this camera's own id and folders: the instance may write only /var/lib/edgesight/NAME
  sed -e "s|^# device_id = .*|device_id = \"$NAME\"|" -e "s|\"/var/lib/edgesight/|\"/var/lib/edgesight/$NAME/|" \
    "$SRC/systemd/edgesight.toml" >"$CONFIG"
  chmod 0640 "$CONFIG"
  say "wrote $ETC/$CONFIG_NAME (device_id \"$NAME\"): set [model] path, [source] spec and [mqtt] host"
else
  install -m 0640 "$SRC/systemd/edgesight.toml" "$CONFIG"
  say "wrote $ETC/edgesight.toml: set [model] path and [mqtt] host"
fi
install -D -m 0644 "$SRC/systemd/$UNIT_FILE" "$DESTDIR/etc/systemd/system/$UNIT_FILE"
if [ "$PREFIX" != /opt/edgesight ] || [ "$ETC" != /etc/edgesight ]; then
  sed -i "s#/opt/edgesight#$PREFIX#g; s#/etc/edgesight#$ETC#g" "$DESTDIR/etc/systemd/system/$UNIT_FILE"
fi

if [ "$SKIP_SYSTEM" = 1 ]; then
  say "staged into ${DESTDIR:-/} (no systemctl)"
  exit 0
fi
chgrp "$USER_NAME" "$CONFIG"
systemctl daemon-reload
systemctl enable "$SERVICE" >/dev/null
if runuser -u "$USER_NAME" -- "$VENV/bin/edgesight" run --config "$ETC/$CONFIG_NAME" --check; then
  systemctl restart "$SERVICE"
  say "started: journalctl -u ${SERVICE%.service} -f"
else
  say "installed and enabled, not started: fix $ETC/$CONFIG_NAME, then: sudo systemctl restart ${SERVICE%.service}"
fi
