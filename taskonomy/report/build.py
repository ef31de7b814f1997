"""Stage ``report``: what the run found, as ``reports/index.html`` (self-contained) and ``reports/README.md``.

Reads the outputs of every earlier stage (paths from dvc.yaml, task names from the task list, never
globbed) and builds one list of sections (:mod:`taskonomy.report.page`), each with a stable id:

``task-bank``        the bank's sample sheet;
``task-networks``    each task network against its trivial baseline, training curves, and whether
                     ``self`` beats every first-order transfer into its task (the gold standard);
``affinities``       the first-order matrices before and after AHP (the paper's Fig. 7), top sources;
``taxonomy``         the taxonomy graph per budget at the largest max order; supervised tasks per cell;
``gain-quality``     gain and quality over budget x max order (reports/taxonomy/grid.csv);
``similarity-tree``  the task similarity tree;
``known-structure``  the synthetic bank's known ties, checked on the affinities (taskonomy.analysis.checks);
``novel-tasks``      the target-only tasks: the taxonomy's transfer against the best single source and scratch;
``provenance``       params, code version, per-stage timings that stages record, the machine.

A missing input stops the stage with one line naming the file and the command that makes it.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from taskonomy.report import figures
from taskonomy.losses import load_npy, self_path
from taskonomy.config import Params, as_dict
from taskonomy.errors import DataError
from taskonomy.provenance import git_describe
from taskonomy.analysis.checks import ranked_sources
from taskonomy.report.page import Image, Pre, Section, Table, Text, render_html, render_markdown
from taskonomy.storage import atomic_write_text
from taskonomy.analysis.tables import read_first_order
from taskonomy.analysis.taxonomy import solution_name


SECTION_IDS = ("task-bank", "task-networks", "affinities", "taxonomy", "gain-quality", "similarity-tree",
               "known-structure", "novel-tasks", "finetune", "multitask", "adapt", "provenance")


@dataclass(frozen=True)
class ReportInputs:
    """Where the earlier stages wrote their outputs (the stage's arguments, from dvc.yaml)."""
    task_list: Path
    models: Path
    transfer: Path
    bank_samples: Path
    first_order: Path      # folder: first_order_{losses,affinities}.csv, first_order.png
    affinities: Path
    taxonomy: Path         # folder: solutions/, grid.csv, tree/
    checks: Path           # checks.json of stage checks
    finetune: Path | None = None   # reports/finetune.csv; its findings.json and finetune.png beside it in reports/finetune/
    multitask: Path | None = None  # reports/multitask.csv; delta.csv, findings.json, multitask.png in reports/multitask/
    adapt: Path | None = None      # reports/adapt.csv; findings.json, adapt.png, domains.png, taxonomy/ in reports/adapt/
    lock: Path | None = None
    timings: Path | None = None


def _need(path: Path, stage: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path} is missing: run `dvc repro {stage}`")
    return path


def _read_csv(path: Path, stage: str, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(_need(path, stage), **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({type(err).__name__}): run `dvc repro {stage}`") from None


def _read_json(path: Path, stage: str):
    try:
        return json.loads(_need(path, stage).read_text())
    except json.JSONDecodeError:
        raise DataError(f"{path}: not valid JSON: run `dvc repro {stage}`") from None


# --------------------------------------------------------------------------------------------------
# Findings (pure: tables in, tables out)
# --------------------------------------------------------------------------------------------------

def network_rows(metrics: dict[str, dict]) -> list[tuple]:
    """(task, test loss, trivial loss, ratio, share of items beating trivial, beats trivial) per task."""
    rows = []
    for task, m in metrics.items():
        if not m.get("trained", True) or "test_loss" not in m:
            rows.append((task, float("nan"), float("nan"), float("nan"), float("nan"), "untrained"))
            continue
        ratio = m["test_loss"] / m["trivial_loss"] if m.get("trivial_loss") else float("nan")
        rows.append((task, m["test_loss"], m["trivial_loss"], ratio, m.get("beats_trivial", float("nan")),
                     "yes" if ratio < 1 else "no"))
    return rows


def gold_standard(first_losses: pd.DataFrame, self_losses: dict[str, float]) -> list[tuple]:
    """Per target: self's mean test loss, the best first-order transfer's, and whether self wins."""
    rows = []
    for target, self_loss in self_losses.items():
        col = first_losses[target].dropna()
        best = col.idxmin()
        rows.append((target, self_loss, best, float(col[best]), "yes" if self_loss < col[best] else "no"))
    return rows


def top_sources(affinities: pd.DataFrame, k: int) -> list[tuple]:
    """Per target: its ``k`` best first-order sources with their affinities (itself left out)."""
    rows = []
    for target in affinities.columns:
        ranked = ranked_sources(affinities, target)[:k]
        rows.append((target, *[f"{s} ({affinities.at[s, target]:.3f})" for s in ranked],
                     *[""] * (k - len(ranked))))
    return rows


def best_transfers(table: pd.DataFrame, k: int) -> list[tuple]:
    """Per target of the full affinity table: its ``k`` best transfers of any order (``self``, ``random`` and the
    sets that hold the target itself left out) with their affinities and 95% intervals over resamples of the readout seeds and test images,
    and whether the best one's interval overlaps the runner-up's (then their order is within noise)."""
    rows = []
    for target, rows_t in table.groupby("target", sort=False):
        own = rows_t.sources.str.split("__").apply(lambda names: target in names)     # t <- t is no transfer
        ranked = rows_t[(rows_t.order >= 1) & (rows_t.sources != "random") & ~own].sort_values("affinity", ascending=False)
        cells = [f"{r.sources} {r.affinity:.3f} [{r.affinity_lo:.3f}, {r.affinity_hi:.3f}]"
                 if "affinity_lo" in ranked else f"{r.sources} {r.affinity:.3f}" for r in ranked.head(k).itertuples()]
        firm = ""
        if "affinity_lo" in ranked and len(ranked) >= 2:
            first, second = ranked.iloc[0], ranked.iloc[1]
            firm = "yes" if first.affinity_lo > second.affinity_hi else "no"
        rows.append((target, *cells, *[""] * (k - len(cells)), firm))
    return rows


def defined(stage: str, params: Params) -> bool:
    """Whether ``stage`` of dvc.lock is a stage of these params: DVC keeps the lock entries of stages a
    params edit removed (a task, a fine-tuned target, a grouping), which the timings table leaves out."""
    name, _, key = stage.partition("@")
    keys = {"train_task": params.tasks, "transfer": params.tasks, "finetune": params.finetune.targets,
            "multitask": params.multitask.groupings, "adapt": params.adapt.tasks}.get(name)
    return not key or keys is None or key in keys


def stage_timings(stages: list[str], timings: Path | None, models: Path) -> list[tuple]:
    """(stage, seconds, detail) per stage of dvc.lock, and their total.

    Seconds: the stage process's wall clock from start to its last write, imports included, as the
    stage wrote it to ``<timings>/<stage>.json`` (``--timing``; dvc.yaml: logs/timings, git-ignored and
    not a stage output, so a stage restored from the cache or run on another machine has none here);
    DVC's own bookkeeping between stages is not in it.
    Detail: what the stage timed inside itself (training time, load + encode + readouts; its timing file,
    :func:`taskonomy.stage.note_timing`), or that an encoder was not trained (its metrics).
    """
    rows, total = [], 0.0
    for stage in stages:
        name, _, key = stage.partition("@")
        path = timings / f"{stage}.json" if timings is not None else None
        m = json.loads(path.read_text()) if path is not None and path.is_file() else {}
        seconds = float(m.get("seconds", float("nan")))
        if name == "train_task" and (models / key / "metrics.json").is_file():
            m.setdefault("trained", json.loads((models / key / "metrics.json").read_text()).get("trained"))
        if name == "train_task" and "train_seconds" in m:
            detail = f"training {m['train_seconds']:.1f} s"
        elif name == "train_task" and m.get("trained") is False:
            detail = "untrained encoder (nothing to train)"
        elif name == "transfer" and "train_seconds" in m:
            detail = (f"load {m['load_seconds']:.1f} s, encode {m['encode_seconds']:.1f} s, "
                      f"{m['targets']} readouts {m['train_seconds']:.1f} s")
        elif name in ("finetune", "multitask", "adapt") and "train_seconds" in m:
            detail = f"{m['trained']} runs trained ({m['train_seconds']:.1f} s), {m['reused']} reused"
        elif name == "report":
            detail = "this page (timed after it is written)"
        else:
            detail = ""
        if seconds != seconds and name != "report":
            detail = "; ".join(filter(None, (f"not timed here ({path} missing)" if path is not None else "not timed", detail)))
        if seconds == seconds:
            total += seconds
        rows.append((stage, seconds, detail))
    rows.append(("total (sum of the stages)", total, "plus DVC's bookkeeping between stages; stages run at once "
                                                     "(taskonomy repro --jobs N) overlap, so their sum exceeds the wall time"))
    return rows


def code_version(where: Path) -> str:
    """``git describe`` of the checkout at ``where``; the package version when there is no git."""
    describe = git_describe(where)
    if describe:
        return f"git {describe}"
    from taskonomy import __version__

    return f"taskonomy {__version__} (no git checkout)"


def machine() -> list[tuple]:
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no"
    return [("platform", platform.platform()), ("python", platform.python_version()),
            ("CPU count", str(os.cpu_count())), ("torch", torch.__version__), ("CUDA", cuda)]


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------

def build_sections(inputs: ReportInputs, params: Params, figures_dir: Path, *, top_k: int = 3,
                   root: Path = Path(".")) -> list[Section]:
    """Read every input (a missing one raises :class:`DataError`), draw the figures, build the sections."""
    task_list = _read_json(inputs.task_list, "task_list")
    tasks, targets = list(task_list["tasks"]), list(task_list["targets"])
    metrics = {t: _read_json(inputs.models / t / "metrics.json", f"train_task@{t}") for t in tasks}
    _need(inputs.bank_samples, "render")
    curves = {t: _read_csv(inputs.models / t / "curve.csv", f"train_task@{t}") for t in tasks}
    first_losses = read_first_order(inputs.first_order / "first_order_losses.csv")
    first_aff = read_first_order(inputs.first_order / "first_order_affinities.csv")
    first_png = _need(inputs.first_order / "first_order.png", "affinity_first")
    table = _read_csv(inputs.affinities, "affinity")
    grid = _read_csv(inputs.taxonomy / "grid.csv", "taxonomy")
    tree_png = _need(inputs.taxonomy / "tree" / "similarity_tree.png", "taxonomy")
    tp = params.taxonomy
    solutions = {(b, k): _read_json(inputs.taxonomy / "solutions" / f"{solution_name(b, k)}.json", "taxonomy")
                 for k in tp.max_orders for b in tp.budgets}
    novel = set(task_list.get("target_only", []))
    self_losses = {}
    for t in targets:
        if t not in novel:     # a novel task's own network is trained on the small data: no gold standard
            self_losses[t] = float(np.mean(load_npy(self_path(inputs.models, t), f"train_task@{t}")))

    # task networks
    nets = network_rows(metrics)
    losing = [r[0] for r in nets if r[5] == "no"]
    gold = gold_standard(first_losses, self_losses)
    not_gold = [r[0] for r in gold if r[4] == "no"]
    net_section = Section("task-networks", "Task networks", [
        Text(f"{sum(r[5] == 'yes' for r in nets)} of {sum(r[5] != 'untrained' for r in nets)} trained task networks "
             f"beat their trivial baseline on mean test loss (ratio = test / trivial < 1). "
             + (f"Not beating it: {', '.join(losing)}." if losing else "Every one beats it.")),
        Table(("task", "test loss", "trivial loss", "ratio", "items beating trivial", "beats trivial"),
              tuple(nets), status_column="beats trivial"),
        Image(figures.training_curves(curves, figures_dir / "training_curves.png"),
              "training curves: train and test loss per epoch"),
        Text(f"Gold standard: self (the fully supervised network) has a lower mean test loss than every first-order "
             f"transfer into its task for {len(gold) - len(not_gold)} of {len(gold)} targets"
             + (f"; not for {', '.join(not_gold)}." if not_gold else ".")),
        Table(("target", "self loss", "best transfer", "its loss", "self best"), tuple(gold), status_column="self best"),
    ])

    # affinities
    own = [f"{name} ({e.arch}, {e.path})" for name, e in params.encoders.items()]
    aff_section = Section("affinities", "First-order affinities", [
        *([Text("Your own encoders, read out as sources beside the task networks (params `encoders`): "
                + "; ".join(own) + ".")] if own else []),
        Text("Left: mean test loss of every first-order transfer (rows: sources, columns: targets; each column "
             "divided by its mean). Right: the same transfers after the AHP (win rates -> principal eigenvector; "
             "higher = better source), as the paper's Fig. 7."),
        Image(first_png, "first-order matrices: raw mean losses and AHP affinities"),
        Text(f"Top {top_k} sources per target (first-order affinity; a target is not its own source):"),
        Table(("target", *[f"#{i + 1}" for i in range(top_k)]), tuple(top_sources(first_aff, top_k))),
        Text(f"Best {top_k} transfers of any order per target in the full table (reports/affinities.csv), with 95% "
             f"intervals over {params.affinity.bootstrap} resamples of the {params.transfer.seeds} readout seeds and the "
             f"test images together; 'apart' says whether the best one's interval lies above the runner-up's (if "
             f"not, which of the two is best is within noise):"),
        Table(("target", *[f"#{i + 1}" for i in range(top_k)], "apart"), tuple(best_transfers(table, top_k)),
              status_column="apart"),
    ])

    # taxonomy
    kmax = max(tp.max_orders)
    kept = [sol for sol in solutions.values() if "stability" in sol]
    tax_blocks = [Text(f"One taxonomy per budget at max order {kmax} (the largest swept): red squares are "
                       "supervised; an edge runs from each source of a target's chosen transfer, coloured by order; "
                       "each transferred target shows its gain (win rate against pixels)."
                       + (f" Edge stability: the BIP re-solved on {tp.stability} resamples of the readout seeds and "
                          f"test images (the affinity stage's); each edge is drawn as opaque and wide as the share "
                          f"of resamples that choose it, and 'kept' labels that share for each transfer and each "
                          f"supervised task (reports/taxonomy/stability.csv). Near 1/2 means a coin flip between "
                          f"choices." if kept else ""))]
    for b in tp.budgets:
        tax_blocks.append(Image(figures.taxonomy_graph(solutions[(b, kmax)],
                                                       figures_dir / f"taxonomy_{solution_name(b, kmax)}.png"),
                                f"budget {b:g}, max order {kmax}"))
    def kept_mean(sol: dict, part: str) -> str:
        shares = list(sol.get("stability", {}).get(part, {}).values())
        return f"{np.mean(shares):.2f} (min {min(shares):.2f})" if shares else ""

    tax_rows = tuple((f"{b:g}", k, s["status"],
                      ", ".join(f"{t} ({s['stability']['supervised'][t]:.2f})" if "stability" in s else t
                                for t in s["supervised"]),
                      f"{s['objective']:.4g}", kept_mean(s, "edges"))
                     for (b, k), s in sorted(solutions.items()))
    tax_blocks += [Text("Supervised tasks per (budget, max order), each with the share of resamples that supervise it, "
                        "and the mean share keeping the chosen transfers:"),
                   Table(("budget", "max order", "status", "supervised", "objective", "transfers kept"), tax_rows)]

    # gain and quality
    gq = Section("gain-quality", "Gain and quality over budget and max order", [
        Text("Mean over the targets served by a transfer: gain = win rate against pixels (a network trained from "
             "scratch on the transfer data), quality = win rate against self (the fully supervised network)."),
        Image(figures.sweep(grid, figures_dir / "sweep.png"), "gain and quality over budget x max order"),
        Table(("max order", "budget", "gain", "quality", "supervised", "transferred"),
              tuple(grid[["max_order", "budget", "gain", "quality", "supervised", "transferred"]]
                    .itertuples(index=False, name=None))),
    ])

    # similarity tree
    tree_blocks = [Text("Agglomerative clustering of the first-order affinity columns (the paper's Fig. 14).")]
    tree_json = inputs.taxonomy / "tree" / "similarity_tree.json"
    if tree_json.is_file():
        tree_blocks.append(Text("Leaf order: " + ", ".join(json.loads(tree_json.read_text())["leaves"]) + "."))
    tree_blocks.append(Image(tree_png, "task similarity tree"))

    # known structure
    checks = _read_json(inputs.checks, "checks")
    known = Section("known-structure", "Known-structure checks", [
        Text(f"The generator of the synthetic bank ties some labels together, so these ranks are expected of a "
             f"correct pipeline (taskonomy/analysis/checks.py): {checks['passed']} of {len(checks['checks'])} pass. Taskonomy's own "
             f"published first-order affinities pass all of them (tests/test_report.py), so they are a bar set by "
             f"networks trained on 120k real images. A source ranks high when it is related to the target and "
             f"when its network learned much at all: in small runs the second weighs as much as the first."),
        Text(f"Result: on the affinities of the mean over {checks.get('seeds', 1)} readout seeds. Seeds passing: the "
             f"check on each seed's readouts alone (retraining the readouts; the task networks are one training "
             f"each here). Pass share: in how many of {checks['rounds']} resamples of each target's readout seeds "
             f"and test images together the check passes, i.e. how firm the result is against both."),
        Table(("check", "why", "expected", "found", "result", "seeds passing", "pass share"),
              tuple((c["name"], c["claim"], c["expected"], c["found"], c["status"],
                     "" if c.get("seed_passes") is None else f"{sum(c['seed_passes'])}/{len(c['seed_passes'])}",
                     "" if c["pass_share"] is None else f"{c['pass_share']:.2f}") for c in checks["checks"]),
              status_column="result"),
    ])

    novel_section = novel_tasks_section(inputs.taxonomy / "novel.csv", params)
    finetune = finetune_section(inputs.finetune, params)
    multitask = multitask_section(inputs.multitask, params)
    adapt = adapt_section(inputs.adapt, params)

    # provenance
    stages = list(yaml.safe_load(inputs.lock.read_text()).get("stages", {})) \
        if inputs.lock is not None and inputs.lock.is_file() else []
    stages = [s for s in stages if s != "check_params" and defined(s, params)]  # the params check: nothing to time
    prov_blocks = [Text(f"Code version: {code_version(root)}."), Text("Parameters:"),
                   Pre(yaml.safe_dump(as_dict(params), sort_keys=False)), Text("Machine:"),
                   Table(("", "value"), tuple(machine())), Text("Per-stage wall-clock seconds, as each stage recorded them on the machine that ran it "
                                                     "(process start to its last write, imports included):")]
    if stages:
        prov_blocks.append(Table(("stage", "seconds", "what"), tuple(stage_timings(stages, inputs.timings, inputs.models))))
    else:
        prov_blocks.append(Text(f"{inputs.lock}: not found, so no stage list; the stages run so far recorded "
                                "their times in logs/timings/<stage>.json."))

    return [
        Section("task-bank", "Task bank", [Text(f"A sample of every task's label ({len(tasks)} tasks, "
                                                 f"{len(targets)} targets)."),
                                            Image(inputs.bank_samples, "the bank's sample sheet")]),
        net_section, aff_section, Section("taxonomy", "Taxonomy", tax_blocks), gq,
        Section("similarity-tree", "Task similarity tree", tree_blocks), known, novel_section, finetune, multitask, adapt,
        Section("provenance", "Provenance", prov_blocks),
    ]


def _fmt_diff(row: pd.Series, ref: str) -> str:
    if pd.isna(row.get(f"diff_vs_{ref}")):
        return ""
    return f"{row[f'diff_vs_{ref}']:+.3f} [{row[f'diff_vs_{ref}_lo']:+.3f}, {row[f'diff_vs_{ref}_hi']:+.3f}]"


def novel_tasks_section(table: Path, params: Params) -> Section:
    """Stage taxonomy's novel (target-only) tasks: the transfer the taxonomy chose for each, against the best
    single source and the network trained from scratch on the same small data (reports/taxonomy/novel.csv)."""
    title = "Novel tasks (target-only)"
    df = _read_csv(table, "taxonomy", dtype={"chosen": str, "best_single": str}, keep_default_na=False)
    if df.empty:
        return Section("novel-tasks", title, [Text(
            "No task of this run is target_only. A target_only task has no network trained on the train split and is "
            "never a source; the taxonomy serves it from the others with the small transfer split only, and this "
            "section compares that with the best single source and with a network trained from scratch on the same "
            "data (`dvc exp run -S tasks.<task>.target_only=true`).")])
    kmax = max(params.taxonomy.max_orders)
    shown = df[df.max_order == kmax]

    def diff(row, name: str) -> str:
        if row[name] == "" or pd.isna(row[name]):
            return "not served"
        return f"{float(row[name]):+.4f} [{float(row[name + '_lo']):+.4f}, {float(row[name + '_hi']):+.4f}]"

    def verdict(row) -> str:
        if row["vs_scratch"] == "" or pd.isna(row["vs_scratch"]):
            return ""
        hi_s, lo_s = float(row["vs_scratch_hi"]), float(row["vs_scratch_lo"])
        return "beats scratch" if hi_s < 0 else ("loses to scratch" if lo_s > 0 else "within noise of scratch")

    rows = tuple((r["task"], f"{float(r['budget']):g}", r["chosen"] or "-", r["best_single"],
                  f"{float(r['scratch_loss']):.4f}", diff(r, "vs_scratch"), diff(r, "vs_best_single"), verdict(r))
                 for _, r in shown.iterrows())
    return Section("novel-tasks", title, [
        Text(f"Each novel task at every budget, max order {kmax}: the taxonomy's chosen transfer (trained on the transfer "
             f"split only) minus the network trained from scratch on that split, and minus the best single first-order "
             f"source, as differences of mean test loss (negative: the taxonomy's transfer is better) with 95% bootstrap "
             f"intervals over the test images ({params.taxonomy.bootstrap} resamples). Every (budget, max order): "
             f"reports/taxonomy/novel.csv."),
        Table(("task", "budget", "chosen transfer", "best single source", "scratch loss", "chosen - scratch",
               "chosen - best single", "finding"), rows),
    ])


def finetune_section(table: Path | None, params: Params) -> Section:
    """Stage finetune_summary's table, findings and figure (``table`` = reports/finetune.csv)."""
    title = "Fine-tuning baselines"
    if table is None:
        return Section("finetune", title, [Text("Not part of this run (stage finetune_summary).")])
    folder = table.with_suffix("")
    df = _read_csv(table, "finetune_summary", dtype={"sources": str, "note": str}, keep_default_na=False,
                   na_values=[""])
    findings = _read_json(folder / "findings.json", "finetune_summary")
    f = params.finetune
    blocks = [
        Text(f"Per target: networks started from the taxonomy's source set (budget {f.budget}, max order "
             f"{f.max_order}), the best and the worst first-order source by affinity and random, each with the "
             f"encoder frozen (Taskonomy's readout), its last {f.partial_blocks} block(s) trained (partial) or all of "
             f"it trained at {f.backbone_lr_scale:g}x the new layers' rate (full); and the same network from scratch "
             f"at {', '.join(f'{x:g}x' for x in f.scratch_schedules)} the schedule ({f.train_items} items seen at 1x). "
             f"Sizes: {', '.join(map(str, f.sizes))} items of the {f.split} split; seeds {', '.join(map(str, f.seeds))}. "
             f"Differences are mean test loss minus the reference's (negative = better), with 95% intervals from "
             f"{f.bootstrap} bootstrap resamples of the test images: they show what is within noise of the test "
             f"set, not of retraining."),
        *[Text(findings["findings"][t]) for t in f.targets if t in findings["findings"]],
        Image(_need(folder / "finetune.png", "finetune_summary"), "mean test loss against training items"),
    ]
    rows = []
    for _, r in df.iterrows():
        if pd.isna(r["mode"]):
            rows.append((r["target"], r["role"], r["note"], "", "", "", "", "", ""))
            continue
        rows.append((r["target"], r["role"], r["sources"] if not pd.isna(r["sources"]) else "", r["mode"],
                     int(r["items"]), f"{r['schedule']:g}x", f"{r['mean_loss']:.4f}", _fmt_diff(r, "scratch"),
                     _fmt_diff(r, "frozen")))
    blocks.append(Table(("target", "role", "sources", "mode", "items", "schedule", "test loss",
                         "vs scratch 1x", "vs frozen"), tuple(rows)))
    return Section("finetune", title, blocks)


def multitask_section(table: Path | None, params: Params) -> Section:
    """Stage multitask_summary's Delta_p table, findings and figure (``table`` = reports/multitask.csv)."""
    title = "Multi-task baselines"
    if table is None:
        return Section("multitask", title, [Text("Not part of this run (stage multitask_summary).")])
    folder = table.with_suffix("")
    deltas = _read_csv(folder / "delta.csv", "multitask_summary", dtype={"per_seed": str})
    findings = _read_json(folder / "findings.json", "multitask_summary")
    m = params.multitask
    left_out = findings.get("left_out", {})
    blocks = [
        Text(f"One shared encoder with a head per task, trained on L = sum_i w_i L_i (sum w_i = 1) with the task "
             f"networks' architecture and schedule, each task seeing as many labelled items as its task network "
             f"({'one image pass feeds every head' if m.compute == 'labels' else 'and as many encoder passes'}); "
             f"each run's epoch chosen on {m.validation_items} items of the transfer split, never the test split. "
             f"Groupings: the taxonomy's (budget {m.budget}, max order {m.max_order}: each supervised task with the "
             f"targets it serves), all tasks in one network, random groups of the taxonomy's sizes (drawn per seed, "
             f"never the taxonomy's own), "
             f"and the task networks themselves (single). Seeds {', '.join(map(str, m.seeds))}. Delta_p: the mean "
             f"over tasks of the relative test-loss improvement over the task network, in % (+ = better); its "
             f"interval: 95% over {m.bootstrap} bootstrap resamples of the test images of the seed-averaged losses, "
             f"so it shows the test set's noise; the seeds show retraining's (the task networks are one seed)."),
        *[Text(line) for line in findings["findings"]],
    ]
    if left_out:
        blocks.append(Text("Left out: " + "; ".join(f"{t}: {why}" for t, why in left_out.items()) + "."))
    blocks.append(Image(_need(folder / "multitask.png", "multitask_summary"),
                        "Delta_p per grouping and weighting; TAG against transfer affinity"))
    rows = tuple((r["grouping"], r["weighting"], int(r["seeds"]), f"{r['delta_p']:+.2f}",
                  f"[{r['delta_p_lo']:+.2f}, {r['delta_p_hi']:+.2f}]", f"{r['delta_p_std']:.2f}", r["per_seed"])
                 for _, r in deltas.iterrows())
    blocks.append(Table(("grouping", "weighting", "seeds", "Delta_p %", "95% interval (images)", "seed std",
                         "per seed"), rows))
    df = _read_csv(table, "multitask_summary", dtype={"group": str, "note": str}, keep_default_na=False, na_values=[""])
    tasks = list(dict.fromkeys(df["task"]))
    per_task = df.groupby(["grouping", "weighting", "task"], sort=False)["rel_improvement"].mean()
    settings = list(dict.fromkeys(zip(df["grouping"], df["weighting"])))
    blocks.append(Text("Per task: relative improvement over the task network, (B - N) / B in %, mean over seeds:"))
    blocks.append(Table(("grouping", "weighting", *tasks),
                        tuple((g, w, *(f"{100 * per_task[(g, w, t)]:+.1f}" for t in tasks)) for g, w in settings)))
    groups = df[df["grouping"] != "single"].drop_duplicates(["grouping", "seed", "group"])
    listed = tuple((g, int(s), ", ".join(x["group"].str.replace("+", " + ", regex=False)))
                   for (g, s), x in groups.groupby(["grouping", "seed"], sort=False))
    blocks.append(Table(("grouping", "seed", "groups"), listed))
    return Section("multitask", title, blocks)


def adapt_section(table: Path | None, params: Params) -> Section:
    """Stages adapt_summary and adapt_taxonomy: both domains' samples, gap closed per task and method,
    the taxonomy under the shift (``table`` = reports/adapt.csv)."""
    title = "Domain adaptation baselines"
    if table is None:
        return Section("adapt", title, [Text("Not part of this run (stage adapt_summary).")])
    folder = table.with_suffix("")
    a = params.adapt
    findings = _read_json(folder / "findings.json", "adapt_summary")
    domain = findings.get("domain", {})
    blocks = [
        Text(f"A target domain rendered from the same kind of rooms with other appearance: "
             f"{', '.join(domain.get('shift', a.shift)) or 'no change'} at severity {domain.get('severity', a.severity)}; "
             f"geometry, and every geometric and semantic label, as in the source domain. target_train holds "
             f"{a.scenes.target_train} new scenes whose labels only the oracle reads; target_test re-renders the test "
             f"split's scenes, so every comparison between domains is on the same scenes."),
        Image(_need(folder / "domains.png", "render_target"), "the same test scenes in the source and the target domain"),
        Text(f"Per task: source-only (its task network; other seeds retrained with the same recipe), "
             f"{', '.join(a.methods) or 'no method'} (DANN: a domain classifier behind gradient reversal, "
             f"lambda_p = 2 / (1 + exp(-{a.gamma:g} p)) - 1; entropy: ADVENT's direct entropy loss, weight "
             f"{a.entropy_weight:g}), and the oracle (the same recipe on labelled target_train), seeds "
             f"{', '.join(map(str, a.seeds))}. Every run uses the task networks' recipe; its epoch is chosen on "
             f"{a.validation_items} items of the SOURCE transfer split (the oracle: its last epoch), never on target "
             f"labels. Gap closed = (source-only - adapted) / (source-only - oracle) of the target test loss; its "
             f"interval: 95% over {a.bootstrap} bootstrap resamples of the target test images of the seed-averaged "
             f"losses; the seed range beside it shows retraining's noise."),
        *[Text(line) for line in findings["findings"]],
        Image(_need(folder / "adapt.png", "adapt_summary"), "target and source test loss per task and method"),
    ]
    df = _read_csv(table, "adapt_summary", dtype={"seed": str, "note": str}, keep_default_na=False, na_values=[""])

    def pct(x) -> str:
        return "" if pd.isna(x) else f"{100 * x:+.0f}%"

    means = df[df["seed"] == "mean"]
    blocks.append(Table(("task", "method", "source loss", "target loss", "gap closed", "95% interval (images)",
                         "seed range"),
                        tuple((r["task"], r["method"], f"{r['source_loss']:.4f}", f"{r['target_loss']:.4f}",
                               pct(r["gap_closed"]),
                               "" if pd.isna(r["gap_lo"]) or r["method"] in ("source_only", "oracle")
                               else f"[{pct(r['gap_lo'])}, {pct(r['gap_hi'])}]",
                               "" if pd.isna(r["gap_min"]) or r["method"] in ("source_only", "oracle")
                               else f"{pct(r['gap_min'])} .. {pct(r['gap_max'])}")
                              for _, r in means.iterrows())))
    selected = _read_csv(folder / "target_selected.csv", "adapt_summary")
    if len(selected):
        worst = selected.loc[selected["optimism"].idxmax()]
        blocks.append(Text(
            f"Selected on target labels (NOT valid results, shown apart to size the optimism the anchor's users "
            f"report): had each run's epoch been chosen on the target test loss, the reported target losses would "
            f"be lower by {selected['optimism'].mean():.4f} on average (at most {worst['optimism']:.4f}: "
            f"{worst['task']} {worst['method']} seed {worst['seed']}); reports/adapt/target_selected.csv lists them."))
    shift = folder / "taxonomy"
    if (shift / "findings.json").is_file():
        record = _read_json(shift / "findings.json", "adapt_taxonomy")
        lines = record.get("findings", [])
        lines = list(lines.values()) if isinstance(lines, dict) else lines
        blocks.append(Text("The taxonomy under the shift: every first-order readout as trained on the source domain "
                           "(frozen encoders, no retraining) scored on target_test, the AHP affinities and the "
                           "first-order taxonomy recomputed."))
        blocks.extend(Text(line) for line in (lines if isinstance(lines, list) else [lines]))
        if (shift / "shift.png").is_file():
            blocks.append(Image(shift / "shift.png", "first-order affinities in the source and the target domain"))
        best = _read_csv(shift / "best_sources.csv", "adapt_taxonomy")
        blocks.append(Table(tuple(best.columns), tuple(tuple(_cell(v) for v in row) for row in best.itertuples(index=False))))
    return Section("adapt", title, blocks)


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if pd.isna(v) else f"{v:.3g}"
    return str(v)


def write_report(inputs: ReportInputs, params: Params, *, html: Path, markdown: Path, figures_dir: Path,
                 top_k: int = 3, root: Path = Path(".")) -> list[Section]:
    """Build the sections and write the HTML page and the Markdown, each atomically."""
    sections = build_sections(inputs, params, figures_dir, top_k=top_k, root=root)
    title = "Taskonomy on the synthetic task bank"
    subtitle = "Generated by stage report (dvc repro report) from the outputs of every earlier stage."
    atomic_write_text(html, render_html(title, subtitle, sections))
    atomic_write_text(markdown, render_markdown(title, subtitle, sections, markdown.parent))
    return sections
