"""What stage ``train_task@<task>`` makes: a task network and everything written about it.

In ``out``: ``model.pt`` (the checkpoint, with what made it), ``test_losses.npy`` (taskonomy.losses),
``metrics.json``, ``curve.csv`` (per epoch) and ``samples.png``; ``checkpoint.pt`` is the per-epoch
resume file, deleted once the rest is written. ``random`` is not trained: its seeded, untrained encoder
is saved, with empty test losses and a sheet of its representation.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from taskonomy.bank import check_same_bank, load_split
from taskonomy.config import Params, as_dict
from taskonomy.losses import SELF_FILE, write_self
from taskonomy.nets.curves import write_curves
from taskonomy.nets.data import STATS_SPLIT
from taskonomy.nets.models import build_encoder
from taskonomy.nets.samples import prediction_sheet, random_encoder_sheet
from taskonomy.nets.train import (predict, resolve_device, save_checkpoint, set_threads, task_checkpoint,
                                  task_seed, train_task_network)
from taskonomy.stage import note_timing
from taskonomy.storage import atomic_write_csv, atomic_write_json, ensure_writable
from taskonomy.tasks import get_task

CURVE_FIELDS = ["epoch", "train_loss", "test_loss", "lr"]


def _write_curve(path: Path, history: list[dict]) -> None:
    atomic_write_csv(path, CURVE_FIELDS, history, extrasaction="ignore")


def make_task_network(name: str, params: Params, bank: Path, out: Path, curves: Path | None = None) -> None:
    """Train task ``name`` (or build the untrained ``random`` encoder) on ``bank`` and write ``out``; with
    ``curves``, its training curves there too (DVCLive; taskonomy.nets.curves)."""
    task, task_params, cfg = get_task(name), params.tasks[name], params.train_task
    ensure_writable(out)
    resolve_device(cfg.device, "train_task.device")     # no CUDA for device: cuda stops here, before the bank
    set_threads(cfg.threads)
    test_split = load_split(bank, "test")
    record = {"task": task.name, "tasks": as_dict(task_params)}

    if not task.trainable:
        torch.manual_seed(task_seed(cfg.seed, task))
        encoder = build_encoder(cfg).eval()
        save_checkpoint(out / "model.pt", task_checkpoint(task, cfg, encoder=encoder, params=record))
        write_self(out / SELF_FILE, np.zeros(0))
        atomic_write_json(out / "metrics.json", {"task": task.name, "trained": False})
        _write_curve(out / "curve.csv", [])
        if curves is not None:
            write_curves(curves, [])
        image = torch.from_numpy(np.asarray(test_split["rgb"][:cfg.samples], dtype=np.float32)) / 127.5 - 1
        with torch.no_grad():
            random_encoder_sheet(image, encoder(image), out / "samples.png")
        return

    resume = out / "checkpoint.pt"
    # a novel (target-only) task has only the small transfer split: its network, trained from scratch on
    # it, is what the taxonomy's transfers into it are compared with
    trained_on = STATS_SPLIT[task_params.target_only]
    train_split = load_split(bank, trained_on)
    check_same_bank({trained_on: train_split, "test": test_split})
    run = train_task_network(task, train_split, test_split, cfg,
                             epochs=task_params.epochs, lr=task_params.lr, epoch_items=task_params.epoch_items,
                             checkpoint=resume)
    save_checkpoint(out / "model.pt", task_checkpoint(task, cfg, network=run.network, run=run, params=record))
    write_self(out / SELF_FILE, run.test_losses)
    test, trivial = float(run.test_losses.mean()), float(run.trivial_losses.mean())
    atomic_write_json(out / "metrics.json", {
        "task": task.name, "trained": True, "trained_on": trained_on, "kind": task.kind.value, "loss": task.loss.value,
        "test_loss": test, "trivial_loss": trivial, "loss_ratio": test / trivial if trivial else None,
        "beats_trivial": float((run.test_losses < run.trivial_losses).mean()),
        "epochs": run.loop.epochs,
        "train_items": len(run.train), "epoch_items": run.loop.items_per_epoch(len(run.train)),
        "test_items": len(run.test), "device": run.fit.device,
        "threads": torch.get_num_threads()})
    note_timing(train_seconds=round(run.fit.seconds, 2))
    _write_curve(out / "curve.csv", run.fit.history)
    if curves is not None:
        write_curves(curves, run.fit.history)
    items = torch.linspace(0, len(run.test) - 1, min(cfg.samples, len(run.test))).round().long()
    prediction_sheet(run.test, predict(run.network, run.test, items), items, out / "samples.png")
    resume.unlink(missing_ok=True)


NETWORK_METRICS = ("test_loss", "trivial_loss", "loss_ratio", "beats_trivial")


def write_network_metrics(record: Path, path: Path) -> None:
    """A task network's headline numbers from its ``metrics.json`` record, rounded for diffs (DVC
    metrics, one file per network so that ``dvc metrics show -R`` prints one row per task); empty
    for an untrained encoder (``random``)."""
    numbers = json.loads(Path(record).read_text())
    atomic_write_json(path, {k: round(float(numbers[k]), 6) for k in NETWORK_METRICS if numbers.get(k) is not None})
