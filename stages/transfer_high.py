"""DVC stage ``transfer_high@<target>``: higher-order transfers into one target (reference §3).

    python stages/transfer_high.py TARGET --bank data/bank --affinities reports/affinities.csv \
        --reps outputs/transfer --out outputs/transfer_high/TARGET [--params params.yaml]

The source sets of orders 2..``transfer.max_order`` come from the beam over the target's first-order
sources ranked by AHP affinity (taskonomy.beam). Each set's cached representations (written by the
``transfer@<source>`` stages, ``<reps>/<source>/reps.npz``) are concatenated along channels and read
out like a first-order transfer. Writes ``losses.npz`` with one key per set (``s1__s2``), float32
per-item test losses in bank order. A source-only task is never a target: its instance writes an
empty ``losses.npz`` and exits.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from taskonomy.beam import high_order_sets, read_affinity_rows, set_key
from taskonomy.config import load_params
from taskonomy.errors import ParamsError, run_main
from taskonomy.storage import atomic_savez
from taskonomy.train import resolve_device
from taskonomy.transfer import TransferContext, executor_spec, load_reps, load_targets, run_transfers, strip_views


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("--bank", type=Path, default=Path("data/bank"))
    parser.add_argument("--affinities", type=Path, required=True)
    parser.add_argument("--reps", type=Path, required=True, help="folder of the transfer stages' outputs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    params = load_params(args.params)
    if args.target not in params.tasks:
        raise ParamsError(f"{args.params}: tasks.{args.target}: not in the task list "
                          f"(listed: {', '.join(params.tasks)})")
    if params.tasks[args.target].source_only or params.transfer.max_order < 2:
        atomic_savez(args.out / "losses.npz", {})
        return 0
    tp = params.transfer
    sets = high_order_sets(read_affinity_rows(args.affinities), args.target, tp.max_order, tp.beam, tp.beam_order4)
    unknown = sorted({s for group in sets for s in group} - set(params.tasks))
    if unknown:
        raise ParamsError(f"{args.affinities}: sources {', '.join(unknown)} are not in the task list; "
                          f"rerun the affinity stage")
    from taskonomy.bank import load_split

    device = str(resolve_device(tp.device))
    splits = {name: load_split(args.bank, name) for name in ("train", "transfer", "test")}
    targets = strip_views(load_targets(splits, [args.target], tp.images))
    reps = {s: load_reps(args.reps / s / "reps.npz", s) for s in sorted({s for group in sets for s in group})}
    context = TransferContext(reps, targets, tp, params.train_task, device)
    losses = run_transfers(context, [(group, args.target) for group in sets], executor_spec(tp, device))
    atomic_savez(args.out / "losses.npz", {set_key(g): losses[args.target][set_key(g)] for g in sets})
    return 0


if __name__ == "__main__":
    run_main(main)
