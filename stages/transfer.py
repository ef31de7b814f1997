"""DVC stage ``transfer@<source>``: every first-order readout from one frozen source encoder.

    python stages/transfer.py SOURCE --bank data/bank --model models/SOURCE/model.pt \
        --out outputs/transfer/SOURCE [--params params.yaml]

Reads the ``transfer`` and ``train_task`` sections and the task list. The source encoder runs once over
the transfer and test splits; a readout into every target of the task list (t <- t included) trains
on the cached representation (taskonomy.transfer.engine). Writes to ``--out``:

- ``losses.npz``: one key per target, float32 (N_t,) per-item test losses in bank order;
- ``reps.npz``: the cached standardised representations, float32 (what the readouts here trained on),
  ``'<split>/<transform>'`` -> (V, C, h, w), read by ``transfer_high`` instead of re-encoding;
- ``readouts.pt``: every trained readout (weights and what rebuilds it) and the standardisation moments of
  the source per input transform, for scoring another split later (``adapt_taxonomy``);
- ``metrics.json``: timings, executor, load average.
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
    parser.add_argument("--model", type=Path, required=True, help="the source's models/<source>/model.pt")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    params = load_params(args.params)
    check_tasks(params, [args.source], args.params)
    first_order(args.source, params, args.bank, args.model, args.out)
    return 0


if __name__ == "__main__":
    run_stage(main)
