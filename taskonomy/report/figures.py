"""The report's own figures (matplotlib, Agg): training curves, taxonomy graphs, the budget sweep.

Each function draws one PNG through :func:`taskonomy.storage.save_figure` and returns its path.
The figures the pipeline already draws (the bank's sample sheet, the first-order matrices, the
similarity tree) are reused as they are.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd

from taskonomy.sources import SELF
from taskonomy.plotting import pyplot, save_figure

DPI = 90


def training_curves(curves: Mapping[str, pd.DataFrame], path: Path) -> Path:
    """Small multiples: train and test loss per epoch, one panel per task network."""
    plt = pyplot()
    names = list(curves)
    cols = min(6, max(1, len(names)))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.8 * rows), squeeze=False, constrained_layout=True)
    for ax, name in zip(axes.flat, names):
        c = curves[name]
        if len(c):
            for column, style in (("train_loss", "-o"), ("test_loss", "-s")):
                ax.plot(c["epoch"], c[column], style, ms=3, lw=1, label=column.replace("_loss", ""))
        else:
            ax.text(0.5, 0.5, "not trained", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if names:
        axes.flat[0].legend(fontsize=6)
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel("loss", fontsize=8)
    return save_figure(fig, path, dpi=DPI)


def _edge_style(share: float) -> tuple[float, float]:
    """Line width and opacity of a taxonomy edge kept in ``share`` of the resamples (1: drawn full)."""
    return 0.4 + 2.2 * share, 0.15 + 0.8 * share


def taxonomy_graph(solution: Mapping, path: Path) -> Path:
    """One taxonomy: supervised tasks in the inner ring, the other targets outside; an edge per source
    of a chosen transfer, coloured by the transfer's order; each transferred target labelled with its gain.
    With the solution's ``stability`` (stage taxonomy with resamples), each edge is drawn as opaque and wide
    as the share of resamples that keep it, and each task is labelled with that share."""
    plt = pyplot()
    supervised = list(solution["supervised"])
    per_target = solution.get("per_target", {})
    kept = solution.get("stability")
    g = nx.DiGraph()
    g.add_nodes_from(supervised)
    for target, choice in per_target.items():
        g.add_node(target)
        sources = [s for s in choice["sources"] if s != SELF]
        share = kept["edges"].get(target, 0.0) if kept else 1.0
        for s in sources:
            g.add_edge(s, target, order=len(sources), share=share)
    outer = [n for n in g if n not in supervised]
    shells = [supervised, outer] if supervised and outer else [list(g)]
    pos = nx.shell_layout(g, shells)
    fig, ax = plt.subplots(figsize=(7, 7), constrained_layout=True)
    orders = sorted({d["order"] for *_, d in g.edges(data=True)})
    cmap = plt.get_cmap("viridis", max(2, len(orders)))
    for i, k in enumerate(orders):
        for u, v, d in g.edges(data=True):
            if d["order"] == k:
                width, alpha = _edge_style(d["share"])
                nx.draw_networkx_edges(g, pos, edgelist=[(u, v)], ax=ax, edge_color=[cmap(i)], arrows=True,
                                       arrowsize=8, width=width, alpha=alpha, node_size=300)
    nx.draw_networkx_nodes(g, pos, nodelist=outer, ax=ax, node_color="#dddddd", node_size=160)
    nx.draw_networkx_nodes(g, pos, nodelist=supervised, ax=ax, node_color="#d62728", node_size=320,
                           node_shape="s")
    labels = {}
    for n in g:
        gain = per_target.get(n, {}).get("gain")
        if n in supervised:
            labels[n] = f"{n}\nkept {kept['supervised'].get(n, 0.0):.2f}" if kept else n
        elif gain is None or not np.isfinite(gain):
            labels[n] = n
        else:
            labels[n] = f"{n}\ngain {gain:.2f}" + (f", kept {kept['edges'].get(n, 0.0):.2f}" if kept else "")
    nx.draw_networkx_labels(g, pos, labels, ax=ax, font_size=6)
    ax.set_title(f"budget {solution['budget']:g}, max order {solution['max_order']}: "
                 f"{len(supervised)} supervised, objective {solution.get('objective', float('nan')):.3f}", fontsize=9)
    from matplotlib.lines import Line2D  # edge collections carry no legend entry: proxies per order

    handles = [Line2D([], [], color="#d62728", marker="s", ls="", label="supervised")]
    handles += [Line2D([], [], color=cmap(i), label=f"order {k} transfer") for i, k in enumerate(orders)]
    if kept:
        handles += [Line2D([], [], color="grey", lw=_edge_style(share)[0], alpha=_edge_style(share)[1],
                           label=f"kept in {share:.0%} of resamples") for share in (1.0, 0.5)]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.axis("off")
    ax.margins(0.12)
    return save_figure(fig, path, dpi=DPI)


def sweep(grid: pd.DataFrame, path: Path) -> Path:
    """Gain and quality against budget (one line per max order) and as budget x max order heatmaps."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), constrained_layout=True)
    for col, metric in enumerate(("gain", "quality")):
        ax = axes[0, col]
        for k, rows in grid.groupby("max_order"):
            rows = rows.sort_values("budget")
            ax.plot(rows["budget"], rows[metric], "-o", ms=4, label=f"max order {k}")
        ax.set_xlabel("supervision budget")
        ax.set_ylabel(f"mean {metric} (win rate)")
        ax.set_title(f"{metric} vs budget", fontsize=9)
        ax.legend(fontsize=7)
        table = grid.pivot_table(index="max_order", columns="budget", values=metric)
        ax = axes[1, col]
        im = ax.imshow(table.to_numpy(dtype=float), cmap="viridis", aspect="auto", vmin=0, vmax=1, origin="lower")
        ax.set_xticks(range(table.shape[1]), [f"{b:g}" for b in table.columns])
        ax.set_yticks(range(table.shape[0]), [str(k) for k in table.index])
        for (i, j), v in np.ndenumerate(table.to_numpy(dtype=float)):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
        ax.set_xlabel("supervision budget")
        ax.set_ylabel("max order")
        ax.set_title(f"{metric} over budget x max order", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return save_figure(fig, path, dpi=DPI)


def first_order_heatmaps(mean_loss: pd.DataFrame, affinity: pd.DataFrame, path: Path) -> Path:
    """The two first-order matrices as heatmaps, side by side (rows: sources, columns: targets)."""
    plt = pyplot()
    n_src, n_tgt = mean_loss.shape
    fig, axes = plt.subplots(1, 2, figsize=(2 * (2.5 + 0.32 * n_tgt), 2.0 + 0.3 * n_src), constrained_layout=True)
    # Each target's losses have their own scale: show each column divided by its mean.
    panels = ((mean_loss / mean_loss.mean(axis=0), "mean test loss / column mean\n(lower is better)", "viridis_r"),
              (affinity, "first-order AHP affinity, columns sum to 1\n(higher is better)", "magma"))
    for ax, (matrix, title, cmap) in zip(axes, panels):
        im = ax.imshow(matrix.to_numpy(dtype=float), cmap=cmap, aspect="auto")
        ax.set_xticks(range(n_tgt), matrix.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(n_src), matrix.index, fontsize=7)
        ax.set_xlabel("target"), ax.set_ylabel("source"), ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return save_figure(fig, path, dpi=120)


def dendrogram(z: np.ndarray, labels: list[str], path: Path, method: str) -> list[str]:
    """Draw the task similarity tree of linkage ``z`` to ``path``; returns the leaves in drawn order."""
    from scipy.cluster import hierarchy

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.5 + 0.3 * len(labels)), constrained_layout=True)
    tree = hierarchy.dendrogram(z, labels=labels, orientation="right", ax=ax)
    ax.set_title(f"task similarity tree ({method} linkage of first-order affinity columns)", fontsize=9)
    ax.set_xlabel("distance")
    save_figure(fig, path, dpi=120)
    return [labels[i] for i in tree["leaves"]]
