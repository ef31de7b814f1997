"""What the multi-task stages make.

``multitask@<grouping>`` (:func:`multitask_grouping`) writes into ``outputs/multitask/<grouping>/``:
``runs.csv`` (one row per seed, group, weighting and task: its mean test loss, the run's label and
selected epoch; a group of one task is its task network, reused), ``losses.npz`` (per-item test
losses keyed ``<label>|<task>``), ``tag.json`` (TAG's affinities per seed, measured in the all-in-one
grouping; empty in the others) and ``metrics.json``; ``runs/`` keeps every finished run (see taskonomy.baselines.multitask).

``multitask_summary`` reads every grouping's (taskonomy.baselines.multitask_summary).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from taskonomy.analysis.taxonomy import read_solution, solution_name
from taskonomy.bank import check_same_bank, load_split
from taskonomy.baselines.multitask import (Context, MultiTaskData, Run, exclusion, group_name, load_run, make_groups,
                                           make_weighting, run_stamps, train_run)
from taskonomy.baselines.runs import RUNS_FILE, train_missing
from taskonomy.config import Params
from taskonomy.errors import DataError, ParamsError
from taskonomy.losses import LOSS_FILE, load_npy, self_path, write_keyed
from taskonomy.nets.data import fit_stats, load_task_data
from taskonomy.nets.train import resolve_device
from taskonomy.stage import note_timing
from taskonomy.storage import atomic_write_csv, atomic_write_json, ensure_writable
from taskonomy.tasks import get_task, trivial_losses
from taskonomy.transfer.engine import executor_spec

RUN_FIELDS = ["grouping", "group", "weighting", "seed", "task", "test_loss", "selected_epoch", "epochs", "key", "note"]
SINGLE_NOTE = "a group of one: its task network, reused"


def studied_tasks(params: Params) -> tuple[list[str], dict[str, str]]:
    """``multitask.tasks`` that can share an encoder, and those left out with the reason."""
    left_out = {t: exclusion(get_task(t)) for t in params.multitask.tasks}
    return [t for t, why in left_out.items() if not why], {t: why for t, why in left_out.items() if why}


def plan(grouping: str, params: Params, taxonomy: Path) -> tuple[dict[int, list[tuple[str, ...]]], list[Run]]:
    """The grouping's groups per seed and the runs to train (groups of two tasks or more), after
    checking every weighting can be built (an unknown name, a missing library, weights summing to 0)."""
    m = params.multitask
    if grouping not in m.groupings:
        raise ParamsError(f"multitask.groupings: '{grouping}' is not listed (listed: {', '.join(m.groupings)})")
    tasks, _ = studied_tasks(params)
    if len(tasks) < 2:
        raise ParamsError(f"multitask.tasks: {len(tasks)} task(s) can share an encoder; at least 2 are needed")
    solution = (read_solution(Path(taxonomy) / f"{solution_name(m.budget, m.max_order)}.json", "multitask")
                if grouping in ("taxonomy", "random") else None)
    m_studied = _with_tasks(m, tasks)
    groups = {seed: make_groups(grouping, m_studied, solution, seed) for seed in m.seeds}
    runs = [Run(grouping, g, w, seed) for seed in m.seeds for g in groups[seed] if len(g) > 1 for w in m.weightings]
    for g in {r.group for r in runs}:
        for w in m.weightings:
            make_weighting(w, g, m)
    return groups, runs


def _with_tasks(m: Any, tasks: list[str]) -> Any:
    """``m`` restricted to ``tasks`` (the studied ones), its custom groups too."""
    custom = {k: [[t for t in g if t in tasks] for g in v] for k, v in m.custom.items()}
    return replace(m, tasks=tasks, custom={k: [g for g in v if g] for k, v in custom.items()})


def multitask_grouping(grouping: str, params: Params, bank: Path, models: Path, taxonomy: Path, out: Path) -> None:
    """Every run of ``grouping`` (reusing finished ones), then its ``runs.csv``, ``losses.npz`` and,
    for ``all``, ``tag.json``."""
    m = params.multitask
    groups, runs = plan(grouping, params, taxonomy)
    ensure_writable(out)
    singles = sorted({g[0] for gs in groups.values() for g in gs if len(g) == 1})
    single_losses = {t: load_npy(self_path(models, t), f"train_task@{t}") for t in singles}   # before the bank

    studied = sorted({t for r in runs for t in r.group})
    t0 = time.perf_counter()
    if runs:
        train_split, val_split, test_split = (load_split(bank, s) for s in ("train", "transfer", "test"))
        check_same_bank({"train": train_split, "transfer": val_split, "test": test_split})
        shared: dict[str, dict] = {"train": {}, "transfer": {}, "test": {}}
        train, validation, test, trivial = {}, {}, {}, {}
        for name in studied:
            task = get_task(name)
            stats = fit_stats(task, train_split)
            train[name] = load_task_data(train_split, task, stats, shared["train"])
            val = load_task_data(val_split, task, stats, shared["transfer"])
            if m.validation_items > len(val):
                raise ParamsError(f"multitask.validation_items: {m.validation_items}, but the transfer split has "
                                  f"{len(val)} items")
            validation[name] = val.subset(np.arange(m.validation_items))
            test[name] = load_task_data(test_split, task, stats, shared["test"])
            v = validation[name]
            trivial[name] = float(trivial_losses(v.task, train[name].target, v.target, v.mask).mean())
        for name in studied:
            if len(test[name]) != len(test[studied[0]]):
                raise DataError(f"{bank}/test: {name} has {len(test[name])} items, {studied[0]} {len(test[studied[0]])}")
        device = str(resolve_device(m.device, "multitask.device"))
        data = "/".join(MultiTaskData(tuple(split[t] for t in studied)).digest() for split in (train, validation, test))
        stamps = run_stamps(runs, params, data)
        cache = Path(out) / "runs"
        context = Context(train, validation, test, trivial, params, device, cache, stamps)
        done, todo = train_missing(f"multitask {grouping}", runs, stamps, cache, load_run, train_run, context, executor_spec(m, device))
    else:
        device, done, todo = str(resolve_device(m.device, "multitask.device")), {}, []

    rows, losses, tag = [], {}, {}
    for seed in m.seeds:
        for group in groups[seed]:
            if len(group) == 1:
                t = group[0]
                for w in (m.weightings if grouping != "single" else ["none"]):
                    rows.append({"grouping": grouping, "group": t, "weighting": w, "seed": seed, "task": t,
                                 "test_loss": float(single_losses[t].mean()), "selected_epoch": "", "epochs": "",
                                 "key": f"single|{t}", "note": SINGLE_NOTE})
                losses[f"single|{t}"] = single_losses[t]
                continue
            for w in m.weightings:
                run = Run(grouping, group, w, seed)
                stored = done[run.label]
                record = stored["record"]
                for i, t in enumerate(group):
                    key = f"{run.label}|{t}"
                    losses[key] = stored["losses"][:, i]
                    rows.append({"grouping": grouping, "group": group_name(group), "weighting": w, "seed": seed,
                                 "task": t, "test_loss": record["mean_loss"][t],
                                 "selected_epoch": record["selected_epoch"], "epochs": record["epochs"],
                                 "key": key, "note": ""})
                if "tag" in stored:
                    tag[str(seed)] = {"tasks": list(group), "weighting": w, "affinity": stored["tag"].tolist()}
    atomic_write_csv(Path(out) / RUNS_FILE, RUN_FIELDS, rows)
    write_keyed(Path(out) / LOSS_FILE, losses)
    atomic_write_json(Path(out) / "tag.json", {"every": m.tag_every, "seeds": tag})   # measured in `all` only
    atomic_write_json(Path(out) / "metrics.json", {
        "grouping": grouping, "runs": len(runs), "device": device})
    note_timing(trained=len(todo), reused=len(runs) - len(todo), train_seconds=round(time.perf_counter() - t0, 3))

