#!/usr/bin/env bash
# Train EVSS on Cityscapes: stage 1 (CSRNet), stage 1b (FlowNet) and stage 2 (EVSS).
#   bash run/train_citys.sh [--gpus N] [--nnodes N --node-rank R --rdzv-endpoint HOST:PORT]
#       [--data-root DIR] [--out DIR] [--stage csrnet|flownet|evss|all] [key=value ...]
# or with NUM_GPUS, DATA_ROOT, OUT_DIR, STAGE in the environment; more than one process uses torchrun.
# Many nodes: the same command on each node with its --node-rank, or under SLURM one srun task per node
# (the flags then come from SLURM's variables); see docs/training.md.
DATASET=cityscapes exec bash "$(dirname "$0")/train_stages.sh" "$@"
