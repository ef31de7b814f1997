"""Stage ``taxonomy``: the BIP for every (budget, max order) of params, the gain/quality grid, and the
task similarity tree (Taskonomy §3.4, Figs. 9-10 and 14).

Reads the affinity table (stage ``affinity``) and its first-order affinity matrix. Writes:

- ``--solutions DIR``: per (budget b, max order k) ``b<b>_k<k>.json`` (the taxonomy: objective,
  supervised, transfers, per-target affinity/quality/gain) and ``b<b>_k<k>.graph.json`` (networkx
  node-link export: tasks with their role and supervision, one edge per source of a chosen transfer);
- ``--metrics``: ``{"k<k>": {"b<b>": {objective, gain, quality, supervised, transferred}}}`` for
  ``dvc metrics show`` (gain and quality: means over the targets served by a transfer);
- ``--grid``: the same as a long CSV (max_order, budget, ...) for ``dvc plots show``;
- ``--tree DIR``: ``similarity_tree.json`` (scipy linkage matrix + dendrogram leaves) and
  ``similarity_tree.png`` (agglomerative clustering of the first-order affinity columns).

The expected dvc.yaml entry:

  taxonomy:
    cmd: >-
      python stages/taxonomy.py --params params.yaml --affinities reports/affinities.csv
      --first-order reports/affinity/first_order_affinities.csv --solutions reports/taxonomy/solutions
      --metrics reports/taxonomy/metrics.json --grid reports/taxonomy/grid.csv --tree reports/taxonomy/tree
    deps: [stages/taxonomy.py, taskonomy/analysis/taxonomy.py, taskonomy/analysis/tables.py,
           reports/affinities.csv, reports/affinity/first_order_affinities.csv]
    params: [tasks, taxonomy]
    outs: [reports/taxonomy/solutions, reports/taxonomy/tree/similarity_tree.json]
    metrics:
      - reports/taxonomy/metrics.json: {cache: false}
    plots:
      - reports/taxonomy/grid.csv: {x: budget, y: gain, template: linear, cache: false}
      - reports/taxonomy/tree/similarity_tree.png: {cache: false}
"""
from __future__ import annotations

from _stage import delegate

delegate(__name__, __file__)  # the project's Python; a warm fork server runs the stage when one is up

import argparse
from pathlib import Path

from taskonomy.errors import DataError, TaskonomyError, run_stage
from taskonomy.storage import atomic_savefig, atomic_write_json, atomic_write_text


def plot_tree(z, labels: list[str], path: Path, method: str) -> dict:
    """Draw the dendrogram; returns scipy's dendrogram dict (leaf order, colours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.cluster.hierarchy import dendrogram

    fig, ax = plt.subplots(figsize=(6, 1.5 + 0.3 * len(labels)), constrained_layout=True)
    tree = dendrogram(z, labels=labels, orientation="right", ax=ax)
    ax.set_title(f"task similarity tree ({method} linkage of first-order affinity columns)", fontsize=9)
    ax.set_xlabel("distance")
    atomic_savefig(fig, path, dpi=120)
    return tree


def main(argv: list[str] | None = None) -> int:
    import networkx as nx
    import pandas as pd

    from taskonomy.analysis.tables import load_table
    from taskonomy.config import load_params
    from taskonomy.analysis.taxonomy import assign_roles, nan_or, similarity_tree, solution_name, sweep

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--affinities", type=Path, required=True, help="the affinity table (stage affinity)")
    ap.add_argument("--first-order", type=Path, required=True, help="first_order_affinities.csv (stage affinity)")
    ap.add_argument("--solutions", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--grid", type=Path, required=True)
    ap.add_argument("--tree", type=Path, required=True)
    args = ap.parse_args(argv)

    params = load_params(args.params)
    tp = params.taxonomy
    transfers = load_table(args.affinities)
    source_only = [t for t, p in params.tasks.items() if p.source_only]
    roles = assign_roles(transfers, source_only=source_only)
    results = sweep(transfers, roles, tp.budgets, tp.max_orders, objective=tp.objective, sqrt=tp.sqrt)

    metrics, rows = {}, []
    for r in results:
        name = solution_name(r.budget, r.max_order)
        atomic_write_json(args.solutions / f"{name}.json", r.to_dict())
        atomic_write_json(args.solutions / f"{name}.graph.json", nx.node_link_data(r.to_graph(roles), edges="edges"))
        cell = {"objective": nan_or(r.objective), "gain": nan_or(r.mean("gain")),
                "quality": nan_or(r.mean("quality")), "supervised": len(r.supervised),
                "transferred": len(r.transfers), "status": r.status}
        metrics.setdefault(f"k{r.max_order}", {})[f"b{r.budget:g}"] = cell
        rows.append({"max_order": r.max_order, "budget": r.budget, **cell})
    atomic_write_json(args.metrics, metrics)
    atomic_write_text(args.grid, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))

    try:
        first = pd.read_csv(args.first_order, index_col=0)
    except FileNotFoundError:
        raise DataError(f"{args.first_order}: missing; it is written by stage affinity") from None
    except Exception as err:  # pandas parser errors
        raise DataError(f"{args.first_order}: not a readable CSV ({type(err).__name__})") from None
    targets = [t for t in first.columns if t in roles.targets]
    if len(targets) < 2:
        raise TaskonomyError(f"{args.first_order}: the similarity tree needs >= 2 target columns, got {targets}")
    z = similarity_tree(first[targets].to_numpy(dtype=float), tp.tree_linkage)
    tree = plot_tree(z, targets, args.tree / "similarity_tree.png", tp.tree_linkage)
    atomic_write_json(args.tree / "similarity_tree.json", {
        "method": tp.tree_linkage, "metric": "euclidean", "labels": targets,
        "linkage": z.tolist(), "leaves": [targets[i] for i in tree["leaves"]]})

    solved = sum(r.optimal for r in results)
    print(f"taxonomy: {solved}/{len(results)} (budget, max order) pairs solved -> {args.solutions}; "
          f"grid -> {args.metrics}, {args.grid}; similarity tree -> {args.tree}")
    return 0


if __name__ == "__main__":
    run_stage(main)
