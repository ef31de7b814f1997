"""Score another split (another domain) with everything already trained: no training, no re-estimation.

For every target t of the task list, on the items of one split of a bank (``target_test`` of the target
domain, item i being item i of the source ``test`` split re-rendered):

- ``self``: t's task network (``models/<t>/model.pt``), evaluated per item as ``train_task`` evaluated it;
- every first-order source s (``random`` included): s's frozen encoder over the split's images, the
  representation standardised with the moments SAVED by ``transfer@<s>`` (the source transfer split's,
  which the readouts were trained behind; never re-estimated on the new split: that would be a form of
  adaptation), then the readout s -> t as trained (``outputs/transfer/<s>/readouts.pt``);
- ``pixels``: the from-scratch baseline as trained (``outputs/pixels/readouts.pt``) on the images.

Labels are standardised with the SOURCE bank's train-split statistics (``fit_stats``), as every network
was trained. The result has the nesting of :func:`taskonomy.losses.read_target_losses` (target -> key ->
(N_t,) per-item losses), and :func:`write_rescored` lays it out as the folders that function reads, so
the affinity code runs on it unchanged.

Scored on the source bank's own ``test`` split, this reproduces the stored losses exactly: the same
weights, inputs and arithmetic in the same batches (tests/test_adapt_taxonomy.py, on the CPU; on CUDA the
same holds as far as its kernels are deterministic, which is not tested here).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from taskonomy.bank import MANIFEST, Split, check_same_bank, load_split
from taskonomy.config import Params
from taskonomy.errors import DataError
from taskonomy.losses import LOSS_FILE, read_target_losses, seed_mean, self_path, source_path, write_keyed, write_self
from taskonomy.nets.data import TaskData, label_stats, load_task_data
from taskonomy.nets.train import evaluate_per_item, load_task_network, resolve_device, set_threads, task_loss
from taskonomy.sources import PIXELS, SELF
from taskonomy.tasks import get_task
from taskonomy.transfer.engine import (READOUT_FILE, TaskLoss, encode_views, executor_spec, load_readouts,
                                       readout_seeds, rebuild_readout, source_encoder, standardise)
from taskonomy.transfer.executors import SplitContext, map_jobs

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"


def required_inputs(params: Params, models: Path, transfer: Path, pixels: Path) -> list[tuple[Path, str]]:
    """Every file :func:`rescore` reads besides the banks, with the stage that writes it."""
    needed = [(Path(models) / s / MODEL_FILE, f"train_task@{s}") for s in params.tasks]
    needed += [(Path(e.path), f"encoders.{name}.path") for name, e in params.encoders.items()]
    needed += [(Path(transfer) / s / READOUT_FILE, f"transfer@{s}") for s in params.sources()]
    return needed + [(Path(pixels) / READOUT_FILE, PIXELS)]


def check_inputs(inputs: Sequence[tuple[Path, str]]) -> None:
    """A DataError naming the first missing file and the stage that writes it."""
    for path, stage in inputs:
        if not Path(path).is_file():
            raise DataError(f"{path}: missing; it is written by stage {stage} (dvc repro {stage})")


def paired_split(target_bank: Path, split: str, pairs_with: str = "test") -> Split:
    """``target_bank/split``, refused unless it holds the scenes of ``pairs_with`` (its manifest's
    ``scenes_of``, else its own name): only then is its item i the stored losses' item i."""
    scored = load_split(target_bank, split)
    scenes_of = scored.manifest.get("scenes_of", scored.manifest.get("split"))
    if scenes_of != pairs_with:
        raise DataError(f"{scored.path / MANIFEST}: holds the scenes of {scenes_of!r}, not of {pairs_with}: its items "
                        f"do not pair with the stored {pairs_with} losses")
    return scored


def load_scored(params: Params, bank: Path, target_bank: Path, split: str) -> dict[str, TaskData]:
    """Every target's items of ``target_bank/split``, labels standardised with ``bank``'s train split (its
    transfer split for a target-only task: ``label_stats``)."""
    source = {name: load_split(bank, name) for name in ("train", "transfer")}
    scored = load_split(target_bank, split)
    check_same_bank({"train": source["train"], split: scored})
    shared: dict[str, torch.Tensor] = {}       # one tensor of inputs per transform, shared by the targets
    novel = set(params.target_only())
    out = {}
    for target in params.targets():
        task = get_task(target)
        out[target] = load_task_data(scored, task, label_stats(task, source, target in novel), shared)
    return out


def score_self(models: Path, data: Mapping[str, TaskData], device: torch.device,
               threads: int = 0) -> dict[str, np.ndarray]:
    """Every target's task network on its items, per item: float32 (N_t,), with ``threads`` torch threads
    (0: torch's default) as ``train_task`` (``train_task.threads``) evaluated it."""
    previous = torch.get_num_threads()
    set_threads(threads)
    try:
        out = {}
        for target, d in data.items():
            network, payload = load_task_network(Path(models) / target / MODEL_FILE, d.task)
            # the loop's memory format, too: channels_last picks other CPU kernels
            channels_last = bool((payload.get("loop") or {}).get("channels_last"))
            network.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            out[target] = evaluate_per_item(network, d, task_loss(d.task))
        return out
    finally:
        torch.set_num_threads(previous)


