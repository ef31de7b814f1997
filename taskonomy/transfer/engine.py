"""The transfer engine: every readout from one frozen source encoder into every target.

A transfer ``S -> t`` (S a set of one or more sources) trains a transfer function and a FRESH head of
t's kind (taskonomy.transfer.readout) on the ``transfer`` split, then scores every ``test`` item of t with t's
per-item loss (docs/losses-format.md). The cost that matters is not the readouts (tiny) but what a
naive loop wraps around them: a process per pair, reloading the bank, and re-running the frozen encoder
on every batch of every epoch. Here, per stage:

1. the bank is loaded once (:func:`load_targets`: every target's transfer and test items and labels);
2. each source encoder runs ONCE over the views of both splits, in eval mode without gradients
   (:func:`encode_source`); the representation is standardised per channel with the transfer split's
   moments (a random encoder's scale is arbitrary) and cached in RAM;
3. every target's readout gathers its items' views from that cache by the ``<task>_index`` arrays
   (pairs, triplets) through ``TaskData.batch``, and trains with the project's one loop
   (``taskonomy.nets.train.fit``); the readouts run as independent jobs (taskonomy.transfer.executors).

What an encoder sees: the TARGET's input (clean image; a noisy one for denoise), so the
representation describes what t's own network would be given; sources are cached once per distinct
input transform of the targets (normally two: plain and noisy). ``pixels`` (reference §2.5) trains
:class:`~taskonomy.transfer.readout.PixelsTrunk` from scratch on those images with the same protocol.

Seeds: a readout's initialisation and batch order depend on (``transfer.seed``, target) only, not on
the source: all transfers into a target start from the same head and see the same batches (common
random numbers), so their differences come from the representations. With ``transfer.seeds`` = S, every
transfer is read out S times, at seeds ``seed``, ..., ``seed + S - 1`` (:func:`seed_params`); the stages
keep each seed's per-item losses and their mean (taskonomy.losses.write_seeded).

Trained readouts can be kept (:func:`run_readouts` with ``keep=True``; :func:`save_readouts`): their
weights, what rebuilds them (:func:`build_readout`'s arguments) and the source's standardisation
moments, so that another split (another domain) is scored later with the very readouts, standardised
as they were trained (taskonomy.transfer.rescore).
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from taskonomy.config import Params, TrainTaskParams, TransferParams, as_dict, from_dict
from taskonomy.errors import DataError, TaskonomyError
from taskonomy.nets.data import Batch, TaskData, decode_views, label_stats, load_task_data
from taskonomy.nets.models import build_head
from taskonomy.nets.train import LoopConfig, autocast, cpu_kernels, evaluate_per_item, fit, given_cores, save_checkpoint
from taskonomy.sources import PIXELS, set_key
from taskonomy.storage import atomic_savez
from taskonomy.tasks import Task, Transform, get_task, per_item_loss
from taskonomy.transfer.executors import ExecutorSpec, SplitContext, map_jobs
from taskonomy.transfer.readout import PixelsTrunk, Readout, TransferFunction

log = logging.getLogger(__name__)

SPLITS = ("transfer", "test")
ENCODE_BATCH = 256
READOUT_FILE = "readouts.pt"


@dataclass(frozen=True)
class TaskLoss:
    """``(prediction, batch) -> (B,)``: the task's per-item loss, picklable for workers and Ray."""
    task: Task

    def __call__(self, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
        return per_item_loss(self.task, pred, batch.y, batch.mask)


def seed_params(params: TransferParams) -> list[TransferParams]:
    """The settings of each of the ``params.seeds`` readouts of a transfer: ``seed``, ``seed + 1``, ..."""
    return [replace(params, seed=params.seed + k) for k in range(params.seeds)]


def readout_seed(seed: int, target: str) -> int:
    """The seed of every readout into ``target`` (stable across processes, unlike ``hash``)."""
    return zlib.crc32(f"{seed}:{target}".encode()) & 0x7FFFFFFF


# --------------------------------------------------------------------------------------------------
# Data: every target's items, loaded once
# --------------------------------------------------------------------------------------------------

def training_items(data: TaskData, images: int) -> torch.Tensor:
    """Items of the transfer split used for training: all, or those made of its first ``images`` views."""
    if images <= 0:
        return torch.arange(len(data))
    return torch.nonzero((data.index < images).all(1)).flatten()


def load_targets(splits: Mapping[str, Any], targets: Sequence[str], images: int = 0,
                 novel: Collection[str] = ()) -> dict[str, dict[str, TaskData]]:
    """``target -> split -> TaskData`` for the transfer and test splits, labels standardised with the
    train split's statistics (as the task networks were; the transfer split's for the ``novel``,
    target-only, tasks: ``label_stats``). ``splits``: name -> ``bank.Split``."""
    out = {}
    shared: dict[str, dict] = {split: {} for split in SPLITS}     # inputs converted once per split and transform
    for target in targets:
        task = get_task(target)
        if not task.trainable:
            raise TaskonomyError(f"{target}: has no label, so it cannot be a transfer target (source_only)")
        stats = label_stats(task, splits, target in novel)
        per_split = {split: load_task_data(splits[split], task, stats, shared[split]) for split in SPLITS}
        items = training_items(per_split["transfer"], images)
        if len(items) < 2:
            raise TaskonomyError(f"transfer.images: {images} images leave {target} with {len(items)} training items")
        per_split["transfer"] = per_split["transfer"].subset(items)
        out[target] = per_split
    return out


# --------------------------------------------------------------------------------------------------
# Representations: each source encoded once per split and input transform
# --------------------------------------------------------------------------------------------------

class FrozenEncoder(nn.Module):
    """A source encoder that stays frozen: no gradients, and eval mode even under ``.train()``
    (BatchNorm must not update its running statistics)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "FrozenEncoder":
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encoder(x)


@torch.no_grad()
def encode_views(encoder: nn.Module, views: torch.Tensor, batch_size: int = ENCODE_BATCH,
                 device: torch.device | str = "cpu", transform: Transform = Transform.PLAIN) -> torch.Tensor:
    """Encoder over every bank view: (V, 1, 3, H, W) -> (V, C, h, w) float32 on the CPU. Stored uint8
    images travel to the device as they are and are decoded there (``transform``: the source task's
    input transform, :func:`decode_views`); under bf16 autocast on CUDA."""
    if views.shape[1] != 1:
        raise ValueError(f"a source encodes whole images, got {views.shape[1]} inputs per view")
    device = torch.device(device)
    encoder = encoder.eval().to(device)
    with cpu_kernels(encoder, device), autocast(device):   # the kernels the encoder would train and run with
        parts = [encoder(decode_views(views[i:i + batch_size, 0].to(device, non_blocking=True), transform)).float().cpu()
                 for i in range(0, len(views), batch_size)]
    return torch.cat(parts)


def channel_moments(rep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of (V, C, h, w) over views and positions; a dead channel gets std 1."""
    mean = rep.double().mean(dim=(0, 2, 3))
    std = rep.double().std(dim=(0, 2, 3), unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)  # (1, C, 1, 1)


Moments = dict[str, dict[str, torch.Tensor]]   # input transform -> {"mean", "std"}: (1, C, 1, 1) each


def standardise(raw: torch.Tensor, moments: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(V, C, h, w) representations standardised per channel with ``moments`` (:func:`channel_moments`)."""
    return (raw - moments["mean"]) / moments["std"]


def encode_source(encoder: nn.Module, targets: Mapping[str, Mapping[str, TaskData]],
                  device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Cached, standardised representations of one source: ``'<split>/<transform>' -> (V, C, h, w)``."""
    return encode_source_moments(encoder, targets, device)[0]


def encode_source_moments(encoder: nn.Module, targets: Mapping[str, Mapping[str, TaskData]],
                          device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], Moments]:
    """:func:`encode_source`'s representations and the moments that standardised them, per transform.

    One pass per split and distinct input transform of the targets; moments from the transfer split.
    """
    reps: dict[str, torch.Tensor] = {}
    moments: Moments = {}
    for data in targets.values():
        transform = data["test"].task.transform.value
        if transform in moments:
            continue
        raw = {split: encode_views(encoder, data[split].views, device=device, transform=data[split].task.transform)
               for split in SPLITS}
        mean, std = channel_moments(raw["transfer"])
        moments[transform] = {"mean": mean, "std": std}
        for split in SPLITS:
            reps[f"{split}/{transform}"] = standardise(raw[split], moments[transform])
    return reps, moments


def rep_key(split: str, task: Task) -> str:
    return f"{split}/{task.transform.value}"


# --------------------------------------------------------------------------------------------------
# One readout (a job): sources -> target
# --------------------------------------------------------------------------------------------------

@dataclass
class TransferContext(SplitContext):
    """What every job of a stage shares: cached reps per source, every target's data, the settings."""
    reps: dict[str, dict[str, torch.Tensor]]        # source -> rep_key -> (V, C, h, w)
    targets: dict[str, dict[str, TaskData]]         # target -> split -> data (views dropped unless pixels)
    params: TransferParams
    net: TrainTaskParams                            # head widths and the representation stride
    device: str = "cpu"
    history: dict[str, Any] = field(default_factory=dict)

    # What a job on another machine needs (taskonomy.transfer.executors, Ray): a job (sources, target)
    # reads its sources' representations and its target's data, nothing else.
    PARTS = ("reps", "targets")

    def job_parts(self, job: tuple) -> list[str]:
        sources, target = job[:2]                   # (sources, target[, seed index])
        return [f"reps:{s}" for s in sources if s in self.reps] + [f"targets:{target}"]


def build_readout(sources: Sequence[str], task: Task, in_channels: int, width: int, rep_hw: int,
                  params: TransferParams, net: TrainTaskParams) -> Readout:
    """Transfer function (or the pixels trunk) + a fresh head of the target's kind, seeded per target."""
    torch.manual_seed(readout_seed(params.seed, task.name))
    if tuple(sources) == (PIXELS,):
        trunk = PixelsTrunk(in_channels, width, net.bottleneck_stride)
    else:
        trunk = TransferFunction(in_channels, width, coords=params.coords)
    return Readout(trunk, build_head(task, trunk.out_channels, rep_hw, head_params(params, net)))


def head_params(params: TransferParams, net: TrainTaskParams) -> TrainTaskParams:
    """The settings of a readout's fresh head: the task networks' (``net``), with the dense decoder's
    width replaced by ``transfer.decoder_width`` when set. Taskonomy reused the full decoder; a
    narrower one is the default here because dense decoders are 90% of a readout's cost on CPU."""
    return replace(net, width=params.decoder_width) if params.decoder_width else net


def loop_config(params: TransferParams, target: str, device: str) -> LoopConfig:
    return LoopConfig.from_params(params, seed=readout_seed(params.seed, target), device=device)


@dataclass(frozen=True)
class TrainedReadout:
    """What one job gives back: the per-item test losses and, when the job was asked to keep it, the
    readout as :func:`readout_record` describes it (CPU tensors: small, and picklable to the driver)."""
    losses: np.ndarray                        # float32 (N_t,)
    record: dict[str, Any] | None = None


def readout_record(model: Readout, sources: Sequence[str], task: Task, in_channels: int, width: int,
                   rep_hw: int) -> dict[str, Any]:
    """A trained readout as plain data: :func:`build_readout`'s arguments (the target's resolved output
    size standing for its task) and the weights, on the CPU. The params it was built with are the
    file's (:func:`save_readouts`)."""
    return {"sources": list(sources), "target": task.name, "out_channels": task.out_channels,
            "in_channels": in_channels, "width": width, "rep_hw": rep_hw,
            "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def _readout_data(context: TransferContext, sources: Sequence[str], target: str
                  ) -> tuple[Task, TaskData, TaskData, int, int, int]:
    """A job's task, its train and test data (the sources' representations as the views), the readout's
    input channels, width and representation size."""
    data = context.targets[target]
    task = data["test"].task
    if tuple(sources) == (PIXELS,):
        train, test = data["transfer"], data["test"]
        in_channels, width = train.views.shape[2], context.net.bottleneck_channels
        rep_hw = train.resolution // context.net.bottleneck_stride
    else:
        key = {split: rep_key(split, task) for split in SPLITS}
        parts = {split: [context.reps[s][key[split]] for s in sources] for split in SPLITS}
        views = {split: torch.cat(parts[split], 1).unsqueeze(1) for split in SPLITS}  # (V, 1, K*C, h, w)
        train, test = (replace(data[split], views=views[split]) for split in SPLITS)
        in_channels, width, rep_hw = views["test"].shape[2], parts["test"][0].shape[1], views["test"].shape[-1]
    return task, train, test, in_channels, width, rep_hw


def train_readout(context: TransferContext, job: tuple, keep: bool = False) -> TrainedReadout:
    """Train ``sources -> target`` on the transfer split (job ``(sources, target)``, or ``(sources, target,
    k)`` for the readout at seed ``transfer.seed + k``): per-item test losses, float32 (N_t,), and with
    ``keep`` the trained readout (:func:`readout_record`)."""
    sources, target = job[:2]
    params = seed_params(context.params)[job[2]] if len(job) > 2 else context.params
    task, train, test, in_channels, width, rep_hw = _readout_data(context, sources, target)
    model = build_readout(sources, task, in_channels, width, rep_hw, params, context.net)
    loss = TaskLoss(task)
    fit(model, train, loss, loop_config(params, target, context.device), name=f"{set_key(sources)}->{target}")
    losses = evaluate_per_item(model, test, loss)
    return TrainedReadout(losses, readout_record(model, sources, task, in_channels, width, rep_hw) if keep else None)


def train_readout_seeds(context: TransferContext, job: tuple[tuple[str, ...], str],
                        keep: bool = False) -> list[TrainedReadout]:
    """Every seed's readout of ``sources -> target`` trained as one batched model
    (taskonomy.transfer.stacked); one :class:`TrainedReadout` per seed."""
    from taskonomy.transfer.stacked import fit_stacked

    sources, target = job
    task, train, test, in_channels, width, rep_hw = _readout_data(context, sources, target)
    seeded = seed_params(context.params)
    models = [build_readout(sources, task, in_channels, width, rep_hw, p, context.net) for p in seeded]
    loss = TaskLoss(task)
    fit_stacked(models, train, loss, [loop_config(p, target, context.device) for p in seeded],
                name=f"{set_key(sources)}->{target}")
    return [TrainedReadout(evaluate_per_item(m, test, loss),
                           readout_record(m, sources, task, in_channels, width, rep_hw) if keep else None)
            for m in models]


def executor_spec(params: Any, device: str) -> ExecutorSpec:
    """Local: ``workers`` processes of ``threads`` threads (0 = the measured default: one
    single-threaded worker per core the stage is given on CPU, one process on CUDA); or the Ray cluster (a section with
    ``executor`` and ``ray``, as ``transfer``; a section without them runs locally)."""
    cores = given_cores()
    if device != "cpu":
        workers, threads = 1, params.threads
    else:
        workers = params.workers or cores
        threads = params.threads or max(1, cores // workers)
    executor, ray = getattr(params, "executor", "local"), getattr(params, "ray", None)
    if ray is None:
        return ExecutorSpec(kind=executor, workers=workers, threads=threads)
    return ExecutorSpec(kind=executor, workers=workers, threads=threads, ray_address=ray.address,
                        cpus_per_job=ray.cpus_per_job, gpus_per_job=ray.gpus_per_job, device=params.device)


def run_readouts(context: TransferContext, jobs: Sequence[tuple[tuple[str, ...], str]],
                 spec: ExecutorSpec | None = None, keep: bool = False) -> dict[str, dict[str, TrainedReadout]]:
    """Train every job; ``target -> sources key -> TrainedReadout`` (with the readouts for ``keep``)."""
    spec = spec or executor_spec(context.params, context.device)
    return _by_target(zip(jobs, map_jobs(partial(train_readout, keep=keep), context, list(jobs), spec)))


def _by_target(done: Iterable[tuple[tuple[tuple[str, ...], str], TrainedReadout]],
               seed: int | None = None) -> dict[str, dict[str, TrainedReadout]]:
    """``target -> sources key -> TrainedReadout`` from (job, result) pairs; a non-finite test loss is one
    line naming the transfer (and the seed)."""
    out: dict[str, dict[str, TrainedReadout]] = {}
    for (sources, target), result in done:
        if not np.all(np.isfinite(result.losses)):
            at = "" if seed is None else f" (seed {seed})"
            raise TaskonomyError(f"{set_key(sources)} -> {target}: non-finite test losses{at}")
        out.setdefault(target, {})[set_key(sources)] = result
    return out


def losses_of(readouts: dict[str, dict[str, TrainedReadout]]) -> dict[str, dict[str, np.ndarray]]:
    """``target -> sources key -> (N_t,) per-item test losses`` of trained readouts."""
    return {t: {key: r.losses for key, r in per.items()} for t, per in readouts.items()}


def run_seeded(context: TransferContext, jobs: Sequence[tuple[tuple[str, ...], str]],
               spec: ExecutorSpec | None = None, keep: bool = False) -> list[dict[str, dict[str, TrainedReadout]]]:
    """Every job at each of ``transfer.seeds`` seeds: per seed, ``target -> sources key -> TrainedReadout``.

    The seeds of a job train as one batched model where :func:`taskonomy.transfer.stacked.batches_seeds`
    says (``transfer.batch_seeds``: on CUDA by default); otherwise every (job, seed) is one job of a single
    executor map, so no worker idles at the end of one seed while the next waits."""
    from taskonomy.transfer.stacked import batches_seeds

    p = context.params
    spec = spec or executor_spec(p, context.device)
    jobs = list(jobs)
    if batches_seeds(p.batch_seeds, context.device, p.seeds, getattr(p, "grad_clip", 0.0)):
        results = map_jobs(partial(train_readout_seeds, keep=keep), context, jobs, spec)
        per_job = {job: results[i] for i, job in enumerate(jobs)}
    else:
        flat = [(*job, k) for k in range(p.seeds) for job in jobs]
        results = map_jobs(partial(train_readout, keep=keep), context, flat, spec)
        per_job = {job: [results[k * len(jobs) + i] for k in range(p.seeds)] for i, job in enumerate(jobs)}
    return [_by_target(((job, per_job[job][k]) for job in jobs), p.seed + k) for k in range(p.seeds)]


def run_transfers(context: TransferContext, jobs: Sequence[tuple[tuple[str, ...], str]],
                  spec: ExecutorSpec | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Train every job; ``target -> sources key -> (N_t,) per-item test losses``."""
    return losses_of(run_readouts(context, jobs, spec))


def strip_views(targets: dict[str, dict[str, TaskData]]) -> dict[str, dict[str, TaskData]]:
    """The same data without the image views (the jobs read representations; keeps workers/Ray light)."""
    empty = torch.empty(0)
    return {t: {s: replace(d, views=empty) for s, d in per.items()} for t, per in targets.items()}


# --------------------------------------------------------------------------------------------------
# Sources on disk
# --------------------------------------------------------------------------------------------------

def load_source_encoder(checkpoint: str | Path, source: str) -> nn.Module:
    """The frozen encoder of ``source`` from its task-network checkpoint (``train_task`` writes it)."""
    from taskonomy.nets.train import load_encoder

    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise DataError(f"{source}: {checkpoint} is missing (made by the stage train_task@{source}: "
                        f"dvc repro train_task@{source})")
    return load_encoder(checkpoint, task=source)


def source_encoder(source: str, params: Params, models: str | Path) -> nn.Module:
    """The frozen encoder of a transfer source: a task network's (``models/<source>/model.pt``) or one of the
    user's own (``encoders.<source>``; taskonomy.nets.external), which sees the images resized so that its
    representation has the task networks' size."""
    if source in params.encoders:
        from taskonomy.nets.external import load_user_encoder

        rep_hw = params.render.resolution // params.train_task.bottleneck_stride
        return load_user_encoder(source, params.encoders[source], rep_hw)
    return load_source_encoder(Path(models) / source / "model.pt", source)


def source_file(source: str, params: Params, models: str | Path) -> Path:
    """The file a source's weights come from (what a stamp of its runs hashes)."""
    return Path(params.encoders[source].path) if source in params.encoders else Path(models) / source / "model.pt"


def save_reps(path: str | Path, reps: Mapping[str, torch.Tensor]) -> None:
    """Write a source's cached representations atomically: ``'<split>/<transform>' -> (V, C, h, w)``.

    float32, exactly what this stage's first-order readouts trained on: ``transfer_high`` and
    benchmarks/readouts.py read them back, and readout training is chaotic enough that float16 rounding
    alone moved per-item losses by up to 0.16 and swapped close ranks, so higher orders were compared
    with first-order readouts of other inputs."""
    atomic_savez(path, {k: v.numpy().astype(np.float32, copy=False) for k, v in reps.items()})


def load_reps(path: str | Path, source: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{source}: {path} is missing; run `dvc repro transfer@{source}` first")
    with np.load(path) as z:
        return {k: torch.from_numpy(z[k].astype(np.float32, copy=False)) for k in z.files}


def save_readouts(path: str | Path, source: str, readouts: Mapping[str, Mapping[str, Any]], params: TransferParams,
                  net: TrainTaskParams, moments: Moments | None = None,
                  seed_readouts: Sequence[Mapping[str, Mapping[str, Any]]] = ()) -> None:
    """Write the readouts of one source (or of ``pixels``) atomically, with what rebuilds and feeds them:
    ``{"format", "source", "transfer", "train_task", "moments", "readouts", "seed_readouts"}``; ``readouts``:
    target -> :func:`readout_record` at the first seed, ``seed_readouts`` the same at each further seed of
    ``transfer.seeds``; ``moments``: the source's standardisation per input transform (the transfer
    split's, which the readouts were trained behind; none for ``pixels``, which reads images).

    No code version, unlike a task network's checkpoint: the file lies in ``outputs/transfer``, a folder
    that later stages depend on, and a stamp that changes with every commit would make its bytes (and
    so theirs) change when a rerun of ``transfer@`` reproduces every weight; ``dvc.lock`` records the code."""
    save_checkpoint(Path(path), {
        "format": 1, "source": source, "transfer": as_dict(params), "train_task": as_dict(net),
        "moments": {t: {k: v.detach().cpu() for k, v in m.items()} for t, m in (moments or {}).items()},
        "readouts": {t: dict(r) for t, r in readouts.items()},
        "seed_readouts": [{t: dict(r) for t, r in more.items()} for more in seed_readouts]})


def load_readouts(path: str | Path, stage: str) -> dict[str, Any]:
    """What :func:`save_readouts` wrote; missing or unreadable is a DataError naming ``stage``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing; it is written by stage {stage} (dvc repro {stage})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file (zip, unpickling, EOF)
        raise DataError(f"{path}: corrupt or unreadable ({type(err).__name__}); rerun stage {stage}") from None
    if not isinstance(payload, dict) or payload.get("format") != 1 or "readouts" not in payload:
        raise DataError(f"{path}: not a readouts file of this code; rerun stage {stage}")
    return payload


def readout_seeds(payload: Mapping[str, Any]) -> int:
    """How many seeds of readouts a :func:`load_readouts` payload holds."""
    return 1 + len(payload.get("seed_readouts", ()))


def rebuild_readout(payload: Mapping[str, Any], target: str, where: str = "readouts", seed: int = 0) -> Readout:
    """The trained readout into ``target`` from :func:`load_readouts`' ``payload`` (its ``seed``-th seed), in
    eval mode (CPU)."""
    record = (payload["readouts"] if seed == 0 else payload["seed_readouts"][seed - 1]).get(target)
    if record is None:
        raise DataError(f"{where}: no readout into {target} (has: {', '.join(payload['readouts']) or 'none'})")
    try:
        params = from_dict(TransferParams, payload["transfer"], "transfer")
        net = from_dict(TrainTaskParams, payload["train_task"], "train_task")
        task = get_task(record["target"]).with_outputs(record["out_channels"])
        model = build_readout(record["sources"], task, record["in_channels"], record["width"], record["rep_hw"],
                              params, net)
        model.load_state_dict(record["state"])
    except (KeyError, RuntimeError, TaskonomyError) as err:
        raise DataError(f"{where}: the readout into {target} does not fit this code ({type(err).__name__}: {err}); "
                        f"rerun the stage that wrote it") from None
    return model.eval()
