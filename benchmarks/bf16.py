"""Benchmark of bf16 autocast on the CPU (issue 25, item 3): what it does to a task network's training
time and to its test loss, against fp32, for the same task, params, data and seed.

    .venv/bin/python benchmarks/bf16.py [RUN] [--tasks rgb2sfnorm,curvature,class_scene] [--epochs N] [--repeats 2]

``RUN`` is a repository after ``dvc repro`` (default: this one): its ``params.yaml`` and bank
``data/bank``. Each task's network trains as its ``train_task`` stage would (taskonomy.nets.train.
train_task_network, with the task's own ``epochs`` / ``lr`` / ``epoch_items``, or ``--epochs``), once in
fp32 and once with the loop's forward passes under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (what
the loop does on CUDA; the losses and the optimiser stay float32). Each task trains ``--repeats`` times in
each precision, the two alternating and the first of each pair swapping, so warm-up and a noisy machine
fall on both alike; a precision's time is its fastest repeat (its test loss is the same every repeat).

Printed per task and precision: training seconds, items/s, the test loss and its ratio to the trivial
baseline's; then the speed-up (fp32 time / bf16 time) and the test loss ratio (bf16 / fp32). A test
loss ratio within the run-to-run spread of a seed (``benchmarks/noise.py --runs``) is no loss.
The last line: ``bf16: <speed-up>x the training speed, test loss x<ratio> (median over tasks)``.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

from taskonomy.bank import load_splits
from taskonomy.config import check_tasks, load_params
from taskonomy.nets import train as loop
from taskonomy.stage import run_main
from taskonomy.tasks import get_task


@contextlib.contextmanager
def cpu_bf16(enabled: bool):
    """The loop's autocast switched to bf16 on the CPU too (it is on for CUDA only)."""
    original = loop.autocast
    if enabled:
        loop.autocast = lambda device: torch.autocast(device.type, dtype=torch.bfloat16)
    try:
        yield
    finally:
        loop.autocast = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=".", type=Path)
    parser.add_argument("--tasks", default="rgb2sfnorm,curvature,class_scene")
    parser.add_argument("--epochs", type=int, default=None, help="default: each task's own (params.yaml)")
    parser.add_argument("--repeats", type=int, default=2, help="trainings per task and precision")
    args = parser.parse_args()
    params = load_params(args.run / "params.yaml")
    tasks = args.tasks.split(",")
    check_tasks(params, tasks, args.run / "params.yaml")
    splits = load_splits(args.run / "data/bank", ("train", "test"))     # checked as one bank
    loop.set_threads(params.train_task.threads)
    print(f"{'task':>14}  {'precision':>9}  {'seconds':>7}  {'items/s':>7}  {'test loss':>9}  {'/trivial':>8}")
    speedups, ratios = [], []
    for name in tasks:
        own = params.tasks[name]
        rows: dict[str, tuple[float, float, float, float]] = {}
        for repeat in range(args.repeats):
            for precision in ("fp32", "bf16")[::1 if repeat % 2 == 0 else -1]:
                with cpu_bf16(precision == "bf16"):
                    run = loop.train_task_network(get_task(name), splits["train"], splits["test"], params.train_task,
                                                  epochs=args.epochs or own.epochs, lr=own.lr,
                                                  epoch_items=own.epoch_items)
                items = run.loop.items_per_epoch(len(run.train)) * run.loop.epochs
                test, trivial = float(run.test_losses.mean()), float(run.trivial_losses.mean())
                best = min(run.fit.seconds, rows[precision][0]) if precision in rows else run.fit.seconds
                rows[precision] = (best, items, test, trivial)
        for precision, (seconds, items, test, trivial) in rows.items():
            print(f"{name:>14}  {precision:>9}  {seconds:7.1f}  {items / seconds:7.0f}  {test:9.4f}  "
                  f"{test / trivial:8.3f}", flush=True)
        speedups.append(rows["fp32"][0] / rows["bf16"][0])
        ratios.append(rows["bf16"][2] / rows["fp32"][2])
        print(f"{name:>14}  bf16 speed-up {speedups[-1]:.2f}x, test loss x{ratios[-1]:.3f}", flush=True)
    print(f"bf16: {np.median(speedups):.2f}x the training speed, test loss x{np.median(ratios):.3f} "
          f"(median over {len(tasks)} tasks)")
    sys.stdout.flush()


if __name__ == "__main__":
    run_main(main)
