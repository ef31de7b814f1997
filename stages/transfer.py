"""DVC stage ``transfer@<source>``: every first-order readout from one frozen source encoder.

    python stages/transfer.py SOURCE --bank data/bank --models models --out outputs/transfer/SOURCE \
        [--params params.yaml]

Reads the ``transfer`` and ``train_task`` sections and the task list. The source encoder runs once over
the transfer and test splits; a readout into every target of the task list (t <- t included) trains
on the cached representation (taskonomy.transfer.engine). Writes to ``--out``:

- ``losses.npz``: one key per target, float32 (N_t,) per-item test losses in bank order;
- ``reps.npz``: the cached standardised representations, float32 (what the readouts here trained on),
  ``'<split>/<transform>'`` -> (V, C, h, w), read by ``transfer_high`` instead of re-encoding;
- ``readouts.pt``: every trained readout (weights and what rebuilds it) and the standardisation moments of
  the source per input transform, for scoring another split later (``adapt_taxonomy``);
- ``metrics.json``: timings, executor, load average.

SOURCE is a task (its encoder: ``<models>/SOURCE/model.pt``) or one of the user's own encoders
(``encoders.SOURCE`` in params, DVC stage ``encoder@SOURCE``; taskonomy.nets.external).
A ``target_only`` (novel) task is never a source: its outputs are written empty (``metrics.json`` says
``target_only``), so the stage's outputs exist for every task of the list.
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
import logging
import sys
from pathlib import Path

from taskonomy.config import check_tasks, load_params
from taskonomy.stage import run_stage
from taskonomy.transfer.outputs import first_order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("--bank", type=Path, default=Path("data/bank"))
    parser.add_argument("--models", type=Path, default=Path("models"), help="the task networks' folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    params = load_params(args.params)
    if args.source not in params.encoders:
        check_tasks(params, [args.source], args.params)
    first_order(args.source, params, args.bank, args.models, args.out)
    return 0


if __name__ == "__main__":
    run_stage(main)
