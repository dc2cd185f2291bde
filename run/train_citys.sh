#!/usr/bin/env bash
# Train EVSS on Cityscapes: stage 1 (CSRNet), stage 1b (FlowNet) and stage 2 (EVSS).
#   bash run/train_citys.sh [--gpus N] [--data-root DIR] [--out DIR] [--stage csrnet|flownet|evss|all] [key=value ...]
# or with NUM_GPUS, DATA_ROOT, OUT_DIR, STAGE in the environment; more than one process uses torchrun.
DATASET=cityscapes exec bash "$(dirname "$0")/train_stages.sh" "$@"
