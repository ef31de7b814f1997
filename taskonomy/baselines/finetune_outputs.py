"""What the fine-tuning stages make.

``finetune@<target>`` (:func:`finetune_target`) writes into ``outputs/finetune/<target>/``:
``runs.csv`` (one row per role and run: role, sources, mode, items, schedule, seed, mean test loss,
or the note of a role without a source), ``losses.npz`` (each run's per-item test losses, keyed by
its label) and ``metrics.json``; ``runs/`` keeps every finished run (see taskonomy.baselines.finetune).

``finetune_summary`` (:func:`summarise`) reads every target's and writes ``reports/finetune.csv``:
per row, besides the run, its win rate (share of test images where its loss is lower) and mean loss
difference, with a per-image bootstrap interval, against scratch at the 1x schedule and against the
frozen readout of the same sources, both at the same size and seed; the DVC metrics and plot data;
a figure of test loss against data size; and a plain sentence per target of what was found.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from taskonomy.analysis.affinity import win_rates
from taskonomy.analysis.tables import read_first_order
from taskonomy.bank import check_same_bank, load_split
from taskonomy.baselines.finetune import (SCRATCH, Context, Run, choose_sources, load_encoders, load_run,
                                          plan_runs, run_stamps, train_run)
from taskonomy.config import Params
from taskonomy.errors import DataError, ParamsError
from taskonomy.losses import load_npz, write_keyed
from taskonomy.nets.data import fit_stats, load_task_data
from taskonomy.nets.train import resolve_device, set_threads
from taskonomy.sources import set_key
from taskonomy.storage import atomic_path, atomic_write_json, ensure_writable
from taskonomy.tasks import get_task
from taskonomy.transfer.engine import executor_spec
from taskonomy.transfer.executors import map_jobs

log = logging.getLogger("taskonomy.finetune")

RUN_FIELDS = ["target", "role", "sources", "mode", "items", "schedule", "seed", "mean_loss", "label", "note"]
LOSS_FILE = "losses.npz"


def solution_path(taxonomy: Path, params: Params) -> Path:
    """The taxonomy stage's solution at ``finetune.budget`` / ``finetune.max_order``."""
    return Path(taxonomy) / f"b{float(params.finetune.budget):g}_k{params.finetune.max_order}.json"


def read_solution(path: Path) -> dict:
    try:
        solution = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; it is written by stage taxonomy (dvc repro taxonomy)") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable taxonomy solution ({err})") from None
    if solution.get("status") != "optimal":
        raise DataError(f"{path}: the taxonomy has no solution at finetune.budget / finetune.max_order "
                        f"(status {solution.get('status')!r}); choose another budget")
    return solution


