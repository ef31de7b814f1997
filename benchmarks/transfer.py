"""Benchmark: the transfer engine vs the naive per-pair loop, on one small configuration.

    .venv/bin/python benchmarks/transfer.py [--bank PATH] [--keep DIR]

Setup (in a temporary folder): a tiny bank (``--bank``: an existing rendered bank; otherwise the test
suite's fake bank, written in the bank format), a params file shrunk to a few sources and targets, and
random-initialised source encoders saved as ``models/<source>/model.pt`` the way ``train_task`` saves
``random`` (the cost of a transfer does not depend on what the encoder learnt).

Measured in the same run (the machine is shared: the load average is printed beside each timing):
- engine, two ways of using the cores: one process with 2 intra-op threads, and 2 forked workers with
  1 thread each sharing the cached representations; the faster is the speedup's numerator;
- naive: every (source, target) pair in a fresh ``python -m taskonomy.transfer.naive`` process, one
  after another, with 2 threads (import, load the bank, encode every batch through the frozen encoder);
- agreement: per-item losses of the two, which use the same seeds, data order and initialisation.
  Compared at the same thread count (2), they differ only by float32 reassociation (encoder batch 256
  vs the training batch) grown through the readout's SGD steps: tolerance |engine - naive| <= 1e-3 x
  mean |loss| per target (1-thread vs 2-thread reductions alone measured 4e-3 after 3 epochs);
- FLOP rate: ``torch.utils.flop_counter.FlopCounterMode`` counts the training and evaluation FLOPs of
  every readout (one extra counting pass); rate = FLOPs / engine time (training part), compared to
  ``torch.mm`` of 1024 x 1024 float32 with 2 threads.

The last line is ``transfer: <S>x speedup over the per-pair loop, <F>% of matmul peak (<P> pairs)``.
"""
from __future__ import annotations

import argparse
import warnings
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the fake bank lives with the tests

from taskonomy.config import load_params  # noqa: E402
from taskonomy.transfer.executors import ExecutorSpec  # noqa: E402
from taskonomy.nets.models import build_encoder  # noqa: E402
from taskonomy.tasks import get_task  # noqa: E402
from taskonomy.nets.train import save_checkpoint, task_checkpoint  # noqa: E402
from taskonomy.transfer import engine as T  # noqa: E402

SOURCES = ["rgb2depth", "edge2d", "random"]
TARGETS = ["rgb2depth", "edge2d", "segmentsemantic", "class_scene", "fix_pose"]
TOLERANCE = 1e-3


def load() -> str:
    return "load %.2f" % os.getloadavg()[0]


def matmul_rate(threads: int = 2, n: int = 1024, reps: int = 20) -> float:
    """Dense float32 matmul FLOP/s with ``threads`` threads (best of a few timed rounds)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - t0) / reps)
    torch.set_num_threads(previous)
    return 2 * n ** 3 / best


def setup(folder: Path, bank: Path | None) -> tuple[Path, Path, Path]:
    """Params, bank and source models for the benchmark in ``folder``."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["tasks"] = {t: {"source_only": t not in TARGETS} for t in dict.fromkeys(SOURCES + TARGETS)}
    raw["train_task"].update(width=8, head_width=32)
    raw["transfer"].update(epochs=3, batch_size=32, images=0)
    if bank is None:
        from fake_bank import write_fake_bank

        bank = write_fake_bank(folder / "bank", {"train": 16, "transfer": 40, "test": 20}, resolution=16)
        raw["render"]["resolution"] = 16
    params_path = folder / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw))
    cfg = load_params(params_path).train_task
    for i, source in enumerate(SOURCES):
        torch.manual_seed(100 + i)
        save_checkpoint(folder / "models" / source / "model.pt",
                        task_checkpoint(get_task(source), cfg, encoder=build_encoder(cfg).eval()))
    return params_path, bank, folder / "models"