def encode_split(source: str, params: Params, models: Path, payload: Mapping[str, Any], data: Mapping[str, TaskData],
                 device: torch.device, where: str) -> dict[str, torch.Tensor]:
    """``source``'s frozen encoder (a task network's or a user's) over the split's inputs, once per input
    transform of the targets, standardised with the SAVED moments: transform -> (V, C, h, w)."""
    encoder = source_encoder(source, params, models)
    reps: dict[str, torch.Tensor] = {}
    for d in data.values():
        transform = d.task.transform.value
        if transform not in reps:
            moments = payload["moments"].get(transform)
            if moments is None:
                raise DataError(f"{where}: no moments for {transform} inputs; rerun stage transfer@{source}")
            reps[transform] = standardise(encode_views(encoder, d.views, device=device, transform=d.task.transform), moments)
    return reps


@dataclass
class ScoreContext(SplitContext):
    """What every scoring job shares: the split's data, the saved readouts and the encoded split."""
    data: dict[str, TaskData]                        # target -> its items (views: the images)
    readouts: dict[str, dict[str, Any]]              # source or pixels -> load_readouts' payload
    reps: dict[str, dict[str, torch.Tensor]]         # source -> transform -> (V, C, h, w), standardised
    where: dict[str, str]                            # source or pixels -> its readouts file, for messages
    device: str = "cpu"

    # What a job on another machine needs (Ray): its source's readouts and representations, every target.
    PARTS = ("data", "readouts", "reps")

    def job_parts(self, source: str) -> list[str]:
        return [f"readouts:{source}"] + ([f"reps:{source}"] if source in self.reps else []) + [f"data:{t}" for t in self.data]


def score_readouts(context: ScoreContext, source: str) -> dict[str, np.ndarray]:
    """A job: ``source -> t`` (or ``pixels`` on the images) for every target t, as trained, per item: the
    mean over the readouts' seeds, as the stored losses are (taskonomy.losses.write_seeded)."""
    payload, out = context.readouts[source], {}
    for target, d in context.data.items():
        items = d if source == PIXELS else replace(d, views=context.reps[source][d.task.transform.value].unsqueeze(1))
        per_seed = [evaluate_per_item(rebuild_readout(payload, target, context.where[source], k).to(context.device),
                                      items, TaskLoss(d.task)) for k in range(readout_seeds(payload))]
        out[target] = seed_mean(np.stack(per_seed)).astype(np.float32)
    return out


def rescore(params: Params, *, bank: Path, target_bank: Path, split: str, models: Path, transfer: Path,
            pixels: Path, device: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-item losses on ``target_bank/split`` of every target's ``self``, first-order sources (params'
    task list, ``random`` included) and ``pixels``: target -> key -> float32 (N_t,), keys in the order
    of :func:`~taskonomy.losses.read_target_losses`. ``device``: default ``transfer.device``.

    Run as the stages that made the stored losses ran, so that the source ``test`` split gives them back
    bit for bit: task networks with ``train_task.threads``; each source encoded here in the driver (as
    ``transfer@`` encodes); the readouts as jobs of the transfer executor (``transfer.workers`` x
    ``threads``, or Ray), one per source and one for ``pixels``."""
    check_inputs(required_inputs(params, models, transfer, pixels))
    device = resolve_device(device or params.transfer.device)
    data = load_scored(params, bank, target_bank, split)
    own = score_self(models, data, device, params.train_task.threads)
    where = {s: str(Path(transfer) / s / READOUT_FILE) for s in params.sources()}
    where[PIXELS] = str(Path(pixels) / READOUT_FILE)
    readouts = {s: load_readouts(where[s], PIXELS if s == PIXELS else f"transfer@{s}") for s in where}
    reps = {s: encode_split(s, params, models, readouts[s], data, device, where[s]) for s in params.sources()}
    log.info("rescore: %d sources encoded on %s/%s", len(reps), target_bank, split)
    context = ScoreContext(data, readouts, reps, where, str(device))
    keys = [*params.sources(), PIXELS]
    scored = dict(zip(keys, map_jobs(score_readouts, context, keys, executor_spec(params.transfer, str(device)))))
    return {t: {SELF: own[t], **{s: scored[s][t] for s in params.sources()}, PIXELS: scored[PIXELS][t]} for t in data}


# --------------------------------------------------------------------------------------------------
# On disk: the layout read_target_losses reads
# --------------------------------------------------------------------------------------------------

def rescored_paths(out: Path) -> dict[str, Path]:
    """Where :func:`write_rescored` puts the files: ``models``, ``transfer`` folders and the ``pixels`` file."""
    out = Path(out)
    return {"models": out / "models", "transfer": out / "transfer", "pixels": out / PIXELS / LOSS_FILE}


def write_rescored(out: Path, losses: Mapping[str, Mapping[str, Any]]) -> None:
    """``<out>/models/<t>/test_losses.npy``, ``<out>/transfer/<s>/losses.npz`` (one key per target) and
    ``<out>/pixels/losses.npz``: docs/losses-format.md's layout, float32."""
    paths = rescored_paths(out)
    sources = [k for k in next(iter(losses.values())) if k not in (SELF, PIXELS)]
    for t, per in losses.items():
        write_self(self_path(paths["models"], t), per[SELF])
    for s in sources:
        write_keyed(source_path(paths["transfer"], s), {t: per[s] for t, per in losses.items()})
    write_keyed(paths["pixels"], {t: per[PIXELS] for t, per in losses.items()})


def read_rescored(out: Path, targets: Sequence[str], sources: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """What :func:`write_rescored` wrote, through :func:`~taskonomy.losses.read_target_losses` (checked)."""
    return read_target_losses(targets, sources, **rescored_paths(out))