def finetune_target(target: str, params: Params, bank: Path, models: Path, taxonomy: Path,
                    first_order: Path, out: Path) -> None:
    """Every run of ``target`` (reusing finished ones), then its ``runs.csv`` and ``losses.npz``."""
    f = params.finetune
    if target not in f.targets:
        raise ParamsError(f"finetune.targets: '{target}' is not listed (listed: {', '.join(f.targets)})")
    ensure_writable(out)
    solution = read_solution(solution_path(taxonomy, params)) if "taxonomy" in f.roles else None
    chosen = choose_sources(target, f.roles, solution, read_first_order(first_order))
    runs = plan_runs(chosen, f)
    sources = sorted({s for run in runs for s in run.sources})
    model_paths = {s: Path(models) / s / "model.pt" for s in sources}
    encoders = load_encoders(model_paths)             # before the bank: a bad checkpoint fails fast

    task = get_task(target)
    train_split, test_split = load_split(bank, f.split), load_split(bank, "test")
    check_same_bank({f.split: train_split, "test": test_split})
    stats = fit_stats(task, load_split(bank, "train") if f.split != "train" else train_split)
    train, test = load_task_data(train_split, task, stats), load_task_data(test_split, task, stats)
    too_many = [n for n in f.sizes if n > len(train)]
    if too_many:
        raise ParamsError(f"finetune.sizes: {too_many[0]} items, but {target}'s {f.split} split has {len(train)}")

    device = str(resolve_device(f.device))
    stamps = run_stamps(runs, target, params, model_paths, f"{train.digest()}:{test.digest()}")
    cache = Path(out) / "runs"
    done = {run.label: load_run(cache / f"{stamps[run.label]}.npz") for run in runs}
    todo = [run for run in runs if done[run.label] is None]
    log.info("finetune %s: %d runs (%d stored), sources %s", target, len(runs), len(runs) - len(todo),
             ", ".join(sources) or "none")
    t0 = time.perf_counter()
    if todo:
        context = Context(target, train.task, train, test, encoders, params, device, cache, stamps)
        spec = executor_spec(f, device)
        set_threads(spec.threads)
        map_jobs(train_run, context, todo, spec)
        done = {run.label: load_run(cache / f"{stamps[run.label]}.npz") for run in runs}
        lost = [label for label, v in done.items() if v is None]
        if lost:
            raise DataError(f"{cache}: run {lost[0]} finished but its result cannot be read back")

    rows = []
    for role, (group, note) in chosen.items():
        if group is None:
            rows.append({"target": target, "role": role, "sources": "", "mode": "", "items": "", "schedule": "",
                         "seed": "", "mean_loss": "", "label": "", "note": note})
            continue
        rows += [_row(target, role, run, done[run.label][1]) for run in runs if run.sources == group]
    rows += [_row(target, SCRATCH, run, done[run.label][1]) for run in runs if run.mode == SCRATCH]
    with atomic_path(Path(out) / "runs.csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, RUN_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    write_keyed(Path(out) / LOSS_FILE, {label: v[0] for label, v in done.items()})
    atomic_write_json(Path(out) / "metrics.json", {
        "target": target, "runs": len(runs), "trained": len(todo), "reused": len(runs) - len(todo),
        "device": device, "train_seconds": round(time.perf_counter() - t0, 3),
        "loadavg": round(os.getloadavg()[0], 2)})


def _row(target: str, role: str, run: Run, record: dict[str, Any]) -> dict[str, Any]:
    return {"target": target, "role": role, "sources": set_key(run.sources) if run.sources else "",
            "mode": run.mode, "items": run.items, "schedule": run.schedule, "seed": run.seed,
            "mean_loss": record["mean_loss"], "label": run.label, "note": ""}


# --------------------------------------------------------------------------------------------------
# The summary over targets
# --------------------------------------------------------------------------------------------------

SUMMARY_FIELDS = ["target", "role", "sources", "mode", "items", "schedule", "seed", "mean_loss",
                  "win_vs_scratch", "diff_vs_scratch", "diff_vs_scratch_lo", "diff_vs_scratch_hi",
                  "win_vs_frozen", "diff_vs_frozen", "diff_vs_frozen_lo", "diff_vs_frozen_hi", "label", "note"]


def compare(a: np.ndarray, b: np.ndarray, rounds: int, seed: int) -> dict[str, float]:
    """``a`` against ``b`` on the same test images: the share where ``a``'s loss is lower (strict, as
    the affinities' win rates), and the mean of ``a - b`` with its 95% percentile bootstrap interval
    over test images (``scipy.stats.bootstrap``)."""
    from scipy.stats import bootstrap

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if np.all(d == d[0]):
        lo = hi = float(d[0])
    else:
        ci = bootstrap((d,), np.mean, n_resamples=rounds, confidence_level=0.95, method="percentile",
                       random_state=np.random.default_rng(seed), vectorized=True).confidence_interval
        lo, hi = float(ci.low), float(ci.high)
    return {"win": float(win_rates(np.stack([a, b]))[0, 1]), "diff": float(d.mean()), "lo": lo, "hi": hi}


def read_runs(folder: Path, target: str) -> tuple[list[dict[str, str]], dict[str, np.ndarray]]:
    path = Path(folder) / "runs.csv"
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise DataError(f"{path}: missing; it is written by stage finetune@{target}") from None
    labels = sorted({r["label"] for r in rows if r["label"]})
    return rows, load_npz(Path(folder) / LOSS_FILE, f"finetune@{target}", labels)


def summarise(params: Params, runs_dir: Path, rounds: int | None = None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every target's rows with their comparisons, and a finding per target."""
    rounds = rounds or params.finetune.bootstrap
    table, findings = [], {}
    for target in params.finetune.targets:
        rows, losses = read_runs(Path(runs_dir) / target, target)
        scratch = {(r["items"], r["seed"]): r["label"] for r in rows
                   if r["mode"] == SCRATCH and float(r["schedule"]) == 1.0}
        frozen = {(r["sources"], r["items"], r["seed"]): r["label"] for r in rows if r["mode"] == "frozen"}
        out = []
        for r in rows:
            row = {k: r.get(k, "") for k in SUMMARY_FIELDS}
            if r["label"]:
                for name, ref in (("scratch", scratch.get((r["items"], r["seed"]))),
                                  ("frozen", frozen.get((r["sources"], r["items"], r["seed"])))):
                    if ref and ref != r["label"]:
                        c = compare(losses[r["label"]], losses[ref], rounds, seed=len(out))
                        row.update({f"win_vs_{name}": c["win"], f"diff_vs_{name}": c["diff"],
                                    f"diff_vs_{name}_lo": c["lo"], f"diff_vs_{name}_hi": c["hi"]})
            out.append(row)
        table += out
        findings[target] = finding(target, out, losses, rounds)
    return table, findings


def _said(c: dict[str, float]) -> str:
    """'beats' / 'loses to' / 'is within noise of' from the interval of a mean loss difference."""
    return "beats" if c["hi"] < 0 else "loses to" if c["lo"] > 0 else "is within noise of"


def _span(c: dict[str, float]) -> str:
    return f"{c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]"


def finding(target: str, rows: Sequence[dict], losses: dict[str, np.ndarray], rounds: int) -> str:
    """A plain sentence for ``target`` (its first seed): at the smallest size, does the taxonomy's
    source (in its best fine-tuned mode) beat scratch 1x and the worst source in the same mode; from
    which size scratch at its longest schedule is no longer worse than that source (each with the mean
    loss difference and its interval); and full fine-tuning against the frozen readout."""
    runs = [r for r in rows if r["label"]]
    if not runs:
        return f"{target}: no runs."
    seed = min(int(r["seed"]) for r in runs)
    runs = [r for r in runs if int(r["seed"]) == seed]
    sizes = sorted({int(r["items"]) for r in runs})
    at = lambda n, **kw: [r for r in runs if int(r["items"]) == n  # noqa: E731
                          and all(str(r[k]) == str(v) for k, v in kw.items())]
    cmp = lambda a, b: compare(losses[a["label"]], losses[b["label"]], rounds, seed=0)  # noqa: E731
    parts = []
    tax_note = next((r["note"] for r in rows if r["role"] == "taxonomy" and r["note"]), "")
    lead = "taxonomy" if any(r["role"] == "taxonomy" for r in runs) else "best"
    if tax_note:
        parts.append(f"the taxonomy chose no source ({tax_note}), so the best first-order source stands in")

    def pretrained(n: int) -> dict | None:
        tuned = [r for r in at(n, role=lead) if r["mode"] != "frozen"] or at(n, role=lead)
        return min(tuned, key=lambda r: float(r["mean_loss"])) if tuned else None

    longest = max((float(r["schedule"]) for r in runs if r["mode"] == SCRATCH), default=None)
    mine = pretrained(sizes[0])
    if mine is not None:
        scratch = [r for r in at(sizes[0], mode=SCRATCH) if float(r["schedule"]) == 1.0]
        said = f"at {sizes[0]} items the {lead} source {mine['sources']} (its best mode: {mine['mode']})"
        if scratch:
            c = cmp(mine, scratch[0])
            said += f" {_said(c)} scratch 1x ({_span(c)})"
        worst = at(sizes[0], role="worst", mode=mine["mode"])
        if worst and worst[0]["label"] != mine["label"]:
            c = cmp(mine, worst[0])
            said += f" and {_said(c)} the worst source {worst[0]['sources']} ({_span(c)})"
        parts.append(said)
        if longest is not None:
            caught = None
            for n in sizes:
                pre = pretrained(n)
                long = [r for r in at(n, mode=SCRATCH) if float(r["schedule"]) == longest]
                if pre is not None and long:
                    c = cmp(long[0], pre)
                    if c["lo"] <= 0:          # scratch no worse than the pretrained network, within noise
                        caught = (n, c)
                        break
            parts.append(f"scratch at {longest:g}x catches up from {caught[0]} items ({_span(caught[1])})" if caught
                         else f"scratch at {longest:g}x is still worse at {sizes[-1]} items")
        full, frozen = at(sizes[0], role=lead, mode="full"), at(sizes[0], role=lead, mode="frozen")
        if full and frozen:
            c = cmp(full[0], frozen[0])
            parts.append(f"full fine-tuning {_said(c)} the frozen readout ({_span(c)})")
    return f"{target}: " + "; ".join(parts) + "."


def write_summary(params: Params, runs_dir: Path, table_path: Path, metrics_path: Path, plot_path: Path,
                  findings_path: Path, figure_path: Path) -> None:
    """``reports/finetune.csv``, its DVC metrics and plot data, the findings and the figure."""
    table, findings = summarise(params, runs_dir)
    with atomic_path(table_path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(table)
    runs = [r for r in table if r["mode"]]
    metrics = {}
    for r in runs:
        key = f"{r['role']}/{r['mode']}/n{r['items']}/x{float(r['schedule']):g}/s{r['seed']}"
        metrics.setdefault(r["target"], {})[key] = {"loss": round(float(r["mean_loss"]), 6),
                                                   **({"win_vs_scratch": round(float(r["win_vs_scratch"]), 4)}
                                                      if r.get("win_vs_scratch", "") != "" else {})}
    atomic_write_json(metrics_path, metrics)
    with atomic_path(plot_path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["variant", "items", "mean_loss"])
        writer.writeheader()
        writer.writerows({"variant": f"{r['target']} {r['role']} {r['mode']} x{float(r['schedule']):g}",
                          "items": r["items"], "mean_loss": r["mean_loss"]} for r in runs)
    atomic_write_json(findings_path, {"findings": findings, "budget": params.finetune.budget,
                                      "max_order": params.finetune.max_order, "seeds": params.finetune.seeds,
                                      "rounds": params.finetune.bootstrap})
    figure(table, params.finetune.targets, figure_path)


def figure(table: Sequence[dict], targets: Sequence[str], path: Path) -> None:
    """Test loss against training items, one panel per target, one line per role and mode."""
    from taskonomy.plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), squeeze=False)
    styles = {"frozen": ":", "partial": "-.", "full": "-", "l2sp": "--", SCRATCH: "-"}
    for ax, target in zip(axes[0], targets):
        rows = [r for r in table if r["target"] == target and r["mode"]]
        lines: dict[str, list[tuple[int, float]]] = {}
        for r in rows:
            name = (f"scratch x{float(r['schedule']):g}" if r["mode"] == SCRATCH
                    else f"{r['role']} ({r['sources']}) {r['mode']}")
            lines.setdefault(name, []).append((int(r["items"]), float(r["mean_loss"])))
        for name, points in lines.items():
            by_size: dict[int, list[float]] = {}
            for n, v in points:
                by_size.setdefault(n, []).append(v)
            xs = sorted(by_size)
            mode = SCRATCH if name.startswith("scratch") else name.rsplit(" ", 1)[1]
            ax.plot(xs, [float(np.mean(by_size[n])) for n in xs], styles.get(mode, "-"), marker="o", ms=3,
                    lw=2.2 if name.startswith("scratch") else 1.2, label=name)
        ax.set_xscale("log")
        ax.set_title(target, fontsize=10)
        ax.set_xlabel("training items")
        ax.set_ylabel("mean test loss")
        ax.legend(fontsize=5.5)
    save_figure(fig, path)
