"""Stage ``taxonomy``: the BIP for every (budget, max order) of params, the gain/quality grid, and the
task similarity tree (Taskonomy §3.4, Figs. 9-10 and 14).

Reads the affinity table (stage ``affinity``) and its first-order affinity matrix. Writes:

- ``--solutions DIR``: per (budget b, max order k) ``b<b>_k<k>.json`` (the taxonomy: objective,
  supervised, transfers, per-target affinity/quality/gain, and with ``--resamples`` the stability of each
  choice) and ``b<b>_k<k>.graph.json`` (networkx node-link export: tasks with their role and supervision,
  one edge per source of a chosen transfer, with its stability);
- ``--stability``: with ``--resamples`` (the affinity stage's resampled scores), the BIP re-solved on the first
  ``taxonomy.stability`` of them at every (budget, max order): the share of resamples choosing each edge
  (target <- source set) and each supervised task, every one that was ever chosen, marked ``chosen`` where
  the solution on the point estimates has it (taskonomy.analysis.uncertainty);
- ``--grid``: every (max order, budget) as a long CSV (max_order, budget, objective, gain, quality,
  supervised, transferred, status; gain and quality: means over the targets served by a transfer) for
  ``dvc plots show``;
- ``--metrics``: the headline for ``dvc metrics`` / ``dvc exp show`` (reports/metrics/taxonomy.json): at
  the largest max order, objective and gain at the smallest, middle and largest budget;
- ``--tree DIR``: ``similarity_tree.json`` (scipy linkage matrix + dendrogram leaves) and
  ``similarity_tree.png`` (agglomerative clustering of the first-order affinity columns);
- ``--novel``: for every target-only (novel) task and every solution, the transfer chosen for it against
  the best single source and the network trained from scratch on the same small data, with bootstrap
  intervals over the test images (taskonomy.analysis.novel; read from the per-item losses under
  ``--models``, ``--transfer``, ``--pixels``, ``--high``); a header only when there is none.
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
    import networkx as nx
    import pandas as pd

    from taskonomy.analysis.tables import load_table, read_first_order
    from taskonomy.config import load_params
    from taskonomy.analysis.taxonomy import assign_roles, similarity_tree, headline, solution_name, sweep, sweep_cells
    from taskonomy.report.figures import dendrogram

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--affinities", type=Path, required=True, help="the affinity table (stage affinity)")
    ap.add_argument("--first-order", type=Path, required=True, help="first_order_affinities.csv (stage affinity)")
    ap.add_argument("--solutions", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--grid", type=Path, required=True)
    ap.add_argument("--tree", type=Path, required=True)
    ap.add_argument("--resamples", type=Path, help="the affinity stage's resampled scores (npz)")
    ap.add_argument("--stability", type=Path, help="with --resamples: the edge stability table (CSV) to write")
    ap.add_argument("--novel", type=Path, help="the novel tasks' table (CSV) to write")
    ap.add_argument("--models", type=Path, help="models/<task>/test_losses.npy (with --novel)")
    ap.add_argument("--transfer", type=Path, help="<dir>/<source>/losses.npz (with --novel)")
    ap.add_argument("--pixels", type=Path, help="the pixels baseline's losses.npz (with --novel)")
    ap.add_argument("--high", type=Path, help="<dir>/<target>/losses.npz of higher orders (with --novel)")
    args = ap.parse_args(argv)
    if args.novel is not None and None in (args.models, args.transfer, args.pixels):
        raise TaskonomyError("stages/taxonomy.py: --novel needs --models, --transfer and --pixels")
    if (args.stability is None) != (args.resamples is None):
        raise TaskonomyError("stages/taxonomy.py: --stability and --resamples go together")

    params = load_params(args.params)
    tp = params.taxonomy
    transfers = load_table(args.affinities)
    source_only = params.source_only()
    roles = assign_roles(transfers, source_only=source_only, target_only=params.target_only())
    costs = {name: e.cost for name, e in params.encoders.items()}      # the user's encoders: as params say
    options = dict(objective=tp.objective, sqrt=tp.sqrt, costs=costs)
    results = sweep(transfers, roles, tp.budgets, tp.max_orders, **options)
    rows = []
    if args.resamples is not None:
        from taskonomy.analysis.uncertainty import edge_stability, load_resamples, stability_of

        rows = edge_stability(load_resamples(args.resamples), roles, tp.budgets, tp.max_orders, tp.stability, **options)

    stable = {}
    for r in results:
        name, solution = solution_name(r.budget, r.max_order), r.to_dict()
        graph = r.to_graph(roles)
        if rows:
            solution["stability"] = stable[(r.max_order, r.budget)] = stability_of(rows, solution)
            for u, v, d in graph.edges(data=True):
                d["stability"] = solution["stability"]["edges"][v]
        atomic_write_json(args.solutions / f"{name}.json", solution)
        atomic_write_json(args.solutions / f"{name}.graph.json", nx.node_link_data(graph, edges="edges"))
    atomic_write_json(args.metrics, headline(results, stable))
    if args.stability is not None:
        from taskonomy.sources import set_key

        chosen = {(r.max_order, r.budget, "edge", t, set_key(srcs)) for r in results for t, srcs in r.transfers.items()}
        chosen |= {(r.max_order, r.budget, "supervised", t, "") for r in results for t in r.supervised}
        table = pd.DataFrame(rows, columns=["max_order", "budget", "kind", "task", "sources", "share"])
        table["chosen"] = [key in chosen for key in table[["max_order", "budget", "kind", "task", "sources"]]
                           .itertuples(index=False, name=None)]
        atomic_write_text(args.stability, table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(args.grid, pd.DataFrame(sweep_cells(results)).to_csv(index=False, float_format="%.6g"))

    first = read_first_order(args.first_order)
    targets = [t for t in first.columns if t in roles.targets]
    if len(targets) < 2:
        raise TaskonomyError(f"{args.first_order}: the similarity tree needs >= 2 target columns, got {targets}")
    z = similarity_tree(first[targets].to_numpy(dtype=float), tp.tree_linkage)
    leaves = dendrogram(z, targets, args.tree / "similarity_tree.png", tp.tree_linkage)
    atomic_write_json(args.tree / "similarity_tree.json", {
        "method": tp.tree_linkage, "metric": "euclidean", "labels": targets, "linkage": z.tolist(), "leaves": leaves})

    if args.novel is not None:
        from taskonomy.analysis.novel import novel_table
        from taskonomy.losses import read_target_losses

        novel = params.target_only()
        losses = read_target_losses(novel, params.sources(), models=args.models, transfer=args.transfer,
                                    pixels=args.pixels, high=args.high) if novel else {}
        table = novel_table(losses, [r.to_dict() for r in results], tp.bootstrap, params.transfer.seed)
        atomic_write_text(args.novel, table.to_csv(index=False, float_format="%.6g"))

    solved = sum(r.optimal for r in results)
    print(f"taxonomy: {solved}/{len(results)} (budget, max order) pairs solved -> {args.solutions}; "
          f"grid -> {args.metrics}, {args.grid}; similarity tree -> {args.tree}")
    return 0


if __name__ == "__main__":
    run_stage(main)
