"""Per-item test losses on disk: the currency between the task networks, the transfers and the
affinities (docs/losses-format.md). Every stage that writes or reads them goes through this module.

One float per test item of a target, lower is better, in bank order, always all items, so that every
transfer into a target is compared on the same ordered list. Four files (a transfer's losses are the mean
over its ``transfer.seeds`` readouts; beside each transfer file, ``seed_losses.npz`` holds the same keys
as (S, N) arrays, one row per readout seed, for the intervals: :func:`read_seed_losses`):

- ``<models>/<target>/test_losses.npy``: the target's own network (``self``), by ``train_task@<target>``;
- ``<transfer>/<source>/losses.npz``: one key per target, by ``transfer@<source>``;
- ``<pixels>/losses.npz``: one key per target, the from-scratch baseline, by ``pixels``;
- ``<high>/<target>/losses.npz``: one key per source set of order >= 2 (``a__b``), by ``transfer_high``.

Paths are built from the task list, never globbed; a missing file is a :class:`DataError` naming the
file and the stage that writes it.
"""
from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from taskonomy.errors import DataError
from taskonomy.sources import PIXELS, SELF, SEP, parse
from taskonomy.storage import atomic_save, atomic_savez

SELF_FILE = "test_losses.npy"
LOSS_FILE = "losses.npz"
SEED_FILE = "seed_losses.npz"


def self_path(models: Path, target: str) -> Path:
    return Path(models) / target / SELF_FILE


def source_path(transfer: Path, source: str) -> Path:
    return Path(transfer) / source / LOSS_FILE


def high_path(high: Path, target: str) -> Path:
    return Path(high) / target / LOSS_FILE


def write_self(path: Path, losses: np.ndarray) -> None:
    """A task network's own per-item losses (empty for a source-only network), float32, atomically."""
    atomic_save(path, np.asarray(losses, dtype=np.float32))


def write_keyed(path: Path, losses: Mapping[str, np.ndarray]) -> None:
    """Per-item losses under keys (targets, or source-set keys), float32, atomically."""
    atomic_savez(path, {k: np.asarray(v, dtype=np.float32) for k, v in losses.items()})


def write_seeded(folder: Path, losses: Mapping[str, np.ndarray]) -> None:
    """A transfer file and its seeds: ``losses`` maps keys to (S, N) per-seed, per-item losses; written as
    ``folder/seed_losses.npz`` and their mean over the seeds as ``folder/losses.npz`` (what every stage reads)."""
    seeded = {k: np.asarray(v, dtype=np.float32) for k, v in losses.items()}
    for k, v in seeded.items():
        if v.ndim != 2 or v.shape[0] == 0:
            raise ValueError(f"{k}: expected (seeds, items) losses, got shape {v.shape}")
    atomic_savez(Path(folder) / SEED_FILE, seeded)
    write_keyed(Path(folder) / LOSS_FILE, {k: seed_mean(v) for k, v in seeded.items()})


def seed_mean(per_seed: np.ndarray) -> np.ndarray:
    """The (N,) mean over the seeds of (S, N) per-item losses, of their float32 values: what ``losses.npz``
    holds for a transfer read out at several seeds (one seed: its losses, unchanged)."""
    return np.asarray(per_seed, dtype=np.float32).astype(np.float64).mean(0)


def _check_array(a: np.ndarray, where: str) -> np.ndarray:
    if a.ndim != 1 or a.size == 0:
        raise DataError(f"{where}: expected a 1-D array of per-item losses, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{where}: expected numbers, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{where}: non-finite loss at item {int(np.flatnonzero(~np.isfinite(a))[0])}")
    return a.astype(np.float64)


def _missing(path: Path, stage: str) -> DataError:
    return DataError(f"{path}: missing; it is written by stage {stage}")


def load_npy(path: Path, stage: str) -> np.ndarray:
    """One (N,) loss array from a ``.npy`` file, checked."""
    if not path.is_file():
        raise _missing(path, stage)
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npy file ({err})") from None
    return _check_array(a, str(path))


