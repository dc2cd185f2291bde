#!/usr/bin/env bash
# The GPU path checked in one command (tools/gpu_check.py): the extension built for the GPU present, the
# CUDA test tier, the benchmark (original, exact and fast at 512x1024 and 1024x2048) and 100 AMP training
# iterations per stage of run/train_citys.sh on synthetic Cityscapes-layout data; one JSON, one table.
#   bash run/gpu_check.sh [--dry-run] [--out FILE.json] [--work DIR]
# --dry-run runs every step on the CPU at tiny sizes; without it a machine with no GPU stops with one
# error line. Sized for under 8 minutes on one H100. Environment: TORCH_CUDA_ARCH_LIST (default: the
# GPU's compute capability, from nvidia-smi).
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
  *" --dry-run "*) dry_run=1 ;;
  *) dry_run=0 ;;
esac
if [ "$dry_run" = 0 ] && [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  # known before run/env.sh, which builds the extension (when its sources changed) with it
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 || true)
  if [ -z "$cap" ]; then
    echo "error: no GPU found (nvidia-smi lists none); bash run/gpu_check.sh --dry-run runs every step on the CPU" >&2
    exit 2
  fi
  export TORCH_CUDA_ARCH_LIST=$cap
fi
source run/env.sh
exec python -m tools.gpu_check "$@"
