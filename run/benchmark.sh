#!/usr/bin/env bash
# EVSS speed benchmark (tools/benchmark.py): keyframe, the parts of a non-keyframe step, amortised
# cost for k = 1, 5, 10, peak memory, GFLOP/s, data loading on its own, and the per-frame LRASPP
# baseline in the same run; then, each pair interleaved in one process, the optimised exact path against
# the straightforward original-order path, and the fast mode against the exact path (with FLOP rates).
# Usage: bash run/benchmark.sh [benchmark args...]   e.g. --resolutions 512x1024 --threads 2
# Environment: OUT (JSON folder, default runs/benchmark), DEVICE (cpu or cuda, default cpu),
# EVSS_MAKE_WEIGHTS (the reference weight generator make_weights.py: its citys weights; random without it).
set -euo pipefail
cd "$(dirname "$0")/.."
source run/env.sh
OUT=${OUT:-runs/benchmark}
DEVICE=${DEVICE:-cpu}
mkdir -p "$OUT"
python -m tools.benchmark --device "$DEVICE" --variant exact --baseline lraspp --json "$OUT/exact.json" "$@"
python -m tools.benchmark --device "$DEVICE" --compare original exact --no-flops --json "$OUT/compare_exact.json" "$@"
python -m tools.benchmark --device "$DEVICE" --compare exact fast --json "$OUT/compare_fast.json" "$@"
