#!/usr/bin/env bash
# Evaluate EVSS on CamVid (video or SegNet layout) per keyframe distance, d = 0 and plain warping.
#
#   bash run/val_camvid.sh DATA_ROOT CHECKPOINT [OUT_DIR] [extra tools/val.py arguments...]
#
# or with environment variables: DATA_ROOT, CHECKPOINT, OUT_DIR (default runs/val_camvid),
# DEVICE (cpu or cuda; default cuda when available), NUM_GPUS (> 1: torchrun, windows split over
# the processes), SPLIT (default val), DISTANCES (default 1-9; "original" = 3,5,7,9).
# Example: bash run/val_camvid.sh /data/CamVid camvid_evss.pth runs/val_camvid --temporal --flow-source dis
DATASET=camvid exec bash "$(dirname "$0")/val_dataset.sh" "$@"
