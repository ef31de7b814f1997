"""Stage ``adapt_summary``: every adapted task's methods between its two references (see
taskonomy.baselines.adapt_outputs for what ``adapt@<task>`` writes).

Gap closed = (source-only loss - adapted loss) / (source-only loss - oracle loss) on the target test
split: 0 = no better than the source-only network, 1 = as good as training on labelled target data.
Per seed (each method's seed s against the references' seed s), and for the seed-averaged per-image
losses with a 95% percentile bootstrap interval over target test images (the same images resampled
for all three); the spread over seeds beside it.

:func:`write_summary` writes ``reports/adapt.csv`` (task, method, seed or ``mean``, source- and
target-domain loss, gap closed with its interval and seed range), ``reports/adapt/target_selected.csv``
(what choosing each run's epoch on target labels would have claimed: shown apart, marked, never
used), ``gap.csv`` (DVC's bar plot), DVC metrics, a figure and plain sentences of what was found.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from taskonomy.baselines.runs import RUNS_FILE, image_interval, read_table
from taskonomy.config import Params
from taskonomy.errors import DataError
from taskonomy.storage import atomic_write_csv, atomic_write_json

TABLE_FIELDS = ["task", "method", "seed", "source_loss", "target_loss", "gap_closed", "gap_lo", "gap_hi",
                "gap_min", "gap_max", "note"]
SELECTED_FIELDS = ["task", "method", "seed", "target_loss", "target_selected_loss", "optimism"]
GAP_FIELDS = ["setting", "gap_closed", "gap_lo", "gap_hi"]


def gap_closed(source_only: np.ndarray, adapted: np.ndarray, oracle: np.ndarray) -> np.ndarray:
    """(S - A) / (S - O) of mean losses (any leading shape); nan where the oracle is no better than S."""
    source_only, adapted, oracle = (np.asarray(x, dtype=np.float64) for x in (source_only, adapted, oracle))
    denom = source_only - oracle
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, (source_only - adapted) / denom, np.nan)


def gap_interval(source_only: np.ndarray, adapted: np.ndarray, oracle: np.ndarray, rounds: int,
                 seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the gap closed over the M target test images: the per-image
    losses (M,) of the three are resampled together (``scipy.stats.bootstrap``)."""
    return image_interval(np.stack([source_only, adapted, oracle]), lambda means: gap_closed(*means), rounds, seed)


def _f(x: float) -> float | str:
    return "" if x is None or not np.isfinite(x) else round(float(x), 6)


def summarise(params: Params, runs_dir: Path, rounds: int | None = None) -> dict[str, Any]:
    """The table rows (per seed, then the seed mean per method), the marked target-selected rows, and
    per task and method the mean gap with its interval and seed range."""
    a = params.adapt
    rounds = rounds or a.bootstrap
    table, selected, gaps = [], [], []
    for task in a.tasks:
        rows, losses = read_table(Path(runs_dir) / task, f"adapt@{task}", "key", ("|source", "|target"))
        by = {(r["method"], int(r["seed"])): r for r in rows}
        seeds = sorted({int(r["seed"]) for r in rows})
        methods = list(dict.fromkeys(r["method"] for r in rows))
        if "source_only" not in methods or "oracle" not in methods:
            raise DataError(f"{runs_dir}/{task}/{RUNS_FILE}: needs source_only and oracle runs; rerun adapt@{task}")

        def per_item(method: str, seed: int, domain: str = "target") -> np.ndarray:
            return losses[f"{by[(method, seed)]['key']}|{domain}"].astype(np.float64)

        mean_items = {m: np.mean([per_item(m, s) for s in seeds], axis=0) for m in methods}
        for method in methods:
            per_seed = [float(gap_closed(per_item("source_only", s).mean(), per_item(method, s).mean(),
                                         per_item("oracle", s).mean())) for s in seeds]
            for s, g in zip(seeds, per_seed):
                r = by[(method, s)]
                table.append({"task": task, "method": method, "seed": s, "source_loss": _f(float(r["source_loss"])),
                              "target_loss": _f(float(r["target_loss"])), "gap_closed": _f(g), "gap_lo": "",
                              "gap_hi": "", "gap_min": "", "gap_max": "", "note": r["note"]})
                if r["target_selected_loss"] != "":
                    optimism = float(r["target_loss"]) - float(r["target_selected_loss"])
                    selected.append({"task": task, "method": method, "seed": s, "target_loss": _f(float(r["target_loss"])),
                                     "target_selected_loss": _f(float(r["target_selected_loss"])),
                                     "optimism": _f(optimism)})
            gap = float(gap_closed(mean_items["source_only"].mean(), mean_items[method].mean(), mean_items["oracle"].mean()))
            lo, hi = ((gap, gap) if method in ("source_only", "oracle") else
                      gap_interval(mean_items["source_only"], mean_items[method], mean_items["oracle"], rounds))
            finite = [g for g in per_seed if np.isfinite(g)]
            row = {"task": task, "method": method, "seed": "mean",
                   "source_loss": _f(np.mean([per_item(method, s, "source").mean() for s in seeds])),
                   "target_loss": _f(mean_items[method].mean()), "gap_closed": _f(gap), "gap_lo": _f(lo),
                   "gap_hi": _f(hi), "gap_min": _f(min(finite)) if finite else "",
                   "gap_max": _f(max(finite)) if finite else "", "note": f"mean of {len(seeds)} seed(s)"}
            table.append(row)
            gaps.append({**row, "per_seed": per_seed})
    return {"table": table, "selected": selected, "gaps": gaps}


