"""Stage ``affinity``: per-item test losses -> win rates -> AHP affinities (Taskonomy §3.3).

Reads, for the tasks of params.yaml (paths built from the task list, never globbed; see
docs/losses-format.md), every target's ``self`` losses, its first-order transfer losses (one file per
source, ``random`` included), the ``pixels`` baseline, and optionally (``--high DIR``) its
higher-order transfer losses. Writes:

- ``--table``: one row per transfer: target, sources (joined by ``__``; ``self``, ``random``,
  ``pixels``), order, affinity (AHP over all of the target's transfers + self + random), quality
  (win rate vs self), gain (win rate vs pixels), mean_loss;
  with ``<score>_lo`` / ``<score>_hi``: 95% intervals over ``affinity.bootstrap`` resamples of the readout
  seeds and the test images together (taskonomy.analysis.uncertainty; the per-seed losses are the
  ``seed_losses.npz`` beside each transfer file);
- ``--resamples``: with ``--table``, every resampled score (the taxonomy stage re-solves on them);
- ``--metrics``: with ``--table``, the gold standard for ``dvc metrics`` (reports/metrics/affinity.json): the
  share of targets whose task network beats every first-order transfer, and every transfer, into it,
  and the best transfer's quality on average;
- ``--first-order DIR``: ``first_order_losses.csv`` and ``first_order_affinities.csv`` (sources x
  targets; the affinities are AHP re-run on the first-order transfers, like the paper's Fig. 7)
  and ``first_order.png`` (both as heatmaps, side by side).

dvc.yaml runs it twice: ``affinity_first`` (first order, for the higher-order beam) and
``affinity`` (with ``--high``, the full table).
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
from pathlib import Path

from taskonomy.errors import TaskonomyError
from taskonomy.stage import run_stage
from taskonomy.storage import atomic_write_json, atomic_write_text


def main(argv: list[str] | None = None) -> int:
    from taskonomy.analysis.affinity import affinity_table, first_order_matrices, gold_standard
    from taskonomy.analysis.uncertainty import resample_table, save_resamples, with_intervals
    from taskonomy.losses import read_seed_losses, read_target_losses
    from taskonomy.config import load_params
    from taskonomy.report.figures import first_order_heatmaps

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--models", type=Path, required=True, help="models/<task>/test_losses.npy")
    ap.add_argument("--transfer", type=Path, required=True, help="<dir>/<source>/losses.npz")
    ap.add_argument("--pixels", type=Path, required=True, help="the pixels baseline's losses.npz")
    ap.add_argument("--high", type=Path, help="optional: <dir>/<target>/losses.npz of higher orders")
    ap.add_argument("--table", type=Path, help="the affinity table (CSV) to write")
    ap.add_argument("--first-order", type=Path, help="folder for the first-order matrices and heatmap")
    ap.add_argument("--metrics", type=Path, help="with --table: the gold standard's numbers (DVC metrics) to write")
    ap.add_argument("--resamples", type=Path, help="with --table: the resampled scores (npz) to write")
    args = ap.parse_args(argv)
    if args.table is None and args.first_order is None:
        raise TaskonomyError("stages/affinity.py: nothing to write; give --table and/or --first-order")
    if args.metrics is not None and args.table is None:
        raise TaskonomyError("stages/affinity.py: --metrics needs --table (the gold standard is read from the full table)")
    if args.resamples is not None and args.table is None:
        raise TaskonomyError("stages/affinity.py: --resamples needs --table")

    params = load_params(args.params)
    targets, sources = params.targets(), params.sources()       # a target-only task is no source
    losses = read_target_losses(targets, sources, models=args.models, transfer=args.transfer,
                                pixels=args.pixels, high=args.high)
    if args.table is not None:
        ap_ = params.affinity
        seeded = read_seed_losses(targets, sources, transfer=args.transfer, high=args.high)
        resamples = resample_table(losses, seeded, ap_.clip, ap_.bootstrap, ap_.seed)
        table = with_intervals(affinity_table(losses, clip=ap_.clip), resamples)
        if args.resamples is not None:
            save_resamples(args.resamples, resamples)
        atomic_write_text(args.table, table.to_csv(index=False, float_format="%.8g"))
        if args.metrics is not None:
            # the gold standard is the task networks trained on the train split: not a novel task's
            atomic_write_json(args.metrics, gold_standard(table[~table.target.isin(params.target_only())]))
        print(f"affinity: {len(table)} transfers into {len(targets)} targets, intervals over {ap_.bootstrap} resamples "
              f"of {len(next(iter(seeded[targets[0]].values())))} readout seeds and the test images -> {args.table}")
    if args.first_order is not None:
        mean_loss, affinity = first_order_matrices(losses, clip=params.affinity.clip, sources=sources)
        atomic_write_text(args.first_order / "first_order_losses.csv", mean_loss.to_csv(float_format="%.8g"))
        atomic_write_text(args.first_order / "first_order_affinities.csv", affinity.to_csv(float_format="%.8g"))
        first_order_heatmaps(mean_loss, affinity, args.first_order / "first_order.png")
        print(f"affinity: first-order matrices ({len(sources)} sources x {len(targets)} targets) -> {args.first_order}")
    return 0


if __name__ == "__main__":
    run_stage(main)
