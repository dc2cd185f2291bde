"""Stage 1b: train FlowNetS without downloaded weights (DIS distillation and/or self-supervision).

    python -m tools.train_flownet --config configs/<recipe>_flownet.yaml [--resume PATH] [key=value ...]

Same as ``python -m tools.train --stage flownet ...``; see tools/train.py for the options.
"""
from tools.train import main

if __name__ == "__main__":
    main(stage="flownet")
