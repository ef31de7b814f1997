"""DVC stage ``pixels``: Taskonomy's "only image" baseline for every target (reference §2.5).

    python stages/pixels.py --bank data/bank --out outputs/pixels [--params params.yaml]

A small conv net trained from scratch on the target's input images (taskonomy.transfer.readout.PixelsTrunk)
plus a fresh head of the target's kind, with the protocol of the transfers (``transfer`` params: same
transfer-split items, epochs, optimiser, seeds). Writes ``losses.npz`` (one key per target, float32
per-item test losses in bank order), the reference of every transfer's gain, and ``readouts.pt`` (the
trained baselines, which ``adapt_taxonomy`` scores on the target domain: taskonomy.transfer.rescore).
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
import logging
import sys
from pathlib import Path

from taskonomy.config import load_params
from taskonomy.losses import LOSS_FILE, write_keyed
from taskonomy.nets.train import resolve_device
from taskonomy.sources import PIXELS
from taskonomy.stage import run_stage
from taskonomy.storage import ensure_writable
from taskonomy.transfer.engine import (READOUT_FILE, TransferContext, executor_spec, load_targets, run_readouts,
                                       save_readouts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, default=Path("data/bank"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)

    params = load_params(args.params)
    ensure_writable(args.out)
    device = str(resolve_device(params.transfer.device, "transfer.device"))
    from taskonomy.bank import load_splits  # after the checks: a bad input fails fast

    splits = load_splits(args.bank)
    targets = load_targets(splits, params.targets(), params.transfer.images, params.target_only())
    context = TransferContext({}, targets, params.transfer, params.train_task, device)
    readouts = run_readouts(context, [((PIXELS,), t) for t in targets], executor_spec(params.transfer, device),
                            keep=True)
    write_keyed(args.out / LOSS_FILE, {t: readouts[t][PIXELS].losses for t in targets})
    save_readouts(args.out / READOUT_FILE, PIXELS, {t: readouts[t][PIXELS].record for t in targets},
                  params.transfer, params.train_task)
    return 0


if __name__ == "__main__":
    run_stage(main)
