"""The recurrent baseline: CSRNet + ConvLSTM/ConvGRU trained on windows of consecutive frames.

    python -m tools.train_recurrent --config configs/<recipe>_recurrent.yaml [--resume PATH] [key=value ...]

Same as ``python -m tools.train --stage recurrent ...``; see tools/train_temporal.py for the options.
"""
from tools.train import main

if __name__ == "__main__":
    main(stage="recurrent")
