#!/usr/bin/env bash
# Evaluate EVSS on Cityscapes (official leftImg8bit_sequence + gtFine layout) per keyframe distance, d = 0 and plain warping.
#
#   bash run/val_citys.sh DATA_ROOT CHECKPOINT [OUT_DIR] [extra tools/val.py arguments...]
#
# or with environment variables: DATA_ROOT, CHECKPOINT, OUT_DIR (default runs/val_citys),
# DEVICE (cpu or cuda; default cuda when available), NUM_GPUS (> 1: torchrun, windows split over
# the processes), SPLIT (default val), DISTANCES (default 1-9; "original" = 3,5,7,9).
# Example: bash run/val_citys.sh /data/cityscapes citys_evss.pth runs/val_citys --temporal --flow-source dis
DATASET=cityscapes exec bash "$(dirname "$0")/val_dataset.sh" "$@"
