#!/usr/bin/env bash
# Set up the environment if needed, build the extension (CPU, plus CUDA when nvcc and a CUDA build
# of torch are present) and run the test suite.  Usage: bash run/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source run/env.sh
echo "[test] extension: $(python -m tools.collect_env --warp-only)"
exec python -m pytest -q "$@" tests
