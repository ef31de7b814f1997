"""Stage ``report``: reports/index.html (self-contained, opens offline) and reports/README.md.

    python stages/report.py --params params.yaml --task-list outputs/task_list.json --models models \
        --transfer outputs/transfer --bank-samples reports/figures/bank_samples.png \
        --first-order reports/affinity --affinities reports/affinities.csv --taxonomy reports/taxonomy \
        --checks reports/checks/checks.json --lock dvc.lock --timings logs/timings --html reports/index.html --markdown reports/README.md \
        --figures reports/report_figures

Everything is in :mod:`taskonomy.report.build`; a missing input is one line naming the file and the
``dvc repro`` command that makes it (exit code 2).
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
from pathlib import Path

from taskonomy.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    from taskonomy.config import load_params
    from taskonomy.report.build import ReportInputs, write_report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    for flag in ("task-list", "models", "transfer", "bank-samples", "first-order", "affinities", "taxonomy",
                 "checks", "html", "markdown", "figures"):
        ap.add_argument(f"--{flag}", type=Path, required=True)
    ap.add_argument("--finetune", type=Path, help="reports/finetune.csv of stage finetune_summary")
    ap.add_argument("--multitask", type=Path, help="reports/multitask.csv of stage multitask_summary")
    ap.add_argument("--adapt", type=Path, help="reports/adapt.csv of stage adapt_summary")
    ap.add_argument("--lock", type=Path, help="dvc.lock, for the stage list of the timings table")
    ap.add_argument("--timings", type=Path, help="folder of the stages' --timing files (logs/timings)")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    inputs = ReportInputs(task_list=args.task_list, models=args.models, transfer=args.transfer,
                          bank_samples=args.bank_samples, first_order=args.first_order,
                          affinities=args.affinities, taxonomy=args.taxonomy, checks=args.checks,
                          finetune=args.finetune, multitask=args.multitask, adapt=args.adapt, lock=args.lock, timings=args.timings)
    sections = write_report(inputs, params, html=args.html, markdown=args.markdown, figures_dir=args.figures,
                            top_k=params.report.top_sources, root=args.params.resolve().parent)
    print(f"report: {len(sections)} sections -> {args.html}, {args.markdown} (figures in {args.figures})")
    return 0


if __name__ == "__main__":
    run_stage(main)
