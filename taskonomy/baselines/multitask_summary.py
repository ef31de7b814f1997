"""Stage ``multitask_summary``: every grouping and weighting against the task networks (see
taskonomy.baselines.multitask_outputs for what ``multitask@<grouping>`` writes).

:func:`write_summary` writes ``reports/multitask.csv`` (grouping, group, weighting, seed, task, test
loss, the task network's loss, relative improvement), ``reports/multitask/delta.csv`` (Delta_p per
grouping x weighting: per seed, its mean and spread over seeds, and a per-image bootstrap interval of
the seed-averaged losses), ``tag.csv`` (TAG's affinity beside the transfer affinity for every pair of
the all-in-one run, with their Spearman correlation per target), DVC metrics, a figure, and plain
sentences of what was found. Its own module, so that an edit here reruns the summary and not the
training stages.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from taskonomy.baselines.multitask_outputs import studied_tasks
from taskonomy.baselines.runs import image_interval, read_table
from taskonomy.config import Params
from taskonomy.errors import DataError
from taskonomy.losses import load_npy, self_path
from taskonomy.storage import atomic_write_csv, atomic_write_json

TABLE_FIELDS = ["grouping", "group", "weighting", "seed", "task", "test_loss", "single_loss", "rel_improvement",
                "selected_epoch", "note"]
DELTA_FIELDS = ["grouping", "weighting", "setting", "seeds", "delta_p", "delta_p_std", "delta_p_min", "delta_p_max",
                "delta_p_lo", "delta_p_hi", "per_seed"]
TAG_FIELDS = ["source", "target", "tag_affinity", "transfer_affinity"]


def delta_p(single: np.ndarray, multi: np.ndarray) -> np.ndarray:
    """LibMTL's Delta_p for losses (lower is better), in %: 100 * mean_t (B_t - N_t) / B_t, positive =
    the multi-task network is better. ``single`` / ``multi``: per-task mean losses, (T, ...) arrays."""
    single, multi = np.asarray(single, dtype=np.float64), np.asarray(multi, dtype=np.float64)
    return 100.0 * np.mean((single - multi) / single, axis=0)


def delta_p_interval(single: np.ndarray, multi: np.ndarray, rounds: int, seed: int) -> tuple[float, float]:
    """95% percentile bootstrap interval of Delta_p over test images: ``single`` / ``multi`` are
    per-image losses (T, M) on the same M images, resampled together (``scipy.stats.bootstrap``)."""
    single, multi = np.asarray(single, dtype=np.float64), np.asarray(multi, dtype=np.float64)
    if np.array_equal(single, multi):
        return 0.0, 0.0
    return image_interval(np.stack([single, multi]), lambda means: delta_p(means[0], means[1]), rounds, seed)


def summarise(params: Params, runs_dir: Path, models: Path, rounds: int | None = None) -> dict[str, Any]:
    """The table rows, Delta_p per grouping x weighting, and the per-image losses behind them."""
    m = params.multitask
    rounds = rounds or m.bootstrap
    tasks, _ = studied_tasks(params)
    single = {t: load_npy(self_path(models, t), f"train_task@{t}") for t in tasks}
    table, deltas = [], []
    for grouping in m.groupings:
        rows, losses = read_table(Path(runs_dir) / grouping, f"multitask@{grouping}", "key")
        by_setting: dict[str, dict[int, dict[str, np.ndarray]]] = {}
        for r in rows:
            base = float(single[r["task"]].mean())
            test = float(r["test_loss"])
            table.append({**{k: r[k] for k in ("grouping", "group", "weighting", "seed", "task", "selected_epoch", "note")},
                          "test_loss": test, "single_loss": base, "rel_improvement": (base - test) / base})
            by_setting.setdefault(r["weighting"], {}).setdefault(int(r["seed"]), {})[r["task"]] = losses[r["key"]]
        for weighting, per_seed in by_setting.items():
            seeds = sorted(per_seed)
            order = [t for t in tasks if t in per_seed[seeds[0]]]
            base = np.stack([single[t] for t in order])                                     # (T, M)
            runs = np.stack([np.stack([per_seed[s][t] for t in order]) for s in seeds])     # (S, T, M)
            values = [float(delta_p(base.mean(1), r.mean(1))) for r in runs]
            lo, hi = delta_p_interval(base, runs.mean(0), rounds, seed=len(deltas))
            deltas.append({"grouping": grouping, "weighting": weighting, "setting": f"{grouping}/{weighting}",
                           "seeds": len(seeds), "delta_p": float(np.mean(values)),
                           "delta_p_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                           "delta_p_min": min(values), "delta_p_max": max(values), "delta_p_lo": lo,
                           "delta_p_hi": hi, "per_seed": " ".join(f"{v:+.2f}" for v in values)})
    return {"table": table, "deltas": deltas}


def tag_table(params: Params, runs_dir: Path, first_order: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """TAG's affinity (mean over seeds) beside the transfer affinity of every (source, target) pair of
    the all-in-one run, and Spearman's rho between them per target and pooled ({} when not measured)."""
    path = Path(runs_dir) / "all" / "tag.json"
    if "all" not in params.multitask.groupings or params.multitask.tag_every == 0:
        return [], {}
    try:
        tag = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; it is written by stage multitask@all") from None
    runs = list(tag["seeds"].values())
    if not runs:
        return [], {}
    tasks = runs[0]["tasks"]
    z = np.mean([np.asarray(r["affinity"]) for r in runs], axis=0)
    rows, per_target = [], {}
    for j, target in enumerate(tasks):
        sources = [i for i, s in enumerate(tasks) if i != j and s in first_order.index and target in first_order.columns]
        pairs = [(float(z[i, j]), float(first_order.loc[tasks[i], target])) for i in sources]
        rows += [{"source": tasks[i], "target": target, "tag_affinity": a, "transfer_affinity": b}
                 for i, (a, b) in zip(sources, pairs)]
        if len(pairs) >= 3:
            per_target[target] = _spearman(*zip(*pairs))[0]
    pooled = _spearman([r["tag_affinity"] for r in rows], [r["transfer_affinity"] for r in rows])
    stats = {"per_target": per_target, "seeds": len(runs), "every": tag["every"],
             "pooled_rho": pooled[0], "pooled_p": pooled[1], "pairs": len(rows)}
    return rows, stats


