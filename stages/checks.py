"""Stage ``checks``: the synthetic bank's known structure, checked on the first-order affinities.

    python stages/checks.py --params params.yaml --first-order reports/affinity/first_order_affinities.csv \
        --transfer outputs/transfer --out reports/checks/checks.json --metrics reports/checks/metrics.json

Each check (taskonomy.analysis.checks) on the affinity matrix, its outcome at each readout seed
(``transfer.seeds``: the first-order readouts of each seed alone) and its pass share over ``checks.rounds``
resamples of every target's readout seeds and test images (from the per-seed first-order losses,
``seed_losses.npz``). Writes the
checks with their claims and findings (``--out``, read by the report) and their numbers (``--metrics``,
for ``dvc metrics show``).
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
from pathlib import Path

from taskonomy.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    from taskonomy.analysis.checks import metrics, run_checks
    from taskonomy.analysis.tables import read_first_order
    from taskonomy.config import load_params
    from taskonomy.losses import read_seed_losses
    from taskonomy.storage import atomic_write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    for flag in ("first-order", "transfer", "out", "metrics"):      # the paths of the usage line above
        ap.add_argument(f"--{flag}", type=Path, required=True)
    args = ap.parse_args(argv)

    params, affinities = load_params(args.params), read_first_order(args.first_order)
    losses = read_seed_losses(list(affinities.columns), list(affinities.index), transfer=args.transfer)
    result = run_checks(affinities, losses, params.affinity.clip, params.checks.rounds, params.checks.seed)
    atomic_write_json(args.out, result)
    atomic_write_json(args.metrics, metrics(result))
    print(f"checks: {result['passed']} of {result['evaluated']} pass -> {args.out}")
    return 0

if __name__ == "__main__":
    run_stage(main)
