"""DVC stage ``adapt@<task>``: domain adaptation baselines of one task (issue 24).

    python stages/adapt.py TASK --bank data/bank --target data/target --models models \
        --out outputs/adapt/TASK [--params params.yaml]

Reads ``adapt`` (and ``train_task`` / ``tasks`` for the recipe) from params: the task network as the
source-only baseline, each method of ``adapt.methods`` that lists TASK, and the oracle on labelled
target_train, at every seed of ``adapt.seeds``; writes ``runs.csv``, ``losses.npz`` and ``metrics.json``
to ``--out``; ``runs/`` there keeps each finished run, so an interrupted stage resumes at the run. The
work is :func:`taskonomy.baselines.adapt_outputs.adapt_task`.
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
import logging
import sys
from pathlib import Path

from taskonomy.baselines.adapt_outputs import adapt_task
from taskonomy.config import load_params
from taskonomy.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--bank", type=Path, default=Path("data/bank"))
    parser.add_argument("--target", type=Path, default=Path("data/target"), help="the target domain's bank (render_target)")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    params = load_params(args.params)
    adapt_task(args.task, params, args.bank, args.target, args.models, args.out)
    return 0


if __name__ == "__main__":
    run_stage(main)
