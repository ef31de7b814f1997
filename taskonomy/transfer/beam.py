"""Which higher-order source sets to train: Taskonomy's beam over the ranked first-order sources.

Taskonomy (Zamir et al. 2018, supplementary; code ``generate_transfer_configs_*_order.py``) does not
train all C(25, k) source sets of order k. For each target it ranks the first-order sources by AHP
affinity and forms

- order 2 and 3: every combination of the top ``beam`` (5) sources,
- order 4: every combination of the top ``beam_order4`` (6) sources,
- order k >= 5: one set, the top-k prefix of the ranking (a beam of width 1).

Where a pool is smaller than the order (e.g. ``beam=2`` at order 3), the order falls back to the top-k
prefix, so every requested order has at least one set. Sources keep their rank order inside a set, so
the set's key (``rgb2sfnorm__reshade``) is deterministic.

Which first-order rows may enter the ranking (:func:`first_order_ranking`):
- ``self`` is the target's own fully supervised network, not a transfer: excluded.
- ``random`` is the canary baseline: Taskonomy removed it from the prefixes of orders >= 5, and a
  higher-order set containing it measures nothing useful, so it is kept out of the whole beam.
- ``pixels`` is the gain baseline, not a source (never in the affinity table anyway).
- the target itself (t <- t from t's own encoder) is excluded: a set containing t is only usable when t
  is supervised, and then ``self`` serves t; Taskonomy's taxonomy solver likewise drops transfers whose
  sources contain the target.

Everything here is pure: no torch, no I/O.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterable, Mapping, Sequence

from taskonomy.errors import DataError, TaskonomyError
from taskonomy.sources import NOT_BEAM



def source_sets(ranking: Sequence[str], max_order: int, beam: int = 5, beam_order4: int = 6,
                min_order: int = 2) -> list[tuple[str, ...]]:
    """The source sets of orders ``min_order..max_order`` for one target, lowest order first.

    ``ranking`` lists the eligible first-order sources, best first. Raises :class:`TaskonomyError`
    when ``max_order`` exceeds the number of sources (no set of that order exists).
    """
    if len(set(ranking)) != len(ranking):
        raise TaskonomyError(f"source ranking has duplicates: {list(ranking)}")
    if max_order > len(ranking):
        raise TaskonomyError(f"transfer.max_order: order {max_order} requested but only {len(ranking)} "
                             f"sources are ranked ({', '.join(ranking) or 'none'})")
    sets: list[tuple[str, ...]] = []
    for order in range(min_order, max_order + 1):
        pool = beam if order <= 3 else beam_order4 if order == 4 else order
        pool = max(pool, order)
        if pool == order:
            sets.append(tuple(ranking[:order]))
        else:
            sets.extend(itertools.combinations(ranking[:pool], order))
    return sets


def first_order_ranking(rows: Iterable[Mapping[str, str]], target: str) -> list[str]:
    """Eligible first-order sources of ``target``, by AHP affinity (high first; ties by name).

    ``rows`` are records of ``reports/affinities.csv`` (columns target, sources, order, affinity, ...).
    """
    scored: dict[str, float] = {}
    for row in rows:
        if row["target"] != target or int(row["order"]) != 1:
            continue
        source = row["sources"]
        if source in NOT_BEAM or source == target:
            continue
        affinity = float(row["affinity"])
        if not math.isfinite(affinity):
            raise DataError(f"affinity table: non-finite affinity for {source} -> {target}")
        scored[source] = affinity
    return sorted(scored, key=lambda s: (-scored[s], s))


def high_order_sets(rows: Iterable[Mapping[str, str]], target: str, max_order: int, beam: int = 5,
                    beam_order4: int = 6) -> list[tuple[str, ...]]:
    """Source sets of orders 2..``max_order`` for ``target`` from the first-order rows of the affinity table."""
    ranking = first_order_ranking(rows, target)
    if not ranking:
        raise TaskonomyError(f"{target}: no eligible first-order source in the affinity table "
                             f"(self, random and the target itself do not enter the beam)")
    try:
        return source_sets(ranking, max_order, beam, beam_order4)
    except TaskonomyError as err:
        raise TaskonomyError(f"{target}: {err}") from None
