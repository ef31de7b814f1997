"""DVC stage ``multitask_summary``: every grouping and weighting against the task networks.

    python stages/multitask_summary.py --runs outputs/multitask --models models
        --first-order reports/affinity/first_order_affinities.csv --table reports/multitask.csv
        --out reports/multitask --metrics reports/metrics/multitask.json [--params params.yaml]

Writes ``--table`` (one row per grouping, group, weighting, seed and task: test loss, the task
network's, relative improvement) and, in ``--out``, ``delta.csv`` (Delta_p per grouping x weighting,
per seed and with a per-image bootstrap interval; DVC plots), ``tag.csv`` (TAG's against transfer
affinity), ``findings.json`` (what the report says) and
``multitask.png``; ``--metrics``: Delta_p per grouping x weighting (mean and std over seeds) and TAG's
rank correlation, for ``dvc metrics``. The work is :func:`taskonomy.baselines.multitask_summary.write_summary`.
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
from pathlib import Path

from taskonomy.baselines.multitask_summary import write_summary
from taskonomy.config import load_params
from taskonomy.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("outputs/multitask"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--first-order", type=Path, default=Path("reports/affinity/first_order_affinities.csv"))
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="the headline numbers (DVC metrics) to write")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    params = load_params(args.params)
    record = write_summary(params, args.runs, args.models, args.first_order, args.table, args.out, args.metrics)
    for line in record["findings"]:
        print(line)
    return 0


if __name__ == "__main__":
    run_stage(main)
