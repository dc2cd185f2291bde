#!/usr/bin/env bash
# Evaluate optical-flow estimators: EPE on an MPI-Sintel sample pair ($SINTEL) and warping error on the
# consecutive frames of CamVid val in the SegNet layout ($CAMVID) (see tools/eval_flow.py).
#
#   bash run/eval_flow.sh [OUT_DIR] [tools/eval_flow.py arguments...]
#
# Default estimators: dis farneback zero. FlowNet checkpoints: --flownet runs/.../final.pth=NAME.
# Example (the stage-1b selection):
#   bash run/eval_flow.sh runs/flow_select/eval dis farneback zero \
#     --flownet runs/flow_select/distill/final.pth=flownet-distill \
#     --flownet runs/flow_select/photometric/final.pth=flownet-photometric \
#     --flownet runs/flow_select/both/final.pth=flownet-both
# Environment: THREADS (torch/OpenCV CPU threads, default 1), SINTEL, CAMVID (data folders).
set -euo pipefail
cd "$(dirname "$0")/.."
source run/env.sh
OUT_DIR=runs/flow_eval
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ] && ! [[ "$1" =~ ^(dis|dis-fast|dis-ultrafast|farneback|zero)$ ]]; then
  OUT_DIR=$1; shift
fi
extra=()
[ -n "${SINTEL:-}" ] && extra+=(--sintel "$SINTEL")
[ -n "${CAMVID:-}" ] && extra+=(--camvid "$CAMVID")
exec python -m tools.eval_flow --out "$OUT_DIR" --threads "${THREADS:-1}" "${extra[@]}" "$@"
