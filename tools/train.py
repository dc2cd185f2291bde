"""Train one stage: EVSS's CSRNet, FlowNet or EVSS itself, the recurrent baseline, or DAVSS's stages.

    python -m tools.train --stage csrnet|flownet|evss|recurrent|davss_dmnet|davss --config configs/<recipe>.yaml [key=value ...]
    python -m tools.train --config configs/<recipe>.yaml [key=value ...]   (the stage the recipe names)
    torchrun --nproc_per_node N -m tools.train --stage ... (DistributedDataParallel; nccl / gloo)

The stages, their config sections and the run folder are described in engine/stages/ (one module
per stage). A run resumes from its folder's last.pth automatically (``train.auto_resume=false`` to
refuse) or from ``--resume PATH``, with the settings it was trained with: changing anything but the
length of the run, logging, checkpointing, evaluation and execution settings (engine/resume.py)
stops unless ``--resume-with-changes`` is given, which records the change in the run's
history.jsonl. SIGTERM saves a resumable last.pth and exits with status 143. The last line printed
is the run's JSON summary; a user error is one line ``error: ...`` (exit status: model/errors.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import os

from engine.config import dump
from engine.stages import STAGES, resolve_config, train
from model.errors import run_cli


def stage_list() -> str:
    """One line per stage: its name and the first line of its class docstring."""
    return "\n".join(f"  {name:<12} {(cls.__doc__ or '').strip().splitlines()[0]}" for name, cls in STAGES.items())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__ + "\nStages\n" + stage_list())
    parser.add_argument("--stage", choices=sorted(STAGES), help="stage to train (default: the config's 'stage')")
    parser.add_argument("--config", help="YAML recipe (configs/*.yaml)")
    parser.add_argument("--resume", help="checkpoint to resume from (default: OUT_DIR/last.pth when it exists)")
    parser.add_argument("--resume-with-changes", action="store_true",
                        help="resume although settings differ from the checkpoint's (recorded in history.jsonl)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (dotted keys)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.print_config:
        print(dump(resolve_config(args.stage, args.config, args.overrides)), end="")
        return
    summary = train(args.stage, args.config, args.overrides, args.resume, args.resume_with_changes)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    run_cli(main)
