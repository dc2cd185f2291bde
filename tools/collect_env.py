"""Print the environment report (versions, devices, threads, which warp implementation is active).

    python -m tools.collect_env            # readable
    python -m tools.collect_env --json     # one JSON object
"""
from __future__ import annotations

import argparse
import json

from engine.environment import collect_env
from model.errors import run_cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--warp-only", action="store_true", help="print only the active warp implementation")
    args = parser.parse_args(argv)
    report = collect_env()
    if args.warp_only:
        print(report["warp_backend"])
    elif args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    run_cli(main)
