#!/usr/bin/env bash
# Shared by run/val_citys.sh and run/val_camvid.sh (set DATASET=cityscapes|camvid); see those.
DATASET=${DATASET:?DATASET must be cityscapes or camvid}
NAME=${DATASET/cityscapes/citys}
set -euo pipefail
cd "$(dirname "$0")/.."
# leading arguments that do not start with "-" are DATA_ROOT, CHECKPOINT, OUT_DIR; the rest go to val.py
positional=()
while [ $# -gt 0 ] && [ ${#positional[@]} -lt 3 ] && [ "${1#-}" = "$1" ]; do positional+=("$1"); shift; done
DATA_ROOT=${positional[0]:-${DATA_ROOT:-}}
CHECKPOINT=${positional[1]:-${CHECKPOINT:-}}
OUT_DIR=${positional[2]:-${OUT_DIR:-runs/val_$NAME}}
if [ -z "$DATA_ROOT" ] || [ -z "$CHECKPOINT" ]; then
  echo "usage: bash run/val_$NAME.sh DATA_ROOT CHECKPOINT [OUT_DIR] [tools/val.py args...]" >&2
  echo "       (or set DATA_ROOT and CHECKPOINT)" >&2
  exit 2
fi
source run/env.sh
DEVICE=${DEVICE:-$(python -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
NUM_GPUS=${NUM_GPUS:-1}
args=(--dataset "$DATASET" --data-root "$DATA_ROOT" --checkpoint "$CHECKPOINT" --out "$OUT_DIR"
      --split "${SPLIT:-val}" --distances "${DISTANCES:-1-9}" --device "$DEVICE" "$@")
if [ "$NUM_GPUS" -gt 1 ]; then
  exec torchrun --standalone --nproc_per_node="$NUM_GPUS" tools/val.py "${args[@]}"
fi
exec python -m tools.val "${args[@]}"
