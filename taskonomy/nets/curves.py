"""A task network's training curve for DVC users, written with DVCLive, the DVC ecosystem's logger.

``folder`` (dvc.yaml: ``reports/curves/<task>``, tracked in git so that ``dvc plots diff`` between two
commits needs no cache) gets DVCLive's layout, ``plots/metrics/<name>.tsv`` with one row per epoch
(``step`` is the epoch, from 1), for the train and the test loss; dvc.yaml declares the folder as plots
drawn against ``step``. The curve is written once training has ended, from the run's history, which a
resumed run restores from its checkpoint: a run interrupted and resumed writes the curve an
uninterrupted one would. DVCLive's own summary (``metrics.json``, the last epoch's values) is left out:
a network's numbers are its headline file (reports/metrics/networks/<task>.json), and the per-epoch
record with the learning rate stays in ``models/<task>/curve.csv``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from taskonomy.storage import atomic_write_text

CURVES = ("train_loss", "test_loss")


def write_curves(folder: Path, history: list[dict]) -> None:
    """``folder``'s curves from ``history`` (one dict per epoch: epoch, train_loss, test_loss, ...);
    empty curves (a header each) for an encoder that was not trained, so every task has its plots."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    metrics = folder / "plots" / "metrics"
    if not history:
        for name in CURVES:
            atomic_write_text(metrics / f"{name}.tsv", f"step\t{name}\n")
        return
    from dvclive import Live

    with Live(dir=str(folder), resume=False, save_dvc_exp=False, dvcyaml=None, report=None,
              monitor_system=False) as live:
        for row in history:
            live.step = int(row["epoch"])
            for name in CURVES:
                if row.get(name) is not None:
                    live.log_metric(name, float(row[name]))
    (folder / "metrics.json").unlink(missing_ok=True)