def _spearman(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    """Spearman's rho and its p-value; (None, None) for fewer than 3 pairs or a constant side."""
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None, None
    result = spearmanr(a, b)
    return float(result.statistic), float(result.pvalue)


def findings(params: Params, deltas: Sequence[dict[str, Any]], tag: dict[str, Any]) -> list[str]:
    """Plain sentences: per weighting, which grouping did best and whether that is beyond noise; the
    weightings against each other; TAG against transfer affinity."""
    out = []
    m = params.multitask
    trained = [d for d in deltas if d["grouping"] != "single"]
    for weighting in [w for w in m.weightings if any(d["weighting"] == w for d in trained)]:
        rows = sorted([d for d in trained if d["weighting"] == weighting], key=lambda d: -d["delta_p"])
        parts = ", ".join(f"{d['grouping']} {d['delta_p']:+.1f}% [{d['delta_p_lo']:+.1f}, {d['delta_p_hi']:+.1f}] "
                          f"(seeds {d['per_seed']})" for d in rows)
        best = rows[0]
        verdict = ("better than the task networks" if best["delta_p_lo"] > 0 else
                   "worse than the task networks" if best["delta_p_hi"] < 0 else "within noise of the task networks")
        if len(rows) > 1:
            second = rows[1]
            apart = best["delta_p_min"] > second["delta_p_max"] and best["delta_p_lo"] > second["delta_p_hi"]
            gap = (f"; {best['grouping']} beats {second['grouping']} in every seed and beyond the image bootstrap"
                   if apart else f"; {best['grouping']} and {second['grouping']} are within noise of each other "
                                 f"(seed ranges or intervals overlap)")
        else:
            gap = ""
        out.append(f"{weighting} weighting: Delta_p against the task networks (+ = better, 95% interval over test "
                   f"images): {parts}. Best: {best['grouping']}, {verdict}{gap}.")
        by = {d["grouping"]: d for d in rows}
        if "taxonomy" in by and "random" in by:
            gaps = [float(a) - float(b) for a, b in zip(by["taxonomy"]["per_seed"].split(), by["random"]["per_seed"].split())]
            sign = ("ahead in every seed" if min(gaps) > 0 else "behind in every seed" if max(gaps) < 0
                    else "ahead in some seeds and behind in others")
            out.append(f"{weighting} weighting, the taxonomy's groups against random groups of the same sizes: "
                       f"{np.mean(gaps):+.1f} points of Delta_p (per seed {' '.join(f'{g:+.1f}' for g in gaps)}), "
                       f"{sign}.")
    for grouping in [g for g in m.groupings if g != "single"]:
        rows = sorted([d for d in trained if d["grouping"] == grouping], key=lambda d: -d["delta_p"])
        if len(rows) > 1:
            spread = max(d["delta_p_max"] for d in rows) - min(d["delta_p_min"] for d in rows)
            seed_range = max(d["delta_p_max"] - d["delta_p_min"] for d in rows)
            out.append(f"{grouping}: weightings from {rows[0]['weighting']} ({rows[0]['delta_p']:+.1f}%) to "
                       f"{rows[-1]['weighting']} ({rows[-1]['delta_p']:+.1f}%); the widest seed range of one "
                       f"weighting is {seed_range:.1f} points, the whole spread {spread:.1f}.")
    if tag.get("pooled_rho") is not None:
        rhos = [v for v in tag["per_target"].values() if v is not None]
        median = f"median per-target rho {np.median(rhos):+.2f} over {len(rhos)} targets, " if rhos else ""
        word = ("predicts" if tag["pooled_p"] < 0.05 and tag["pooled_rho"] > 0 else
                "runs against" if tag["pooled_p"] < 0.05 else "does not measurably predict")
        out.append(f"TAG (lookahead every {tag['every']} steps in the all-in-one runs, {tag['seeds']} seed(s)) against "
                   f"first-order transfer affinity: {median}pooled rho {tag['pooled_rho']:+.2f} "
                   f"(p = {tag['pooled_p']:.2g}, {tag['pairs']} pairs): here transfer affinity {word} "
                   f"which tasks help each other when trained together.")
    return out


def figure(deltas: Sequence[dict[str, Any]], tag_rows: Sequence[dict[str, Any]], tag: dict[str, Any], path: Path) -> None:
    """Delta_p per grouping and weighting (bars: seed mean; lines: image-bootstrap interval; dots: seeds),
    and TAG's affinity against transfer affinity."""
    from taskonomy.plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if tag_rows else 1, figsize=(11 if tag_rows else 6, 4), squeeze=False)
    ax = axes[0, 0]
    groupings = list(dict.fromkeys(d["grouping"] for d in deltas if d["grouping"] != "single"))
    weightings = list(dict.fromkeys(d["weighting"] for d in deltas if d["grouping"] != "single"))
    width = 0.8 / max(len(weightings), 1)
    for k, w in enumerate(weightings):
        for i, g in enumerate(groupings):
            d = next((d for d in deltas if d["grouping"] == g and d["weighting"] == w), None)
            if d is None:
                continue
            x = i + (k - (len(weightings) - 1) / 2) * width
            ax.bar(x, d["delta_p"], width * 0.9, color=f"C{k}", label=w if i == 0 else None, alpha=0.7)
            ax.plot([x, x], [d["delta_p_lo"], d["delta_p_hi"]], color="black", lw=1)
            ax.scatter([x] * d["seeds"], [float(v) for v in d["per_seed"].split()], color="black", s=8, zorder=3)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(groupings)), groupings)
    ax.set_ylabel("Delta_p vs task networks (%, + = better)")
    ax.legend(title="weighting", fontsize=8)
    if tag_rows:
        ax = axes[0, 1]
        ax.scatter([r["transfer_affinity"] for r in tag_rows], [r["tag_affinity"] for r in tag_rows], s=12)
        ax.set_xlabel("first-order transfer affinity")
        ax.set_ylabel("TAG affinity in the all-in-one run")
        ax.set_title(f"pooled Spearman rho {tag['pooled_rho']:+.2f}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def write_summary(params: Params, runs_dir: Path, models: Path, first_order: Path, table: Path, out: Path,
                  metrics_path: Path, rounds: int | None = None) -> dict[str, Any]:
    """Everything the stage writes (the DVC metrics to ``metrics_path``); returns the findings record."""
    from taskonomy.analysis.tables import read_first_order

    summary = summarise(params, runs_dir, models, rounds)
    tag_rows, tag = tag_table(params, runs_dir, read_first_order(first_order))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(table, TABLE_FIELDS, summary["table"])
    atomic_write_csv(out / "delta.csv", DELTA_FIELDS, summary["deltas"])
    atomic_write_csv(out / "tag.csv", TAG_FIELDS, tag_rows)
    _, left_out = studied_tasks(params)
    record = {"findings": findings(params, summary["deltas"], tag), "left_out": left_out, "tag": tag}
    atomic_write_json(out / "findings.json", record)
    metrics: dict[str, Any] = {"delta_p": {}, "delta_p_std": {}}     # grouping -> weighting -> number
    for d in summary["deltas"]:
        for key in ("delta_p", "delta_p_std"):
            metrics[key].setdefault(d["grouping"], {})[d["weighting"]] = round(d[key], 4)
    if tag.get("pooled_rho") is not None:
        metrics["tag_spearman"] = round(tag["pooled_rho"], 4)
    atomic_write_json(metrics_path, {"multitask": metrics})
    figure(summary["deltas"], tag_rows, tag, out / "multitask.png")
    return record
