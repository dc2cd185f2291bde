"""Stage 2: train EVSS (FlowNet + CoNet, CSRNet frozen) as the original.

    python -m tools.train_evss --config configs/<recipe>_evss.yaml [--resume PATH] [key=value ...]

Same as ``python -m tools.train --stage evss ...``; see tools/train.py for the options.
"""
from tools.train import main

if __name__ == "__main__":
    main(stage="evss")
