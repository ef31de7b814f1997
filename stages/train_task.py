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

``checkpoint.pt`` in ``--out`` is the per-epoch resume file: a rerun after an interruption continues
from it, and it is deleted once the final outputs are written.

``random`` is not trained: its seeded, randomly initialised encoder is saved as ``model.pt`` for the
transfer stage; ``test_losses.npy`` is empty (it is a source only) and ``samples.png`` shows its
representation. The ``pixels`` baseline (a from-scratch network on the transfer split) is built in the
transfer stage (next issue), not here.
"""
from __future__ import annotations

from _stage import delegate

delegate(__name__, __file__)  # the project's Python; a warm fork server runs the stage when one is up

import argparse
import csv
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch

from taskonomy.bank import load_split
from taskonomy.config import as_dict, check_tasks, load_params
from taskonomy.errors import run_stage
from taskonomy.nets.models import build_encoder
from taskonomy.nets.samples import random_encoder_sheet, sample_sheet
from taskonomy.storage import atomic_path, atomic_save, atomic_write_json
from taskonomy.tasks import get_task
from taskonomy.nets.train import (predict, save_checkpoint, set_threads, task_checkpoint, task_seed,
                             train_task_network)

SAMPLES = 4
CURVE_FIELDS = ["epoch", "train_loss", "test_loss", "lr", "seconds"]


def _write_curve(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, CURVE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("--bank", type=Path, default=Path("data/bank"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    params = load_params(args.params)
    check_tasks(params, [args.task], args.params)
    task, task_params, cfg = get_task(args.task), params.tasks[args.task], params.train_task
    set_threads(cfg.threads)
    out = args.out
    test_split = load_split(args.bank, "test")
    record = {"task": task.name, "tasks": as_dict(task_params)}

    if not task.trainable:
        torch.manual_seed(task_seed(cfg.seed, task))
        encoder = build_encoder(cfg).eval()
        save_checkpoint(out / "model.pt", task_checkpoint(task, cfg, encoder=encoder, params=record))
        atomic_save(out / "test_losses.npy", np.zeros(0, dtype=np.float32))
        atomic_write_json(out / "metrics.json", {"task": task.name, "trained": False})
        _write_curve(out / "curve.csv", [])
        image = torch.from_numpy(np.asarray(test_split["rgb"][:SAMPLES], dtype=np.float32)) / 127.5 - 1
        with torch.no_grad():
            random_encoder_sheet(image, encoder(image), out / "samples.png")
        return 0

    resume = out / "checkpoint.pt"
    run = train_task_network(task, load_split(args.bank, "train"), test_split, cfg,
                             epochs=task_params.epochs, lr=task_params.lr, epoch_items=task_params.epoch_items,
                             checkpoint=resume)
    save_checkpoint(out / "model.pt", task_checkpoint(task, cfg, network=run.network, run=run, params=record))
    atomic_save(out / "test_losses.npy", run.test_losses)
    test, trivial = float(run.test_losses.mean()), float(run.trivial_losses.mean())
    atomic_write_json(out / "metrics.json", {
        "task": task.name, "trained": True, "kind": task.kind.value, "loss": task.loss.value,
        "test_loss": test, "trivial_loss": trivial, "loss_ratio": test / trivial if trivial else None,
        "beats_trivial": float((run.test_losses < run.trivial_losses).mean()),
        "train_seconds": round(run.fit.seconds, 2), "epochs": run.loop.epochs,
        "train_items": len(run.train), "epoch_items": run.loop.items_per_epoch(len(run.train)),
        "test_items": len(run.test), "device": run.fit.device,
        "threads": torch.get_num_threads(), "loadavg": round(os.getloadavg()[0], 2)})
    _write_curve(out / "curve.csv", run.fit.history)
    items = torch.linspace(0, len(run.test) - 1, min(SAMPLES, len(run.test))).round().long()
    sample_sheet(run.test, predict(run.network, run.test, items), items, out / "samples.png")
    resume.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    run_stage(main)
