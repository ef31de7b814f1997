"""DVC stage ``finetune@<target>``: fine-tuning baselines into one target (issue 22).

    python stages/finetune.py TARGET --bank data/bank --models models --taxonomy reports/taxonomy/solutions
        --first-order reports/affinity/first_order_affinities.csv --out outputs/finetune/TARGET [--params params.yaml]

Reads ``finetune`` (and ``train_task`` for the scratch encoder and heads) from params: for the taxonomy's
source set at ``finetune.budget`` / ``finetune.max_order``, the best and worst first-order source,
``random`` and scratch, trains every mode at every size and seed, and writes ``runs.csv``,
``losses.npz`` and ``metrics.json`` to ``--out``; ``runs/`` there keeps each finished run, so an
interrupted stage resumes at the run. The work is :func:`taskonomy.baselines.finetune_outputs.finetune_target`.
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
import logging
import sys
from pathlib import Path

from taskonomy.baselines.finetune_outputs import finetune_target
from taskonomy.config import check_tasks, load_params
from taskonomy.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("--bank", type=Path, default=Path("data/bank"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--taxonomy", type=Path, default=Path("reports/taxonomy/solutions"))
    parser.add_argument("--first-order", type=Path, default=Path("reports/affinity/first_order_affinities.csv"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    params = load_params(args.params)
    check_tasks(params, [args.target], args.params)
    finetune_target(args.target, params, args.bank, args.models, args.taxonomy, args.first_order, args.out)
    return 0


if __name__ == "__main__":
    run_stage(main)
