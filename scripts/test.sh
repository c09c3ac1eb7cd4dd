#!/usr/bin/env bash
# The whole test suite, with its own set-up: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "test.sh: pytest collected no tests - that is a failure" >&2
  exit 1
fi
exit $rc
