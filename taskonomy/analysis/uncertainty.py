"""Uncertainty from retraining and from the test images, carried to every affinity and taxonomy edge (issue 25).

Every transfer into a target is read out at ``transfer.seeds`` = S seeds and scored on the same N test
items, so its per-item losses are an (S, N) array; the pipeline's losses are their mean over the seeds
(taskonomy.losses.write_seeded). The task network (``self``) and ``pixels`` have one training each here.
Seeds and items are crossed (every seed is scored on every item), so a resample draws both independently,
with replacement: S seeds, whose losses are averaged, and N items. :func:`target_resamples` does it with
``scipy.stats.bootstrap`` (two unpaired samples: the item indices and the seed indices; one sample, the
items, when S = 1) and a target's whole score vector (affinity, quality and gain of each of its transfers,
taskonomy.analysis.affinity) as the statistic; the 95% intervals are scipy's percentile intervals, and
the resampled score vectors are kept for the taxonomy's edge stability.

- Resampling is per target: a target's items are its own, and its readouts are trainings of their own at
  every seed (the readout seed is drawn from the seed and the target's name).
- :func:`edge_stability` re-solves the BIP on each resampled affinity table: how often each edge of the
  point solution (and any other) is chosen, and each task supervised. 1 on a clear optimum; about 1/2 where
  two choices tie.
- The known-structure checks are evaluated on each seed's readouts alone and on resamples of the seeds
  and items drawn the same way (taskonomy.analysis.checks).
"""
from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from taskonomy.analysis.affinity import scores
from taskonomy.analysis.taxonomy import Roles, Transfer, sweep
from taskonomy.errors import DataError
from taskonomy.sources import PIXELS, parse, set_key

SCORES = ("affinity", "quality", "gain")
CONFIDENCE = 0.95


def target_rng(seed: int, target: str) -> np.random.Generator:
    """The resamples' generator of one target: the same for the same (seed, target) in any process."""
    return np.random.default_rng([seed, zlib.crc32(target.encode())])


@dataclass(frozen=True)
class Resamples:
    """One target's resampled scores: ``values[i, r, k]`` is score ``SCORES[i]`` of transfer ``keys[k]`` in
    resample r; ``low`` / ``high`` (3, K) the 95% percentile intervals (NaN where a score is undefined:
    the affinity of pixels, gain without pixels)."""
    keys: tuple[str, ...]
    values: np.ndarray
    low: np.ndarray
    high: np.ndarray


def target_resamples(target: str, losses: Mapping[str, np.ndarray], seeded: Mapping[str, np.ndarray], clip: float,
                     rounds: int, seed: int) -> Resamples:
    """Affinity, quality and gain of every transfer into ``target`` over ``rounds`` resamples of its readout
    seeds and test items (module docstring).

    Args:
        losses: key -> (N,) per-item losses, as :func:`~taskonomy.analysis.affinity.target_scores` takes them
            (``self`` and ``pixels`` included; a seeded key's entry is unused: its seeds' mean is recomputed).
        seeded: key -> (S, N) per-seed losses of the transfers read out at S seeds (every one the same S).
    """
    from scipy.stats import bootstrap

    keys = list(losses)
    fixed = [k for k in keys if k not in seeded]
    if fixed == keys:
        raise DataError(f"target {target}: no per-seed losses of any transfer")
    varying = [k for k in keys if k in seeded]
    counts = {np.asarray(seeded[k]).shape[0] for k in varying}
    if len(counts) != 1:
        raise DataError(f"target {target}: transfers read out at different numbers of seeds ({sorted(counts)})")
    per_seed = np.stack([np.asarray(seeded[k], dtype=np.float64) for k in varying], axis=1)   # (S, Kv, N)
    single = np.stack([np.asarray(losses[k], dtype=np.float64) for k in fixed]) if fixed else None
    order = np.argsort([*(keys.index(k) for k in varying), *(keys.index(k) for k in fixed)])
    n_seeds, n_items = per_seed.shape[0], per_seed.shape[2]
    if single is not None and single.shape[1] != n_items:
        raise DataError(f"target {target}: per-seed losses have {n_items} items, the others {single.shape[1]}")

    def stacked(items: np.ndarray, seeds: np.ndarray | None) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        mean = per_seed.mean(0) if seeds is None else per_seed[np.asarray(seeds, dtype=np.int64)].mean(0)
        rows = mean[:, items] if single is None else np.concatenate([mean[:, items], single[:, items]])
        return rows[order]

    def statistic(items, seeds=None):
        values = np.stack(scores(keys, stacked(items, seeds), clip))
        return np.nan_to_num(values, nan=0.0).ravel()

    data = (np.arange(n_items),) if n_seeds == 1 else (np.arange(n_items), np.arange(n_seeds))
    result = bootstrap(data, statistic, n_resamples=rounds, paired=False, vectorized=False, method="percentile",
                       confidence_level=CONFIDENCE, rng=target_rng(seed, target))
    defined = ~np.isnan(np.stack(scores(keys, stacked(np.arange(n_items), None), clip)))    # (3, K)
    shape = (len(SCORES), len(keys))
    values = result.bootstrap_distribution.reshape(*shape, rounds).transpose(0, 2, 1).copy()   # (3, R, K)
    values[np.broadcast_to(~defined[:, None, :], values.shape)] = np.nan
    low, high = (np.where(defined, np.asarray(b).reshape(shape), np.nan) for b in
                 (result.confidence_interval.low, result.confidence_interval.high))
    return Resamples(tuple(keys), values, low, high)


