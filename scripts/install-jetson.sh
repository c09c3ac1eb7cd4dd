#!/usr/bin/env bash
# Install edgesight as a systemd service on an NVIDIA Jetson (JetPack 5/6), with JetPack's OpenCV.
#
#   sudo scripts/install-jetson.sh
#   sudo MODEL=models/flowers scripts/install-jetson.sh
#
# Why a separate path: the [device] extra installs pip's opencv-python-headless, built without
# GStreamer, and inside the venv it shadows JetPack's OpenCV even with --system-site-packages,
# so 'jetson-csi' and nvarguscamerasrc pipelines cannot open. This script
#   - makes sure JetPack's OpenCV (apt nvidia-opencv, else Ubuntu's python3-opencv) and the
#     GStreamer tools are installed, and TensorRT's Python bindings when apt has them,
#   - runs scripts/install-pi.sh with EXTRA=jetson: the venv is made with --system-site-packages,
#     gets edgesight[jetson] (the device deps minus OpenCV, NumPy 1, cuda-python, onnxruntime),
#     loses any pip OpenCV, and must import an OpenCV whose build information says GStreamer YES
#     (else it stops with exit 2 before the service is started),
#   - ends with 'edgesight doctor' against the installed config, as the service user.
# Same environment knobs as install-pi.sh (PREFIX, ETC, DESTDIR, SKIP_SYSTEM, MODEL).
set -euo pipefail
cd "$(dirname "$0")/.."
SKIP_SYSTEM="${SKIP_SYSTEM:-$([ -n "${DESTDIR:-}" ] && echo 1 || echo 0)}"
say() { echo "install-jetson: $*"; }

if [ ! -e /etc/nv_tegra_release ] && ! grep -qi tegra /proc/device-tree/compatible 2>/dev/null; then
  say "warning: this does not look like a Jetson (no /etc/nv_tegra_release); continuing"
fi
if [ "$SKIP_SYSTEM" != 1 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-jetson: run as root (sudo $0)" >&2
    exit 1
  fi
  if ! /usr/bin/python3 -c 'import cv2' >/dev/null 2>&1; then
    pkg=python3-opencv
    apt-cache show nvidia-opencv >/dev/null 2>&1 && pkg=nvidia-opencv
    say "apt install $pkg (the system's OpenCV, built with GStreamer)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  fi
  extra=()
  for p in gstreamer1.0-tools python3-libnvinfer; do
    if ! dpkg -s "$p" >/dev/null 2>&1 && apt-cache show "$p" >/dev/null 2>&1; then extra+=("$p"); fi
  done
  if [ ${#extra[@]} -gt 0 ]; then
    say "apt install ${extra[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${extra[@]}" >/dev/null
  fi
fi

EXTRA=jetson scripts/install-pi.sh

if [ "$SKIP_SYSTEM" != 1 ]; then
  PREFIX="${PREFIX:-/opt/edgesight}"
  ETC="${ETC:-/etc/edgesight}"
  say "what this Jetson can run (edgesight doctor, as the service user):"
  runuser -u edgesight -- "$PREFIX/.venv/bin/edgesight" doctor --config "$ETC/edgesight.toml" || true
fi
