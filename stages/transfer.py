"""DVC stage ``transfer@<source>``: every first-order readout from one frozen source encoder.

    python stages/transfer.py SOURCE --bank data/bank --model models/SOURCE/model.pt \
        --out outputs/transfer/SOURCE [--params params.yaml]

Reads the ``transfer`` and ``train_task`` sections and the task list. The source encoder runs once over
the transfer and test splits; a readout into every target of the task list (t <- t included) trains
on the cached representation (taskonomy.transfer.engine). Writes to ``--out``:

- ``losses.npz``: one key per target, float32 (N_t,) per-item test losses in bank order;
- ``reps.npz``: the cached standardised representations, float32 (what the readouts here trained on),
  ``'<split>/<transform>'`` -> (V, C, h, w), read by ``transfer_high`` instead of re-encoding;
- ``metrics.json``: timings, executor, load average.
"""
from __future__ import annotations

from _stage import delegate

delegate(__name__, __file__)  # the project's Python; a warm fork server runs the stage when one is up

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from taskonomy.config import check_tasks, load_params
from taskonomy.errors import run_stage
from taskonomy.storage import atomic_savez, atomic_write_json
from taskonomy.nets.train import resolve_device
from taskonomy.transfer.engine import (TransferContext, encode_source, executor_spec, load_source_encoder, load_targets,
                                run_transfers, save_reps, strip_views)


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
    encoder = load_source_encoder(args.model, args.source)
    device = str(resolve_device(params.transfer.device))
    t0 = time.perf_counter()
    from taskonomy.bank import load_splits  # after the checks: a bad input fails fast

    splits = load_splits(args.bank)
    targets = load_targets(splits, params.targets(), params.transfer.images)
    t_load = time.perf_counter()
    reps = encode_source(encoder, targets, device=device)
    t_encode = time.perf_counter()
    context = TransferContext({args.source: reps}, strip_views(targets), params.transfer, params.train_task, device)
    spec = executor_spec(params.transfer, device)
    losses = run_transfers(context, [((args.source,), t) for t in targets], spec)
    t_train = time.perf_counter()

    atomic_savez(args.out / "losses.npz", {t: losses[t][args.source] for t in targets})
    save_reps(args.out / "reps.npz", reps)
    atomic_write_json(args.out / "metrics.json", {
        "source": args.source, "targets": len(targets), "device": device, "executor": spec.kind,
        "workers": spec.workers, "threads": spec.threads, "load_seconds": round(t_load - t0, 3),
        "encode_seconds": round(t_encode - t_load, 3), "train_seconds": round(t_train - t_encode, 3),
        "loadavg": round(os.getloadavg()[0], 2)})
    return 0


if __name__ == "__main__":
    run_stage(main)
