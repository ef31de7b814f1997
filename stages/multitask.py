"""DVC stage ``multitask@<grouping>``: multi-task networks of one grouping of the studied tasks (issue 23).

    python stages/multitask.py GROUPING --bank data/bank --models models --taxonomy reports/taxonomy/solutions
        --out outputs/multitask/GROUPING [--params params.yaml]

Reads ``multitask`` (and ``train_task`` / ``tasks`` for the architecture and schedule) from params: the
groups of GROUPING (single, taxonomy, all, random or a custom one) per seed, each group of two tasks or
more trained as one network per weighting, a group of one reused from ``models/<task>``; writes
``runs.csv``, ``losses.npz``, ``metrics.json`` (and ``tag.json`` for ``all``) to ``--out``; ``runs/``
there keeps each finished run, so an interrupted stage resumes at the run. The work is
:func:`taskonomy.baselines.multitask_outputs.multitask_grouping`.
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
import logging
import sys
from pathlib import Path

from taskonomy.baselines.multitask_outputs import multitask_grouping
from taskonomy.config import load_params
from taskonomy.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grouping")
    parser.add_argument("--bank", type=Path, default=Path("data/bank"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--taxonomy", type=Path, default=Path("reports/taxonomy/solutions"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    params = load_params(args.params)
    multitask_grouping(args.grouping, params, args.bank, args.models, args.taxonomy, args.out)
    return 0


if __name__ == "__main__":
    run_stage(main)