def load_npz(path: Path, stage: str, keys: Sequence[str] | None = None, seeded: bool = False) -> dict[str, np.ndarray]:
    """The named (N,) arrays of a ``.npz`` file (every one for ``keys=None``), checked; a missing key
    names file and key. ``seeded``: (S, N) per-seed losses (a ``seed_losses.npz``), each seed checked."""
    if not path.is_file():
        raise _missing(path, stage)
    try:
        with np.load(path, allow_pickle=False) as z:
            present = set(z.files)
            out = {}
            for k in z.files if keys is None else keys:
                if k not in present:
                    raise DataError(f"{path}: no key '{k}' (has: {', '.join(sorted(present)) or 'none'}); "
                                    f"rerun stage {stage}")
                out[k] = _check_seeds(z[k], f"{path}[{k}]", stage) if seeded else _check_array(z[k], f"{path}[{k}]")
            return out
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None


def _check_seeds(a: np.ndarray, where: str, stage: str) -> np.ndarray:
    if a.ndim != 2 or a.shape[0] == 0:
        raise DataError(f"{where}: expected (seeds, items) losses, got shape {a.shape}; rerun stage {stage}")
    return np.stack([_check_array(row, f"{where} seed {i}") for i, row in enumerate(a)])


def read_target_losses(targets: Sequence[str], sources: Sequence[str], *, models: Path, transfer: Path,
                       pixels: Path, high: Path | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-target loss dicts for :func:`taskonomy.analysis.affinity.affinity_table`.

    For every target t: ``self`` from ``models/<t>/test_losses.npy``; one first-order entry per
    source s from ``transfer/<s>/losses.npz[t]`` (``random`` is a source like any task); ``pixels``
    from ``pixels[t]``; with ``high``, every key of ``high/<t>/losses.npz`` (source sets joined by
    ``__``). All arrays of a target must have the same length.
    """
    first = first_order_losses(transfer, sources, targets)
    pixel_losses = load_npz(pixels, "pixels", list(targets))
    out: dict[str, dict[str, np.ndarray]] = {}
    for t in targets:
        own = self_path(models, t)
        losses = {SELF: load_npy(own, f"train_task@{t}"), **first[t]}
        where = {SELF: str(own), **{s: f"{source_path(transfer, s)}[{t}]" for s in sources}}
        if high is not None:
            path = high_path(high, t)
            for key, a in load_npz(path, "transfer_high").items():
                if len(parse(key)) < 2 or key in losses:
                    raise DataError(f"{path}[{key}]: expected a source set of order >= 2 joined by '{SEP}'")
                losses[key], where[key] = a, f"{path}[{key}]"
        losses[PIXELS], where[PIXELS] = pixel_losses[t], f"{pixels}[{t}]"
        n = losses[SELF].size
        for key, a in losses.items():
            if a.size != n:
                raise DataError(f"{where[key]}: {a.size} items for target {t}, but {where[SELF]} has {n}")
        out[t] = losses
    return out


def first_order_losses(transfer: Path, sources: Sequence[str], targets: Sequence[str],
                       seeded: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """target -> source -> (N_t,) first-order per-item losses, from every ``transfer/<source>/losses.npz``;
    ``seeded``: the (S, N_t) per-seed losses beside them (``seed_losses.npz``)."""
    path = (lambda s: Path(transfer) / s / SEED_FILE) if seeded else (lambda s: source_path(transfer, s))
    per_source = {s: load_npz(path(s), f"transfer@{s}", list(targets), seeded) for s in sources}
    return {t: {s: per_source[s][t] for s in sources} for t in targets}



def read_seed_losses(targets: Sequence[str], sources: Sequence[str], *, transfer: Path,
                     high: Path | None = None) -> dict[str, dict[str, np.ndarray]]:
    """target -> transfer key -> (S, N) per-seed losses of every first-order (and with ``high`` higher-order)
    transfer: the ``seed_losses.npz`` beside each file :func:`read_target_losses` reads. Every transfer has
    the same number of seeds (``transfer.seeds``)."""
    out = first_order_losses(transfer, sources, targets, seeded=True)
    if high is not None:
        for t in targets:
            out[t].update(load_npz(Path(high) / t / SEED_FILE, "transfer_high", seeded=True))
    counts = {a.shape[0] for per in out.values() for a in per.values()}
    if len(counts) > 1:
        raise DataError(f"{transfer}: transfers trained at different numbers of seeds ({sorted(counts)}); "
                        f"rerun the transfer stages")
    return out
