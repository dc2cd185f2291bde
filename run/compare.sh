#!/usr/bin/env bash
# Compare per-frame, ETC, recurrent and EVSS on the same clips (accuracy, temporal consistency, latency).
# Usage: bash run/compare.sh [--from-run runs/demo_final] [other tools/compare.py options]
# With no arguments: the synthetic set on CPU, training what it needs into runs/compare.
set -euo pipefail
cd "$(dirname "$0")/.."
source run/env.sh
exec python -m tools.compare "$@"
