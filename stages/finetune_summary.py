"""DVC stage ``finetune_summary``: every target's fine-tuning runs compared, with per-image intervals.

    python stages/finetune_summary.py --runs outputs/finetune --table reports/finetune.csv
        --out reports/finetune --metrics reports/metrics/finetune.json [--params params.yaml]

Writes ``--table`` (one row per role and run, with win rates and bootstrap intervals of the mean loss
difference against scratch and against the frozen readout), ``--metrics`` (the headline for ``dvc metrics``:
per target, each role's best test loss at the smallest size next to scratch's, and the lead role's win
rate against scratch) and, in ``--out``, ``curves.csv`` (DVC plots: test loss against items), ``findings.json`` (a sentence per
target, which the report shows) and ``finetune.png``. The work is
:func:`taskonomy.baselines.finetune_summary.write_summary`.
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
from pathlib import Path

from taskonomy.baselines.finetune_summary import write_summary
from taskonomy.config import load_params
from taskonomy.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("outputs/finetune"))
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True, help="the headline numbers (DVC metrics) to write")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    params = load_params(args.params)
    out = args.out
    write_summary(params, args.runs, args.table, args.metrics, out / "curves.csv",
                  out / "findings.json", out / "finetune.png")
    print(f"finetune_summary: {len(params.finetune.targets)} targets -> {args.table}")
    return 0


if __name__ == "__main__":
    run_stage(main)
