"""What the transfer stages make: ``transfer@<source>`` (every first-order readout from one frozen source)
and ``transfer_high`` (the beam's higher-order source sets into every target).

Every readout is trained at each of ``transfer.seeds`` seeds. ``transfer@<source>`` writes, in ``out``:
``losses.npz`` and ``seed_losses.npz`` (their mean over the seeds, and each seed's: taskonomy.losses), ``reps.npz`` (the source's
representations of the transfer and test splits, which ``transfer_high`` reads back), ``readouts.pt``
(every trained readout with the source's standardisation moments, which ``adapt_taxonomy`` scores on
another domain with: taskonomy.transfer.rescore) and ``metrics.json`` (times per phase). ``transfer_high``
writes ``<out>/<target>/losses.npz`` and ``seed_losses.npz`` for every target (its readouts are not kept).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from taskonomy.analysis.tables import read_affinity_rows
from taskonomy.bank import load_splits
from taskonomy.config import Params
from taskonomy.errors import ParamsError
from taskonomy.losses import high_path, write_seeded
from taskonomy.nets.train import resolve_device
from taskonomy.sources import set_key
from taskonomy.stage import note_timing
from taskonomy.storage import atomic_write_json, ensure_writable
from taskonomy.transfer.beam import high_order_sets
from taskonomy.transfer.engine import (READOUT_FILE, TransferContext, encode_source_moments, executor_spec, load_reps,
                                       load_targets, losses_of, run_seeded, save_readouts, save_reps, source_encoder,
                                       strip_views)

log = logging.getLogger("taskonomy.transfer")


def first_order(source: str, params: Params, bank: Path, models: Path, out: Path) -> None:
    """Encode the transfer and test splits once with ``source``'s frozen encoder (``model``), train a
    readout into every target on them and write ``out``. A target-only (novel) task is no source: its
    outputs are written empty, and say so in ``metrics.json``."""
    ensure_writable(out)
    if source in params.target_only():
        write_seeded(out, {})
        save_reps(out / "reps.npz", {})
        save_readouts(out / READOUT_FILE, source, {}, params.transfer, params.train_task, {})
        atomic_write_json(out / "metrics.json", {"source": source, "targets": 0, "target_only": True})
        log.info("%s: target_only, not a source: no readouts", source)
        return
    encoder = source_encoder(source, params, models)   # before the bank: a bad checkpoint fails fast
    device = str(resolve_device(params.transfer.device, "transfer.device"))
    t0 = time.perf_counter()
    targets = load_targets(load_splits(bank), params.targets(), params.transfer.images, params.target_only())
    t_load = time.perf_counter()
    reps, moments = encode_source_moments(encoder, targets, device=device)
    t_encode = time.perf_counter()
    data, spec = strip_views(targets), executor_spec(params.transfer, device)
    log.info("%s: %d readouts, each at %d seeds", source, len(targets), params.transfer.seeds)
    context = TransferContext({source: reps}, data, params.transfer, params.train_task, device)
    per_seed = run_seeded(context, [((source,), t) for t in targets], spec, keep=True)
    t_train = time.perf_counter()

    write_seeded(out, {t: np.stack([r[t][source].losses for r in per_seed]) for t in targets})
    save_reps(out / "reps.npz", reps)
    save_readouts(out / READOUT_FILE, source, {t: per_seed[0][t][source].record for t in targets},
                  params.transfer, params.train_task, moments,
                  seed_readouts=[{t: r[t][source].record for t in targets} for r in per_seed[1:]])
    atomic_write_json(out / "metrics.json", {
        "source": source, "targets": len(targets), "seeds": params.transfer.seeds, "device": device,
        "executor": spec.kind, "workers": spec.workers, "threads": spec.threads})
    note_timing(load_seconds=round(t_load - t0, 3), encode_seconds=round(t_encode - t_load, 3),
                train_seconds=round(t_train - t_encode, 3), targets=len(targets))


def high_order(targets: list[str], params: Params, bank: Path, affinities: Path, reps: Path, out: Path) -> None:
    """For every target, the source sets of orders 2..``transfer.max_order`` from the beam of its best
    first-order sources (``affinities``), read out from the cached representations (``reps/<source>``)."""
    ensure_writable(out)
    tp = params.transfer
    sets: dict[str, list[tuple[str, ...]]] = {}
    if tp.max_order >= 2:
        rows = read_affinity_rows(affinities)
        sets = {t: high_order_sets(rows, t, tp.max_order, tp.beam, tp.beam_order4) for t in targets}
    sources = sorted({s for groups in sets.values() for group in groups for s in group})
    unknown = [s for s in sources if s not in params.sources()]
    if unknown:
        raise ParamsError(f"{affinities}: sources {', '.join(unknown)} are not in the task list; "
                          f"rerun the affinity_first stage")
    jobs = [(group, t) for t, groups in sets.items() for group in groups]
    per_seed = []
    if jobs:
        device = str(resolve_device(tp.device, "transfer.device"))
        data = strip_views(load_targets(load_splits(bank), list(sets), tp.images, params.target_only()))
        cached = {s: load_reps(reps / s / "reps.npz", s) for s in sources}
        log.info("transfer_high: %d source sets into %d targets from %d sources, %d seeds", len(jobs), len(sets),
                 len(sources), tp.seeds)
        context = TransferContext(cached, data, tp, params.train_task, device)
        per_seed = [losses_of(seeded) for seeded in run_seeded(context, jobs, executor_spec(tp, device))]
    for t in targets:
        keys = [set_key(g) for g in sets.get(t, [])]
        write_seeded(high_path(out, t).parent, {k: np.stack([losses[t][k] for losses in per_seed]) for k in keys})
