#!/usr/bin/env bash
# mypy over the package as it is imported (edgesight, edgesight.device, edgesight.trainer).
# The folders device/ and trainer/ install under other names (setup.py's package_dir), which mypy
# cannot be told directly: give it a view of symlinks under build/ that has the import names.
set -euo pipefail
cd "$(dirname "$0")/.."
view=build/typecheck/edgesight
mkdir -p "$view"
ln -sfn ../../../edgesight_pkg/__init__.py "$view/__init__.py"
ln -sfn ../../../device "$view/device"
ln -sfn ../../../trainer "$view/trainer"
exec "${PYTHON:-.venv/bin/python}" -m mypy "$@"
