"""DVC stage ``train_task@<task>``: one task-specific network ("self", the gold standard) per task.

    python stages/train_task.py TASK --bank data/bank --out models/TASK [--params params.yaml]

Reads ``train_task`` and ``tasks.<TASK>`` (per-task ``epochs`` / ``lr`` / ``epoch_items`` overrides) from
params, trains on the bank's train split, evaluates on the test split and writes to ``--out``:

- ``model.pt``: the final checkpoint (encoder + head, train_task params, standardisation stats, code
  version; see ``taskonomy.nets.train.task_checkpoint``); ``taskonomy.nets.train.load_encoder`` reads it back;
- ``test_losses.npy``: float32 per-item test losses in bank order (docs/losses-format.md);
- ``metrics.json``: mean test loss, the trivial baseline's (the train split's mean prediction under
  the same per-item loss), the share of test items where the network beats it, training time;
- ``curve.csv``: per epoch train loss, test loss, learning rate, seconds;
- ``samples.png``: input / ground truth / prediction for a few test items.

With ``--curves DIR`` (dvc.yaml: ``reports/curves/<task>``, tracked in git) it writes the train and test
loss per epoch there with DVCLive, for ``dvc plots show`` / ``dvc plots diff`` (taskonomy.nets.curves).
With ``--metrics PATH`` (dvc.yaml: ``reports/metrics/networks/<task>.json``, tracked in git) it also writes
the network's headline numbers for ``dvc metrics show -R reports/metrics/networks`` / ``dvc metrics diff``:
test loss, trivial loss, their ratio and the share of test items beating the trivial baseline (nothing
for ``random``, which is not trained).

``checkpoint.pt`` in ``--out`` is the per-epoch resume file: a rerun after an interruption continues
from it, and it is deleted once the final outputs are written.

``random`` is not trained: its seeded, randomly initialised encoder is saved as ``model.pt`` for the
transfer stage; ``test_losses.npy`` is empty (it is a source only) and ``samples.png`` shows its
representation. The ``pixels`` baseline (a from-scratch network on the transfer split) is stage
``pixels``. The work is :func:`taskonomy.nets.outputs.make_task_network`.
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
import logging
import sys
from pathlib import Path

from taskonomy.config import check_tasks, load_params
from taskonomy.nets.outputs import make_task_network, write_network_metrics
from taskonomy.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--bank", type=Path, default=Path("data/bank"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--metrics", type=Path, help="the network's headline numbers (DVC metrics) to write")
    parser.add_argument("--curves", type=Path, help="folder for its training curves (DVCLive; DVC plots)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    params = load_params(args.params)
    check_tasks(params, [args.task], args.params)
    make_task_network(args.task, params, args.bank, args.out, args.curves)
    if args.metrics is not None:
        write_network_metrics(args.out / "metrics.json", args.metrics)
    return 0


if __name__ == "__main__":
    run_stage(main)
