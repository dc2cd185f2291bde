#!/usr/bin/env bash
# Evaluate EVSS on CamVid (video or SegNet layout) per keyframe distance, d = 0 and plain warping.
#
#   bash run/val_camvid.sh DATA_ROOT CHECKPOINT [OUT_DIR] [extra tools/val.py arguments...]
#
# or with environment variables: DATA_ROOT, CHECKPOINT, OUT_DIR (default runs/val_camvid),
# DEVICE (cpu or cuda; default cuda when available), NUM_GPUS (> 1: torchrun, windows split over
# the processes), SPLIT (default val), DISTANCES (default 1-9; "original" = 3,5,7,9).
# Example: bash run/val_camvid.sh /data/CamVid camvid_evss.pth runs/val_camvid --temporal --flow-source dis
set -euo pipefail
cd "$(dirname "$0")/.."
# leading arguments that do not start with "-" are DATA_ROOT, CHECKPOINT, OUT_DIR; the rest go to val.py
positional=()
while [ $# -gt 0 ] && [ ${#positional[@]} -lt 3 ] && [ "${1#-}" = "$1" ]; do positional+=("$1"); shift; done
DATA_ROOT=${positional[0]:-${DATA_ROOT:-}}
CHECKPOINT=${positional[1]:-${CHECKPOINT:-}}
OUT_DIR=${positional[2]:-${OUT_DIR:-runs/val_camvid}}
if [ -z "$DATA_ROOT" ] || [ -z "$CHECKPOINT" ]; then
  echo "usage: bash run/val_camvid.sh DATA_ROOT CHECKPOINT [OUT_DIR] [tools/val.py args...]" >&2
  echo "       (or set DATA_ROOT and CHECKPOINT)" >&2
  exit 2
fi
source run/env.sh
DEVICE=${DEVICE:-$(python -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
NUM_GPUS=${NUM_GPUS:-1}
args=(--dataset camvid --data-root "$DATA_ROOT" --checkpoint "$CHECKPOINT" --out "$OUT_DIR"
      --split "${SPLIT:-val}" --distances "${DISTANCES:-1-9}" --device "$DEVICE" "$@")
if [ "$NUM_GPUS" -gt 1 ]; then
  exec torchrun --standalone --nproc_per_node="$NUM_GPUS" tools/val.py "${args[@]}"
fi
exec python tools/val.py "${args[@]}"
