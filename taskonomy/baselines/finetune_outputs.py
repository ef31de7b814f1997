"""What the fine-tuning stages make.

``finetune@<target>`` (:func:`finetune_target`) writes into ``outputs/finetune/<target>/``:
``runs.csv`` (one row per role and run: role, sources, mode, items, schedule, seed, mean test loss,
or the note of a role without a source), ``losses.npz`` (each run's per-item test losses, keyed by
its label) and ``metrics.json``; ``runs/`` keeps every finished run (see taskonomy.baselines.finetune).

``finetune_summary`` reads every target's (taskonomy.baselines.finetune_summary).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from taskonomy.analysis.tables import read_first_order
from taskonomy.analysis.taxonomy import read_solution, solution_name
from taskonomy.bank import check_same_bank, load_split
from taskonomy.baselines.finetune import (SCRATCH, Context, Run, choose_sources, load_run, plan_runs, run_stamps,
                                          train_run)
from taskonomy.baselines.runs import RUNS_FILE, train_missing
from taskonomy.config import Params
from taskonomy.errors import ParamsError
from taskonomy.losses import LOSS_FILE, write_keyed
from taskonomy.nets.data import fit_stats, load_task_data
from taskonomy.nets.train import resolve_device
from taskonomy.sources import set_key
from taskonomy.stage import note_timing
from taskonomy.storage import atomic_write_csv, atomic_write_json, ensure_writable
from taskonomy.tasks import get_task
from taskonomy.transfer.engine import executor_spec, source_encoder, source_file

log = logging.getLogger("taskonomy.finetune")

RUN_FIELDS = ["target", "role", "sources", "mode", "items", "schedule", "seed", "mean_loss", "label", "note"]


def finetune_target(target: str, params: Params, bank: Path, models: Path, taxonomy: Path,
                    first_order: Path, out: Path) -> None:
    """Every run of ``target`` (reusing finished ones), then its ``runs.csv`` and ``losses.npz``."""
    f = params.finetune
    if target not in f.targets:
        raise ParamsError(f"finetune.targets: '{target}' is not listed (listed: {', '.join(f.targets)})")
    ensure_writable(out)
    solution = (read_solution(Path(taxonomy) / f"{solution_name(f.budget, f.max_order)}.json", "finetune")
                if "taxonomy" in f.roles else None)
    chosen = choose_sources(target, f.roles, solution, read_first_order(first_order))
    runs = plan_runs(chosen, f)
    sources = sorted({s for run in runs for s in run.sources})
    model_paths = {s: source_file(s, params, models) for s in sources}
    encoders = {s: source_encoder(s, params, models) for s in sources}  # before the bank: fails fast

    task = get_task(target)
    train_split, test_split = load_split(bank, f.split), load_split(bank, "test")
    check_same_bank({f.split: train_split, "test": test_split})
    stats = fit_stats(task, load_split(bank, "train") if f.split != "train" else train_split)
    train, test = load_task_data(train_split, task, stats), load_task_data(test_split, task, stats)
    too_many = [n for n in f.sizes if n > len(train)]
    if too_many:
        raise ParamsError(f"finetune.sizes: {too_many[0]} items, but {target}'s {f.split} split has {len(train)}")

    device = str(resolve_device(f.device, "finetune.device"))
    stamps = run_stamps(runs, target, params, model_paths, f"{train.digest()}:{test.digest()}")
    cache = Path(out) / "runs"
    log.info("finetune %s: sources %s", target, ", ".join(sources) or "none")
    t0 = time.perf_counter()
    context = Context(target, train.task, train, test, encoders, params, device, cache, stamps)
    done, todo = train_missing(f"finetune {target}", runs, stamps, cache, load_run, train_run, context, executor_spec(f, device))

    rows = []
    for role, (group, note) in chosen.items():
        if group is None:
            rows.append({"target": target, "role": role, "sources": "", "mode": "", "items": "", "schedule": "",
                         "seed": "", "mean_loss": "", "label": "", "note": note})
            continue
        rows += [_row(target, role, run, done[run.label][1]) for run in runs if run.sources == group]
    rows += [_row(target, SCRATCH, run, done[run.label][1]) for run in runs if run.mode == SCRATCH]
    atomic_write_csv(Path(out) / RUNS_FILE, RUN_FIELDS, rows)
    write_keyed(Path(out) / LOSS_FILE, {label: v[0] for label, v in done.items()})
    atomic_write_json(Path(out) / "metrics.json", {
        "target": target, "runs": len(runs), "device": device})
    note_timing(trained=len(todo), reused=len(runs) - len(todo), train_seconds=round(time.perf_counter() - t0, 3))


def _row(target: str, role: str, run: Run, record: dict[str, Any]) -> dict[str, Any]:
    return {"target": target, "role": role, "sources": set_key(run.sources) if run.sources else "",
            "mode": run.mode, "items": run.items, "schedule": run.schedule, "seed": run.seed,
            "mean_loss": record["mean_loss"], "label": run.label, "note": ""}
