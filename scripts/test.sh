#!/usr/bin/env bash
# Every check, with its own set-up:  scripts/test.sh [pytest args...]
#   1. ruff check .            lint
#   2. ruff format --check .   formatting
#   3. scripts/typecheck.sh    mypy over edgesight, edgesight.device, edgesight.trainer
#   4. pytest [args]           the suite in .venv (Python 3.11+, all extras), less the tests marked
#                              `long` (trainings at scale, searches: scripts/long_tests.sh runs them)
#   5. device-side tests under Python 3.10 and 3.13 (JetPack 6 / Ubuntu 22.04, and the newest):
#      the files in DEVICE_TESTS (what differs between Pythons: config/TOML, the CLI, bundles,
#      images, runtimes, sources, the pipeline and daemon on real videos),
#      each in its own venv with only the device,onnx,dev extras (no TensorFlow), where pyenv has
#      that Python; a machine without pyenv or without that version skips it and says so.
# Every step runs even when an earlier one fails; the exit status is non-zero when any failed,
# and the last lines name which. EDGESIGHT_EXTRA_PYTHONS="3.10" (or "") picks the extra versions.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

failed=()
step() { # step NAME COMMAND...: run it, remember a failure, carry on
  local name=$1 rc=0
  shift
  echo "test.sh: -- $name"
  "$@" || rc=$?
  if [ $rc -eq 5 ] && [[ $name == pytest* ]]; then
    echo "test.sh: $name collected no tests - that is a failure" >&2
  fi
  [ $rc -eq 0 ] || failed+=("$name (exit $rc)")
}

# The extra Pythons' venvs are made in the background while the main checks run (pip is mostly
# waiting on unpacking and the disk: about 30 s each on a clean clone, off the critical path).
EXTRA_VERSIONS=()
declare -A EXTRA_SETUP=()
for version in ${EDGESIGHT_EXTRA_PYTHONS-3.10 3.13}; do
  if ! command -v pyenv >/dev/null 2>&1; then
    echo "test.sh: skipping Python $version: pyenv is not installed"
    continue
  fi
  if ! prefix="$(pyenv prefix "$version" 2>/dev/null)" || [ ! -x "$prefix/bin/python" ]; then
    echo "test.sh: skipping Python $version: pyenv has no $version (pyenv install $version to add it)"
    continue
  fi
  EXTRA_VERSIONS+=("$version")
  mkdir -p build
  log="build/setup-py$version.log"
  PYTHON="$prefix/bin/python" VENV=".venv-py$version" EXTRAS=device,onnx,dev scripts/setup.sh >"$log" 2>&1 &
  EXTRA_SETUP[$version]=$!
done

PY=.venv/bin/python
step "ruff check" "$PY" -m ruff check .
step "ruff format" "$PY" -m ruff format --check .
step "typecheck" scripts/typecheck.sh
step "pytest" "$PY" -m pytest -m "${EDGESIGHT_MARKERS:-not long}" "$@"

DEVICE_TESTS=(tests/test_architecture.py tests/test_cli.py tests/test_config.py tests/test_bundle.py
  tests/test_bundle_hardening.py tests/test_signing.py tests/test_preprocess.py tests/test_image_limits.py
  tests/test_bad_inputs.py tests/test_oracle.py tests/test_runtimes.py tests/test_sources.py tests/test_gate.py)
# The device side promises Python 3.10-3.13 (issue 13). These venvs have no TensorFlow, so
# tests/conftest.py leaves the trainer's test modules out there and skips, naming the module, a
# device test that builds its model with TensorFlow.
for version in "${EXTRA_VERSIONS[@]}"; do
  rc=0
  wait "${EXTRA_SETUP[$version]}" || rc=$?
  cat "build/setup-py$version.log"
  if [ $rc -eq 0 ]; then
    step "pytest (Python $version, device)" ".venv-py$version/bin/python" -m pytest -q -p no:cacheprovider "${DEVICE_TESTS[@]}"
  else
    failed+=("set-up of .venv-py$version")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: FAILED: $(printf '%s; ' "${failed[@]}" | sed 's/; $//')" >&2
  exit 1
fi
echo "test.sh: all checks passed"
