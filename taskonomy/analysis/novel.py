"""Novel tasks served from the taxonomy: the paper's experiment with a task that has only a little data.

A ``target_only`` task has no task network trained on the train split and is never a source: the
transfers into it train on the transfer split only, and its own network (``self`` in its losses) is
trained from scratch on that same small split. For each such task and each taxonomy solved (budget,
max order), :func:`novel_table` compares the transfer the taxonomy chose for it with the best single
first-order source (the lowest mean test loss: what a practitioner would pick by trying every source
on the target) and with the network trained from scratch on the same data, as differences of mean
test loss with 95% bootstrap intervals over the test images (all three resampled together).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from taskonomy.baselines.runs import image_interval
from taskonomy.sources import BASELINES, PIXELS, SELF, order, set_key

COLUMNS = ("task", "budget", "max_order", "chosen", "chosen_loss", "best_single", "best_single_loss",
           "scratch_loss", "pixels_loss", "vs_scratch", "vs_scratch_lo", "vs_scratch_hi",
           "vs_best_single", "vs_best_single_lo", "vs_best_single_hi")


def best_single(losses: Mapping[str, np.ndarray]) -> str:
    """The first-order source with the lowest mean test loss (ties: the first in name order)."""
    first = sorted(k for k in losses if k not in BASELINES and order(k) == 1)
    return min(first, key=lambda k: float(np.mean(losses[k])))


def novel_table(losses: Mapping[str, Mapping[str, np.ndarray]], solutions: Sequence[Mapping],
                rounds: int, seed: int) -> pd.DataFrame:
    """One row per (novel task, solution): ``losses`` is task -> source key -> per-item test losses
    (``taskonomy.losses.read_target_losses``: ``self`` is the network trained from scratch on the transfer
    split); ``solutions`` are taxonomy solutions (``Taxonomy.to_dict()``). Differences are chosen minus the
    other, so negative means the taxonomy's transfer is better; NaN where a solution does not serve the task."""
    rows = []
    for task, per_key in losses.items():
        single = best_single(per_key)
        for solution in solutions:
            choice = solution.get("per_target", {}).get(task)
            row = {"task": task, "budget": solution["budget"], "max_order": solution["max_order"],
                   "best_single": single, "best_single_loss": float(np.mean(per_key[single])),
                   "scratch_loss": float(np.mean(per_key[SELF])), "pixels_loss": float(np.mean(per_key[PIXELS]))}
            key = set_key(choice["sources"]) if choice and choice.get("sources") else None
            if key is None or key not in per_key:
                rows.append({**row, "chosen": key or ""})
                continue
            stacked = np.stack([per_key[key], per_key[SELF], per_key[single]])
            row.update(chosen=key, chosen_loss=float(np.mean(per_key[key])))
            for name, other in (("vs_scratch", 1), ("vs_best_single", 2)):
                row[name] = row["chosen_loss"] - float(np.mean(stacked[other]))
                if key == single and other == 2:
                    row[f"{name}_lo"] = row[f"{name}_hi"] = 0.0
                else:
                    row[f"{name}_lo"], row[f"{name}_hi"] = image_interval(
                        stacked, lambda means, o=other: means[0] - means[o], rounds, seed)
            rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))