def engine(params, splits, models: Path, spec: ExecutorSpec, count_flops: bool = False):
    """All pairs with the engine; returns losses, seconds (total, training part) and FLOPs if counted."""
    t0 = time.perf_counter()
    targets = T.load_targets(splits, TARGETS, params.transfer.images)
    losses, train_seconds, flops = {}, 0.0, 0
    for source in SOURCES:
        reps = T.encode_source(T.load_source_encoder(models / source / "model.pt", source), targets)
        context = T.TransferContext({source: reps}, T.strip_views(targets), params.transfer, params.train_task)
        jobs = [((source,), t) for t in TARGETS]
        t1 = time.perf_counter()
        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                out = T.run_transfers(context, jobs, ExecutorSpec(threads=1))
            flops += counter.get_total_flops()
        else:
            out = T.run_transfers(context, jobs, spec)
        train_seconds += time.perf_counter() - t1
        losses.update({(source, t): out[t][source] for t in TARGETS})
    return losses, time.perf_counter() - t0, train_seconds, flops


def naive(folder: Path, params_path: Path, bank: Path, models: Path):
    t0 = time.perf_counter()
    losses = {}
    for source in SOURCES:
        for target in TARGETS:
            out = folder / f"naive_{source}_{target}.npy"
            subprocess.run([sys.executable, "-m", "taskonomy.transfer.naive", source, target, "--bank", str(bank),
                            "--model", str(models / source / "model.pt"), "--params", str(params_path),
                            "--out", str(out), "--threads", "2"], check=True, cwd=ROOT)
            losses[(source, target)] = np.load(out)
    return losses, time.perf_counter() - t0


def main() -> None:
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, default=None, help="an existing rendered bank (default: fake bank)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args()
    from taskonomy.bank import load_split

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        params_path, bank, models = setup(folder, args.bank)
        params = load_params(params_path)
        splits = {name: load_split(bank, name) for name in ("train", "transfer", "test")}
        pairs = len(SOURCES) * len(TARGETS)
        print(f"{pairs} pairs: sources {SOURCES}, targets {TARGETS}; "
              f"{splits['transfer'].n_views} transfer / {splits['test'].n_views} test views, "
              f"{params.transfer.epochs} epochs, batch {params.transfer.batch_size}")

        peak = matmul_rate(2)
        print(f"matmul 1024x1024 float32, 2 threads: {peak / 1e9:.1f} GFLOP/s  ({load()})")
        variants = {"1 process x 2 threads": ExecutorSpec(threads=2),
                    "2 forked workers x 1 thread": ExecutorSpec(workers=2, threads=1)}
        timings = {}
        for name, spec in variants.items():
            losses, total, train_s, _ = engine(params, splits, models, spec)
            timings[name] = (total, train_s, losses)
            print(f"engine, {name}: {total:.2f} s total, {train_s:.2f} s training  ({load()})")
        best = min(timings, key=lambda k: timings[k][0])
        engine_total, engine_train, engine_losses = timings[best]
        _, _, _, flops = engine(params, splits, models, ExecutorSpec(threads=1), count_flops=True)
        rate = flops / engine_train
        print(f"engine FLOPs (training + evaluation of {pairs} readouts): {flops / 1e9:.2f} GFLOP; "
              f"{rate / 1e9:.2f} GFLOP/s with '{best}'")

        naive_losses, naive_total = naive(folder, params_path, bank, models)
        print(f"naive per-pair processes, 2 threads: {naive_total:.2f} s  ({load()})")

        # Compare at the same thread count (the 2-thread engine run), so that only the encoder's batch
        # shapes differ; 1-thread vs 2-thread reductions alone reach ~4e-3 after a few epochs.
        worst = 0.0
        for key, values in timings["1 process x 2 threads"][2].items():
            scale = float(np.abs(values).mean())
            diff = float(np.abs(values - naive_losses[key]).max()) / scale
            worst = max(worst, diff)
        agree = worst <= TOLERANCE
        print(f"agreement: max |engine - naive| / mean |loss| = {worst:.2e} (tolerance {TOLERANCE:g}): "
              f"{'ok' if agree else 'FAILED'}")
        print("what limits the FLOP rate: tiny convolutions (8-16 channels, 4x4 to 16x16 maps, batch 32) "
              "are dominated by per-op overhead (autograd, allocation, BatchNorm, optimizer steps) rather "
              "than arithmetic; the matmul peak needs large GEMMs")
        speedup = naive_total / engine_total
        print(f"transfer: {speedup:.1f}x speedup over the per-pair loop, {100 * rate / peak:.1f}% of matmul peak "
              f"({pairs} pairs)")
        if not agree:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
