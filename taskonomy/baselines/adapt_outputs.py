"""What stage ``adapt@<task>`` makes (:func:`adapt_task`), in ``outputs/adapt/<task>/``: ``runs.csv`` (one
row per method and seed: mean loss on the source and the target test split, selected epoch, the
target-test loss of the epoch target labels would have picked, marked as such), ``losses.npz``
(per-item losses keyed ``<label>|source`` and ``<label>|target``), ``metrics.json``; ``runs/`` keeps
every finished run (taskonomy.baselines.runs). ``adapt_summary`` reads every task's
(taskonomy.baselines.adapt_summary).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from taskonomy.bank import check_same_bank, load_split, read_manifest
from taskonomy.baselines.adapt import Context, load_run, plan, reused, run_stamps, serves, train_run
from taskonomy.baselines.runs import RUNS_FILE, train_missing
from taskonomy.config import Params
from taskonomy.errors import DataError, ParamsError
from taskonomy.losses import LOSS_FILE, load_npy, self_path, write_keyed
from taskonomy.nets.data import fit_stats, hash_tensors, input_views, load_task_data
from taskonomy.nets.train import resolve_device
from taskonomy.stage import note_timing
from taskonomy.storage import atomic_write_csv, atomic_write_json, ensure_writable
from taskonomy.tasks import get_task
from taskonomy.transfer.engine import executor_spec
from taskonomy.transfer.rescore import score_self

RUN_FIELDS = ["task", "method", "seed", "source_loss", "target_loss", "selected_epoch", "epochs",
              "target_selected_loss", "key", "note"]
REUSED_NOTE = "the task network (models/<task>), reused"
TARGET_SPLITS = ("target_train", "target_test")


def _digest(views) -> str:
    h = hashlib.sha256()
    hash_tensors(h, views)
    return h.hexdigest()


def check_target_bank(bank: Path, target: Path) -> dict:
    """The target bank's domain, after checking it was rendered from the source bank's render params
    (one line naming both otherwise)."""
    source, shifted = read_manifest(bank), read_manifest(target)
    ours = {k: v for k, v in shifted.get("params", {}).items() if k != "domain"}
    if ours != source.get("params") or "domain" not in shifted.get("params", {}):
        raise DataError(f"{target}: rendered with other render params than {bank} (rerun `dvc repro render_target`)")
    return shifted["params"]["domain"]


def adapt_task(name: str, params: Params, bank: Path, target: Path, models: Path, out: Path) -> None:
    """Every run of ``name`` (reusing finished ones), then its ``runs.csv``, ``losses.npz``, ``metrics.json``."""
    a = params.adapt
    if name not in a.tasks:
        raise ParamsError(f"adapt.tasks: '{name}' is not listed (listed: {', '.join(a.tasks)})")
    task = get_task(name)
    for method, tasks in a.methods.items():
        if name in tasks and not serves(method, task):
            raise ParamsError(f"adapt.methods.{method}: cannot adapt '{name}' ({task.kind.value})")
    ensure_writable(out)
    runs = plan(name, params)
    trained = [r for r in runs if not reused(r, params)]
    network_path = Path(models) / name / "model.pt"
    self_losses = load_npy(self_path(models, name), f"train_task@{name}")          # before the banks
    if not network_path.exists():
        raise DataError(f"{network_path}: missing; it is written by stage train_task@{name}")
    domain = check_target_bank(bank, target)

    t0 = time.perf_counter()
    source = {s: load_split(bank, s) for s in ("train", "transfer", "test")}
    shifted = {s: load_split(target, s) for s in TARGET_SPLITS}
    check_same_bank({**source, **shifted})
    stats = fit_stats(task, source["train"])
    train = load_task_data(source["train"], task, stats)
    validation = load_task_data(source["transfer"], task, stats)
    if a.validation_items > len(validation):
        raise ParamsError(f"adapt.validation_items: {a.validation_items}, but the transfer split has {len(validation)} items")
    validation = validation.subset(np.arange(a.validation_items))
    source_test = load_task_data(source["test"], task, stats)
    target_test = load_task_data(shifted["target_test"], task, stats)
    if len(target_test) != len(source_test):
        raise DataError(f"{target}/target_test: {len(target_test)} items of {name}, the source test split has "
                        f"{len(source_test)}: not the test split's scenes (rerun `dvc repro render_target`)")
    oracle = load_task_data(shifted["target_train"], task, stats)
    target_views = input_views(task, shifted["target_train"])            # the images alone, for the methods
    device = str(resolve_device(a.device, "adapt.device"))
    data = {"source": "/".join(d.digest() for d in (train, validation, source_test)),
            "target_test": target_test.digest(), "oracle": oracle.digest(),
            "target_views": _digest(target_views)}
    stamps = run_stamps(trained, params, data)
    cache = Path(out) / "runs"
    context = Context(train, validation, source_test, target_test, target_views, oracle, params, device, cache, stamps)
    done, todo = train_missing(f"adapt {name}", trained, stamps, cache, load_run, train_run, context,
                               executor_spec(a, device))

    rows, losses = [], {}
    for run in runs:
        key = run.label
        if reused(run, params):
            # scored as train_task and adapt_taxonomy score it (its threads, its memory format)
            on_target = score_self(models, {name: target_test}, resolve_device(device), params.train_task.threads)[name]
            losses[f"{key}|source"], losses[f"{key}|target"] = self_losses, on_target
            rows.append({"task": name, "method": run.method, "seed": run.seed, "source_loss": float(self_losses.mean()),
                         "target_loss": float(on_target.mean()), "selected_epoch": "", "epochs": "",
                         "target_selected_loss": "", "key": key, "note": REUSED_NOTE})
            continue
        stored = done[key]
        record = stored["record"]
        losses[f"{key}|source"], losses[f"{key}|target"] = stored["source"], stored["target"]
        picked = min(record["history"], key=lambda e: e["target_test"])    # what target labels would pick
        rows.append({"task": name, "method": run.method, "seed": run.seed,
                     "source_loss": float(stored["source"].mean()), "target_loss": float(stored["target"].mean()),
                     "selected_epoch": record["selected_epoch"], "epochs": record["epochs"],
                     "target_selected_loss": picked["target_test"], "key": key,
                     "note": f"epoch: {record['selected_on']}"})
    atomic_write_csv(Path(out) / RUNS_FILE, RUN_FIELDS, rows)
    write_keyed(Path(out) / LOSS_FILE, losses)
    atomic_write_json(Path(out) / "metrics.json", {
        "task": name, "domain": domain, "runs": len(runs), "device": device})
    note_timing(trained=len(todo), reused=len(runs) - len(todo), train_seconds=round(time.perf_counter() - t0, 3))
