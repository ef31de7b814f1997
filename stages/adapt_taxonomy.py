"""Stage ``adapt_taxonomy``: the first-order taxonomy under the domain shift (issue 24, part 3).

    python stages/adapt_taxonomy.py --params params.yaml --bank data/bank --target-bank data/target \
        --split target_test --models models --transfer outputs/transfer --pixels outputs/pixels \
        --out outputs/adapt_taxonomy --report reports/adapt/taxonomy \
        --metrics reports/metrics/adapt_taxonomy.json

Scores ``--split`` of the target-domain bank with everything already trained (taskonomy.transfer.rescore:
the task networks, every first-order readout behind its frozen source encoder and the source's saved
standardisation, the pixels baselines; nothing retrained) and compares it, item by item, with the stored
source-domain test losses (taskonomy.analysis.shift). Reads the ``adapt`` (bootstrap), ``affinity``
(clip) and ``taxonomy`` (budgets, objective, sqrt) sections and the task list. Writes:

- ``--out``: the target-domain losses laid out as docs/losses-format.md (``models/<t>/test_losses.npy``,
  ``transfer/<s>/losses.npz``, ``pixels/losses.npz``), which stages/affinity.py reads unchanged;
- ``--report``: ``first_order_affinities.csv`` (target domain, as reports/affinity/'s), ``best_sources.csv``
  (per target: best source in each domain with its affinity, share of paired resamples unchanged,
  Spearman rho with its interval), ``edges.csv`` (per budget and target: its source set or ``self`` in
  each domain, survives, share of resamples), ``supervised.csv`` (per budget: the supervised tasks in
  each domain), ``shift.json`` (best sources unchanged, mean rho, and per budget the shares of edges and
  supervised tasks kept, with intervals), ``findings.json`` (sentences for the report) and
  ``shift.png`` (both domains' affinities side by side, and one against the other);
- ``--metrics``: the headline of shift.json for ``dvc metrics`` (best sources unchanged, mean rho).
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
from pathlib import Path

from taskonomy.stage import run_stage
from taskonomy.storage import atomic_write_csv, atomic_write_json, atomic_write_text, ensure_writable


def main(argv: list[str] | None = None) -> int:
    from taskonomy.analysis import shift
    from taskonomy.bank import MANIFEST
    from taskonomy.config import load_params
    from taskonomy.losses import LOSS_FILE, read_target_losses, self_path, source_path
    from taskonomy.transfer.rescore import (check_inputs, paired_split, read_rescored, required_inputs, rescore,
                                           write_rescored)

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--bank", type=Path, default=Path("data/bank"), help="the source bank (its train split's stats)")
    ap.add_argument("--target-bank", type=Path, default=Path("data/target"))
    ap.add_argument("--split", default="target_test", help="the split scored; item i is item i of test")
    ap.add_argument("--models", type=Path, required=True, help="models/<task>/{model.pt, test_losses.npy}")
    ap.add_argument("--transfer", type=Path, required=True, help="<dir>/<source>/{readouts.pt, losses.npz}")
    ap.add_argument("--pixels", type=Path, required=True, help="the pixels stage's folder (readouts.pt, losses.npz)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the target-domain losses")
    ap.add_argument("--report", type=Path, required=True, help="folder for the tables, shift.json, findings and figure")
    ap.add_argument("--metrics", type=Path, required=True, help="the headline numbers (DVC metrics) to write")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    targets, sources = params.targets(), params.sources()       # a target-only task is no source
    # every input, before any work: the banks, the stored losses, what the rescoring reads
    check_inputs([(args.bank / "train" / MANIFEST, "render"),
                  (args.target_bank / args.split / MANIFEST, "render_target"),
                  *[(self_path(args.models, t), f"train_task@{t}") for t in targets],
                  *[(source_path(args.transfer, s), f"transfer@{s}") for s in sources],
                  (args.pixels / LOSS_FILE, "pixels"),
                  *required_inputs(params, args.models, args.transfer, args.pixels)])
    scored = paired_split(args.target_bank, args.split)
    ensure_writable(args.out, args.report)

    source_losses = read_target_losses(targets, sources, models=args.models, transfer=args.transfer,
                                       pixels=args.pixels / LOSS_FILE)
    write_rescored(args.out, rescore(params, bank=args.bank, target_bank=args.target_bank, split=args.split,
                                     models=args.models, transfer=args.transfer, pixels=args.pixels))
    target_losses = read_rescored(args.out, targets, sources)

    clip, tp = params.affinity.clip, params.taxonomy
    rounds, taxonomy_rounds = params.adapt.bootstrap, min(params.adapt.bootstrap, shift.TAXONOMY_ROUNDS)
    rows, aff_source, aff_target = shift.best_sources(source_losses, target_losses, clip=clip, rounds=rounds)
    source_only = params.source_only()
    per_budget = shift.taxonomy_shift(source_losses, target_losses, source_only, tp.budgets, clip=clip,
                                   objective=tp.objective, sqrt=tp.sqrt, rounds=taxonomy_rounds,
                                   target_only=params.target_only())

    report = args.report
    atomic_write_text(report / "first_order_affinities.csv", aff_target.to_csv(float_format="%.8g"))
    atomic_write_csv(report / "best_sources.csv", shift.BEST_FIELDS, shift.best_rows(rows))
    atomic_write_csv(report / "edges.csv", shift.EDGE_FIELDS, shift.edge_rows(per_budget))
    atomic_write_csv(report / "supervised.csv", shift.SUPERVISED_FIELDS, shift.supervised_rows(per_budget))
    numbers = shift.metrics(rows, per_budget, rounds, taxonomy_rounds)
    atomic_write_json(report / "shift.json", numbers)
    atomic_write_json(args.metrics, shift.headline(numbers))
    atomic_write_json(report / "findings.json", {
        "findings": shift.findings(rows, per_budget, rounds, taxonomy_rounds), "split": args.split,
        "domain": scored.manifest.get("params", {}).get("domain"), "rounds": rounds,
        "taxonomy_rounds": taxonomy_rounds, "budgets": list(tp.budgets)})
    shift.figure(aff_source, aff_target, rows, report / "shift.png")
    unchanged = sum(r.unchanged for r in rows)
    print(f"adapt_taxonomy: {args.target_bank / args.split} scored -> {args.out}; best source unchanged for "
          f"{unchanged}/{len(rows)} targets; {len(per_budget)} budgets compared -> {report}")
    return 0


if __name__ == "__main__":
    run_stage(main)
