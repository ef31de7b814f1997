"""What every baseline stage does with its runs: train the ones not stored yet, and read a stage's table back.

A baseline stage plans its runs, names each by the sha256 of what makes it (its ``stamps``), and keeps
each finished run as ``<cache>/<stamp>.npz`` (written by the run itself, atomically): an interrupted
stage resumes at the run, and a rerun after a params edit trains only the runs the edit changed.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from taskonomy.errors import DataError
from taskonomy.losses import LOSS_FILE, load_npz
from taskonomy.nets.train import set_threads
from taskonomy.transfer.executors import ExecutorSpec, map_jobs

RUNS_FILE = "runs.csv"

log = logging.getLogger(__name__)


def train_missing(name: str, runs: Sequence[Any], stamps: dict[str, str], cache: Path, load: Callable[[Path], Any],
                  train: Callable[[Any, Any], Any], context: Any, spec: ExecutorSpec) -> tuple[dict[str, Any], list[Any]]:
    """Every run's stored result (``load(<cache>/<stamp>.npz)``, None when absent), after training
    those without one with ``train(context, run)`` as ``spec`` says. Returns ``label -> result`` and
    the runs trained; a run that finished but cannot be read back is one line naming it. ``name``
    labels the log line (e.g. ``finetune rgb2depth``)."""
    def stored() -> dict[str, Any]:
        return {run.label: load(Path(cache) / f"{stamps[run.label]}.npz") for run in runs}

    done = stored()
    todo = [run for run in runs if done[run.label] is None]
    log.info("%s: %d runs (%d stored)", name, len(runs), len(runs) - len(todo))
    if todo:
        set_threads(spec.threads)
        map_jobs(train, context, todo, spec)
        done = stored()
        lost = [label for label, v in done.items() if v is None]
        if lost:
            raise DataError(f"{cache}: run {lost[0]} finished but its result cannot be read back")
    return done, todo


def read_table(folder: Path, stage: str, key: str, suffixes: Sequence[str] = ("",)
               ) -> tuple[list[dict[str, str]], dict[str, np.ndarray]]:
    """A baseline stage's ``runs.csv`` in ``folder`` and the per-item losses its ``key`` column names
    in ``losses.npz`` beside it, each key followed by every one of ``suffixes`` (adapt@: ``|source``,
    ``|target``; rows with an empty key have none); missing files name ``stage``."""
    path = Path(folder) / RUNS_FILE
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise DataError(f"{path}: missing; it is written by stage {stage}") from None
    keys = sorted({r[key] + suffix for r in rows if r[key] for suffix in suffixes})
    return rows, load_npz(Path(folder) / LOSS_FILE, stage, keys)


def image_interval(losses: np.ndarray, statistic: Callable[[np.ndarray], Any], rounds: int,
                   seed: int) -> tuple[float, float]:
    """95% percentile bootstrap interval over test images of ``statistic(means)``: ``losses`` (..., M)
    holds per-image losses on the same M images, resampled together (``scipy.stats.bootstrap``), and
    ``means`` is their mean over the resampled images, (...)."""
    from scipy.stats import bootstrap

    losses = np.asarray(losses, dtype=np.float64)

    def resampled(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(losses[..., np.asarray(idx, dtype=np.int64)].mean(-1))

    ci = bootstrap((np.arange(losses.shape[-1]),), resampled, n_resamples=rounds, confidence_level=0.95,
                   method="percentile", random_state=np.random.default_rng(seed), vectorized=True).confidence_interval
    return float(ci.low), float(ci.high)
