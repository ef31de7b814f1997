"""DVC stage ``adapt_summary``: every adapted task's methods between source-only and the oracle (issue 24).

    python stages/adapt_summary.py --runs outputs/adapt --table reports/adapt.csv --out reports/adapt \
        --metrics reports/metrics/adapt.json [--params params.yaml]

Reads each ``adapt@<task>`` stage's ``runs.csv`` and ``losses.npz``; writes the table (gap closed per
seed and for the seed mean, with a per-image bootstrap interval), ``target_selected.csv`` (marked: what
selecting epochs on target labels would have claimed), ``gap.csv``, ``findings.json``
and ``adapt.png`` to ``--out``, and gap closed per task and method with its interval to ``--metrics``
(``dvc metrics``) (taskonomy.baselines.adapt_summary).
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
from pathlib import Path

from taskonomy.baselines.adapt_summary import write_summary
from taskonomy.config import load_params
from taskonomy.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("outputs/adapt"))
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="the headline numbers (DVC metrics) to write")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    params = load_params(args.params)
    record = write_summary(params, args.runs, args.table, args.out, args.metrics)
    for line in record["findings"]:
        print(line)
    return 0


if __name__ == "__main__":
    run_stage(main)
