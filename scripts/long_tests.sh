#!/usr/bin/env bash
# The tests marked `long` (real trainings at scale, the latency-budget search): minutes each on
# 2 cores, so scripts/test.sh leaves them out. With its own set-up:  scripts/long_tests.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -m long "$@"