def resample_table(losses: Mapping[str, Mapping[str, np.ndarray]], seeded: Mapping[str, Mapping[str, np.ndarray]],
                   clip: float, rounds: int, seed: int) -> dict[str, Resamples]:
    """:func:`target_resamples` of every target of ``losses`` (target -> key -> (N,)); ``seeded``: target ->
    key -> (S, N), as taskonomy.losses.read_seed_losses gives them."""
    return {t: target_resamples(t, per, seeded.get(t, {}), clip, rounds, seed) for t, per in losses.items()}


def with_intervals(table, resamples: Mapping[str, Resamples]):
    """The affinity table (taskonomy.analysis.affinity.affinity_table) with ``<score>_lo`` / ``<score>_hi``
    columns: the 95% intervals over the resamples of seeds and test images."""
    table = table.copy()
    where = {(t, k): (r, j) for t, r in resamples.items() for j, k in enumerate(r.keys)}   # one lookup for all
    rows = [where.get((t, k)) for t, k in zip(table.target, table.sources)]
    for i, name in enumerate(SCORES):
        for bound, column in (("low", f"{name}_lo"), ("high", f"{name}_hi")):
            table[column] = [np.nan if at is None else getattr(at[0], bound)[i, at[1]] for at in rows]
    return table


def save_resamples(path, resamples: Mapping[str, Resamples]) -> None:
    """``<target>/keys`` and ``<target>/<score>`` (R, K) per target, atomically (read by :func:`load_resamples`)."""
    from taskonomy.storage import atomic_savez

    arrays = {}
    for t, r in resamples.items():
        arrays[f"{t}/keys"] = np.asarray(r.keys, dtype=str)
        for i, name in enumerate(SCORES):
            arrays[f"{t}/{name}"] = r.values[i].astype(np.float32)
    atomic_savez(path, arrays)


def load_resamples(path, stage: str = "affinity") -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """target -> (keys, (3, R, K) scores) from :func:`save_resamples`' file."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing; it is written by stage {stage}")
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            target, _, part = name.rpartition("/")
            if part == "keys":
                out[target] = (tuple(str(k) for k in z[name]), np.stack([z[f"{target}/{s}"] for s in SCORES]))
    if not out:
        raise DataError(f"{path}: no resamples in it; rerun stage {stage}")
    return out


def resampled_transfers(resamples: Mapping[str, tuple[tuple[str, ...], np.ndarray]], r: int) -> list[Transfer]:
    """The transfer list of resample ``r`` (``pixels`` left out, as taskonomy.analysis.tables.load_table does)."""
    out = []
    for target, (keys, values) in resamples.items():
        for j, key in enumerate(keys):
            if key != PIXELS:
                out.append(Transfer(parse(key), target, *(float(values[i, r, j]) for i in range(len(SCORES)))))
    return out


def edge_stability(resamples: Mapping[str, tuple[tuple[str, ...], np.ndarray]], roles: Roles,
                   budgets: Sequence[float], max_orders: Sequence[int], rounds: int, **options) -> list[dict]:
    """How often each choice survives re-solving: the BIP swept over ``budgets`` x ``max_orders`` on each of
    the first ``rounds`` resampled affinity tables. One row per (max order, budget, kind, task, sources):
    ``kind`` ``edge`` (target ``task`` served by the source set ``sources``) or ``supervised`` (``task``
    supervised, ``sources`` empty), ``share`` the fraction of resamples choosing it. ``options`` go to
    :func:`~taskonomy.analysis.taxonomy.sweep` (objective, sqrt, costs)."""
    available = min(values.shape[1] for _, values in resamples.values())
    if rounds > available:
        raise DataError(f"edge stability: {rounds} resamples asked, the affinity stage drew {available}")
    counts: dict[tuple[int, float], Counter] = {}
    for r in range(rounds):
        for result in sweep(resampled_transfers(resamples, r), roles, budgets, max_orders, **options):
            c = counts.setdefault((result.max_order, result.budget), Counter())
            if not result.optimal:
                continue
            c.update(("edge", t, set_key(s)) for t, s in result.transfers.items())
            c.update(("supervised", t, "") for t in result.supervised)
    return [{"max_order": k, "budget": b, "kind": kind, "task": task, "sources": sources, "share": n / rounds}
            for (k, b), c in sorted(counts.items()) for (kind, task, sources), n in sorted(c.items())]


def stability_of(rows: Sequence[Mapping], solution: Mapping) -> dict:
    """For one solution (``Taxonomy.to_dict()``), the share of resamples that keep each of its choices:
    ``{"edges": {target: share}, "supervised": {task: share}}`` (0 where no resample chose it)."""
    cell = {(r["kind"], r["task"], r["sources"]): r["share"] for r in rows
            if r["max_order"] == solution["max_order"] and r["budget"] == solution["budget"]}
    return {"edges": {t: cell.get(("edge", t, set_key(s)), 0.0) for t, s in solution["transfers"].items()},
            "supervised": {t: cell.get(("supervised", t, ""), 0.0) for t in solution["supervised"]}}