def _interval(g: dict[str, Any]) -> str:
    return f"{g['gap_closed']:+.0%} [{g['gap_lo']:+.0%}, {g['gap_hi']:+.0%}]"


def findings(params: Params, gaps: Sequence[dict[str, Any]], domain: dict[str, Any]) -> list[str]:
    """Plain sentences per task: the shift's cost, each method's gap closed, whether it is beyond noise."""
    out = []
    for task in params.adapt.tasks:
        rows = {g["method"]: g for g in gaps if g["task"] == task}
        so, oracle = rows["source_only"], rows["oracle"]
        parts = []
        for method, g in rows.items():
            if method in ("source_only", "oracle"):
                continue
            if g["gap_closed"] == "":
                parts.append(f"{method}: undefined (the oracle is no better than source-only)")
                continue
            seeds = " ".join(f"{s:+.0%}" if np.isfinite(s) else "undefined" for s in g["per_seed"])
            if g["gap_lo"] == "" or g["gap_hi"] == "":
                parts.append(f"{method} closes {g['gap_closed']:+.0%} of the gap (seeds {seeds}); no interval: in "
                             f"some resamples of the test images the oracle is no better than source-only")
                continue
            every = (min(g["per_seed"]) > 0, max(g["per_seed"]) < 0)     # nan compares False: not every seed
            verdict = ("helps in every seed and beyond the image bootstrap" if g["gap_lo"] > 0 and every[0] else
                       "helps beyond the image bootstrap of the seed mean, but not in every seed" if g["gap_lo"] > 0 else
                       "hurts in every seed and beyond the image bootstrap" if g["gap_hi"] < 0 and every[1] else
                       "hurts beyond the image bootstrap of the seed mean, but not in every seed" if g["gap_hi"] < 0 else
                       "within noise of source-only")
            parts.append(f"{method} closes {_interval(g)} of the gap (seeds {seeds}): {verdict}")
        methods = "; ".join(parts) if parts else "no adaptation method listed"
        out.append(f"{task}: the shift ({', '.join(domain.get('shift', [])) or 'none'} at severity "
                   f"{domain.get('severity', '?')}) raises the source-only loss from {so['source_loss']:.3g} on source "
                   f"images to {so['target_loss']:.3g} on target images; the oracle reaches {oracle['target_loss']:.3g}. "
                   f"{methods}.")
    return out


def figure(gaps: Sequence[dict[str, Any]], table: Sequence[dict[str, Any]], tasks: Sequence[str], path: Path) -> None:
    """Per task, the target-domain loss of each method (bars: seed mean; black dots: seeds) and its
    source-domain loss (hollow markers), between the source-only and oracle references."""
    from taskonomy.plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = [g for g in gaps if g["task"] == task]
        names = [g["method"] for g in rows]
        ax.bar(range(len(rows)), [g["target_loss"] for g in rows], color=[f"C{i}" for i in range(len(rows))], alpha=0.7,
               label="target test")
        ax.scatter(range(len(rows)), [g["source_loss"] for g in rows], facecolors="none", edgecolors="black",
                   zorder=3, label="source test")
        for i, name in enumerate(names):
            seeds = [r["target_loss"] for r in table if r["task"] == task and r["method"] == name and r["seed"] != "mean"]
            ax.scatter([i] * len(seeds), seeds, color="black", s=8, zorder=4, label="target, per seed" if i == 0 else None)
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(task, fontsize=9)
        ax.set_ylabel("mean test loss")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    save_figure(fig, path, dpi=110)


def write_summary(params: Params, runs_dir: Path, table: Path, out: Path, metrics_path: Path,
                  rounds: int | None = None) -> dict[str, Any]:
    """Everything the stage writes (the DVC metrics, gap closed per task and method with its interval,
    to ``metrics_path``); returns the findings record."""
    import json

    summary = summarise(params, runs_dir, rounds)
    domain = json.loads((Path(runs_dir) / params.adapt.tasks[0] / "metrics.json").read_text()).get("domain", {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(table, TABLE_FIELDS, summary["table"])
    atomic_write_csv(out / "target_selected.csv", SELECTED_FIELDS, summary["selected"])
    adapted = [g for g in summary["gaps"] if g["method"] not in ("source_only", "oracle")]
    atomic_write_csv(out / "gap.csv", GAP_FIELDS, [{"setting": f"{g['task']}/{g['method']}", **{k: g[k] for k in GAP_FIELDS[1:]}}
                                                   for g in adapted])
    record = {"findings": findings(params, summary["gaps"], domain), "domain": domain}
    atomic_write_json(out / "findings.json", record)
    metrics = {}
    for g in adapted:
        metrics.setdefault(g["task"], {})[g["method"]] = {"gap_closed": g["gap_closed"], "lo": g["gap_lo"], "hi": g["gap_hi"]}
    atomic_write_json(metrics_path, {"adapt": metrics})
    figure(summary["gaps"], summary["table"], params.adapt.tasks, out / "adapt.png")
    return record
