#!/usr/bin/env bash
# Train EVSS on CamVid: stage 1 (CSRNet), stage 1b (FlowNet) and stage 2 (EVSS).
#   bash run/train_camvid.sh [--gpus N] [--nnodes N --node-rank R --rdzv-endpoint HOST:PORT]
#       [--data-root DIR] [--out DIR] [--stage csrnet|flownet|evss|all] [key=value ...]
# or with NUM_GPUS, DATA_ROOT, OUT_DIR, STAGE in the environment; more than one process uses torchrun.
# Many nodes: the same command on each node with its --node-rank, or under SLURM one srun task per node
# (the flags then come from SLURM's variables); see docs/training.md.
# For CamVid in the SegNet release layout add:
#   data.name=camvid_segnet data.train_split=train data.val_split=val
DATASET=camvid exec bash "$(dirname "$0")/train_stages.sh" "$@"
