"""DVC stage ``transfer_high``: higher-order transfers into every target (reference §3).

    python stages/transfer_high.py [TARGET ...] --bank data/bank \
        --affinities reports/affinity/first_order_affinities.csv --reps outputs/transfer \
        --out outputs/transfer_high [--params params.yaml]

The source sets of orders 2..``transfer.max_order`` come from the beam over each target's first-order
sources ranked by AHP affinity (taskonomy.transfer.beam). Each set's cached representations (written by the
``transfer@<source>`` stages, ``<reps>/<source>/reps.npz``) are concatenated along channels and read
out like a first-order transfer. Writes ``<out>/<target>/losses.npz`` for every target (all targets of
the task list unless named), one key per set (``s1__s2``), float32 per-item test losses in bank order.

One stage, not one per target: every target's beam reads the whole first-order table and every
source's representation, so any upstream change reruns all of them anyway; one process saves a
Python + torch start per target and keeps the workers busy across targets.
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
import logging
import sys
from pathlib import Path

from taskonomy.config import check_tasks, load_params
from taskonomy.errors import ParamsError
from taskonomy.stage import run_stage
from taskonomy.transfer.outputs import high_order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="targets to run (default: every target of the task list)")
    parser.add_argument("--bank", type=Path, default=Path("data/bank"))
    parser.add_argument("--affinities", type=Path, required=True)
    parser.add_argument("--reps", type=Path, required=True, help="folder of the transfer stages' outputs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("taskonomy.transfer").setLevel(logging.INFO)

    params = load_params(args.params)
    check_tasks(params, args.targets, args.params)
    for target in args.targets:
        if params.tasks[target].source_only:
            raise ParamsError(f"{args.params}: tasks.{target}: is source_only, so it is never a transfer target")
    high_order(args.targets or params.targets(), params, args.bank, args.affinities, args.reps, args.out)
    return 0


if __name__ == "__main__":
    run_stage(main)
