"""Stage 1: train the CSRNet keyframe network on labelled frames.

    python -m tools.train_csrnet --config configs/<recipe>_csrnet.yaml [--resume PATH] [key=value ...]

Same as ``python -m tools.train --stage csrnet ...``; see tools/train.py for the options.
"""
from tools.train import main

if __name__ == "__main__":
    main(stage="csrnet")
