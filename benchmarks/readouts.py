"""Benchmark of readout settings: cost and affinity structure of first-order transfers under variants of
``transfer`` params, retrained from a finished run's cached representations.

    .venv/bin/python benchmarks/readouts.py [RUN] [--targets a,b] [--sources a,b]
        [--variant 'epoch_items=1800,batch_size=192,lr=0.006' ...]

``RUN`` is a repository after ``dvc repro`` (default: this one): its ``params.yaml``, its bank
``data/bank`` and the representations each ``transfer`` stage cached in ``outputs/transfer/<source>/
reps.npz``. No encoder runs again, so a variant costs only its readouts: every (source, target) pair of
the chosen targets is trained from scratch on the transfer split and evaluated on the test split, with
the run's params (the base) and then with each ``--variant`` (``key=value`` overrides of the ``transfer``
section, checked like params.yaml). By default the targets are those the known-structure checks name
(taskonomy.analysis.checks) and the sources every task of the run.

Printed per variant: seconds and seconds per readout (ratio to the base, the cost a ``transfer`` stage
would pay), then per target the best source and its mean test loss, the rank of each source that a
check expects near the top, and ``random``'s rank; then the checks on the affinities of these targets
(``group_mean`` and ``near_last`` over the chosen targets only, so only indicative). The last line is
``readouts: <variant>: <ratio>x the base cost, <n> of <m> checks pass`` for the last variant.

The cache holds the float32 representations the ``transfer`` stage trained its readouts on, and the
readouts run with the stage's executor settings, so the base variant retrains the run's own first-order
readouts and prints their largest per-item difference from the run's own losses (0 when the machine
and the threads per readout match). Readout training is chaotic: caches rounded to float16 moved
per-item losses by up to 0.16 (rgb2depth -> room_layout) and swapped close ranks, so a check that flips
under a small variant was never firm; the report's bootstrap pass shares say the same about the test
images.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from taskonomy.analysis.affinity import first_order_matrices
from taskonomy.losses import load_npz, source_path
from taskonomy.bank import load_splits
from taskonomy.config import TransferParams, as_dict, check_tasks, from_dict, load_params
from taskonomy.errors import TaskonomyError
from taskonomy.stage import run_main
from taskonomy.analysis.checks import EXPECTATIONS, NA, PASS, check_structure, ranked_sources
from taskonomy.nets.train import resolve_device
from taskonomy.transfer.engine import (TransferContext, executor_spec, load_reps, load_targets, run_transfers,
                                strip_views)

RULES_PER_TARGET = ("in_top_k", "prefer_group", "share_sources")     # exact on a subset of targets


def checked_targets() -> list[str]:
    """Targets of the checks that judge each target on its own column (in order, once each)."""
    names = [t for e in EXPECTATIONS if e.rule in RULES_PER_TARGET for t in e.targets]
    return list(dict.fromkeys(names))


def expected_sources(target: str) -> list[str]:
    """Sources a per-target check expects near the top of ``target``'s column."""
    names = [s for e in EXPECTATIONS if e.rule in RULES_PER_TARGET and target in e.targets
             for s in e.sources if s != target]
    return list(dict.fromkeys(names))


def run_difference(run: Path, losses: dict, sources: list[str], targets: list[str]) -> float:
    """Largest per-item difference between retrained first-order losses and the run's own."""
    worst = 0.0
    for s in sources:
        stored = load_npz(source_path(run / "outputs/transfer", s), f"transfer@{s}", targets)
        worst = max(worst, *(float(np.abs(stored[t] - losses[t][s]).max()) for t in targets))
    return worst


def variant(base: TransferParams, text: str) -> TransferParams:
    """``base`` with ``key=value,key=value`` overrides, validated as the params file is."""
    overrides = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise TaskonomyError(f"--variant {text!r}: {item!r} is not key=value")
        overrides[key.strip()] = yaml.safe_load(value)
    return from_dict(TransferParams, {**as_dict(base), **overrides}, "transfer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=".", type=Path)
    parser.add_argument("--targets", default="", help="comma-separated; default: the checks' targets")
    parser.add_argument("--sources", default="", help="comma-separated; default: every task of the run")
    parser.add_argument("--variant", action="append", default=[], help="key=value,... over transfer params")
    args = parser.parse_args()
    params_path = args.run / "params.yaml"
    params = load_params(params_path)
    targets = args.targets.split(",") if args.targets else [t for t in checked_targets() if t in params.targets()]
    sources = args.sources.split(",") if args.sources else list(params.tasks)
    check_tasks(params, targets + sources, params_path)
    reps = {s: load_reps(args.run / f"outputs/transfer/{s}/reps.npz", s) for s in sources}
    data = strip_views(load_targets(load_splits(args.run / "data/bank"), targets, params.transfer.images))
    device = str(resolve_device(params.transfer.device))
    variants = [("base", params.transfer)] + [(text, variant(params.transfer, text)) for text in args.variant]
    jobs = [((s,), t) for t in targets for s in sources]
    print(f"{args.run.resolve()}: {len(targets)} targets x {len(sources)} sources = {len(jobs)} readouts "
          f"per variant, on {device}")
    base_cost, base = None, dataclasses.asdict(params.transfer)
    for name, p in variants:
        context = TransferContext(reps, data, p, params.train_task, device)
        start = time.perf_counter()
        losses = run_transfers(context, jobs, executor_spec(p, device))
        seconds = time.perf_counter() - start
        base_cost = base_cost or seconds
        mean_loss, affinity = first_order_matrices(losses, params.affinity.clip, sources)
        changed = {k: v for k, v in dataclasses.asdict(p).items() if v != base[k]}
        print(f"\n== {name} {changed or ''}: {seconds:.0f} s, {seconds / len(jobs):.2f} s per readout, "
              f"{seconds / base_cost:.2f}x the base cost")
        if name == "base":
            worst = run_difference(args.run, losses, sources, targets)
            print(f"retrained vs the run's own per-item losses: max |difference| {worst:.3g}")
        print(f"{'target':>16}  {'best source':>16}  {'loss':>6}  expected sources (rank)  random")
        for t in targets:
            ranks = ranked_sources(affinity, t)
            best = ranks[0]
            expected = ", ".join(f"{s} #{ranks.index(s) + 1}" for s in expected_sources(t) if s in ranks) or "-"
            rnd = f"#{ranks.index('random') + 1}/{len(ranks)}" if "random" in ranks else "-"
            print(f"{t:>16}  {best:>16}  {mean_loss.loc[best, t]:6.3f}  {expected:<23}  {rnd}")
        results = [r for r in check_structure(affinity) if r.status != NA]
        for r in results:
            print(f"  {r.status:4}  {r.name:16}  {r.found}")
        passed = sum(r.status == PASS for r in results)
        sys.stdout.flush()
    print(f"readouts: {name}: {seconds / base_cost:.2f}x the base cost, {passed} of {len(results)} checks pass")


if __name__ == "__main__":
    run_main(main)
