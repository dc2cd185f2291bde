#!/usr/bin/env bash
# The main job. Sets up the environment when needed, then runs tools/demo.py.
# Usage: bash run/demo.sh [--out DIR] [other tools/demo.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
setup_start=$(date +%s)
source run/env.sh
echo "[demo] environment ready in $(( $(date +%s) - setup_start )) s"
exec python -m tools.demo "$@"
