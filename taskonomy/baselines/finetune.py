"""Fine-tuning baselines: which pretrained network to start a target from, how much of it to train, and
whether pretraining pays at all (stage ``finetune@<target>``).

Every run is one network, ``head(transfer_function(concat_k standardise(encoder_k(x))))``: the encoders
of a source set (the task networks' ``model.pt``, or a freshly initialised one for scratch), each
standardised per channel by fixed moments of its representation on the run's training images (as
the transfer engine standardises cached representations), then Taskonomy's transfer function and a
fresh head of the target's kind (taskonomy.transfer.readout). The modes differ only in what trains:

- ``frozen``: the encoders are fixed (eval mode, no gradient): Taskonomy's transfer protocol;
- ``partial``: the last ``partial_blocks`` blocks of each encoder train (the rest fixed, eval mode);
- ``full``: every encoder weight trains, at ``backbone_lr_scale`` times the new layers' rate;
- ``l2sp``: ``full`` plus alpha/2 ||w - w0||^2 over the pretrained weights and beta/2 ||w||^2 over the
  new layers' weights (Li et al., ICML 2018), with no weight decay of the optimiser's;
- ``scratch``: a fresh encoder trained with the new layers at the full rate, at each schedule multiple.

A run trains on the first ``items`` items of one fixed permutation of the target's split (per seed and
target), so the sizes are nested; it sees ``train_items x schedule`` items whatever its size (several
epochs of a small set, part of an epoch of a large one). Every run at one (size, seed) starts its new
layers from the same initialisation and sees the same batches (common random numbers), so their
differences come from the encoders and the mode. All of them use the project's one training loop
(``taskonomy.nets.train.fit``) with parameter groups and, for L2-SP, a penalty.

Each finished run is stored under ``runs/`` of the stage's folder, named by the sha256 of what made it
(code, settings, the run, the source checkpoints' and data's digests): an interrupted stage resumes at
the run, and a rerun after a params edit reuses every run the edit did not change.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from taskonomy.config import FinetuneParams, Params, TrainTaskParams
from taskonomy.errors import DataError, ParamsError
from taskonomy.nets.data import TaskData
from taskonomy.nets.models import Encoder, build_encoder, build_head, encode
from taskonomy.nets.train import LoopConfig, ParamGroup, evaluate_per_item, fit
from taskonomy.provenance import code_version
from taskonomy.sources import PIXELS, RANDOM, SELF, set_key
from taskonomy.storage import atomic_savez
from taskonomy.tasks import Task
from taskonomy.transfer.engine import TaskLoss, channel_moments, encode_views
from taskonomy.transfer.readout import TransferFunction

log = logging.getLogger(__name__)

SCRATCH = "scratch"
STATS_VIEWS = 1024          # training views the standardising moments are taken over


# --------------------------------------------------------------------------------------------------
# What runs: roles -> source sets -> runs
# --------------------------------------------------------------------------------------------------

def choose_sources(target: str, roles: Sequence[str], solution: dict | None,
                   first_order: "Any") -> dict[str, tuple[tuple[str, ...] | None, str]]:
    """``role -> (source set or None, note)`` for ``target``.

    ``taxonomy``: the source set the solution transfers into ``target`` (None, with the reason, when
    the solution supervises it or leaves it out); ``best`` / ``worst``: the first-order source of
    highest / lowest affinity (``first_order``: sources x targets), ``random`` and the target itself
    excluded; ``random``: the untrained encoder.
    """
    out: dict[str, tuple[tuple[str, ...] | None, str]] = {}
    for role in roles:
        if role == "taxonomy":
            chosen = (solution or {}).get("transfers", {}).get(target)
            if chosen:
                out[role] = (tuple(chosen), "")
            elif target in (solution or {}).get("supervised", []):
                out[role] = (None, "supervised by the taxonomy: no source chosen")
            else:
                out[role] = (None, "not a target of the taxonomy's solution")
        elif role in ("best", "worst"):
            if target not in first_order.columns:
                raise DataError(f"first-order affinities: no column for target '{target}'")
            column = first_order[target].drop([s for s in (target, RANDOM, PIXELS, SELF) if s in first_order.index])
            column = column.dropna()
            if column.empty:
                raise DataError(f"first-order affinities: no source of '{target}' besides itself and random")
            source = column.idxmax() if role == "best" else column.idxmin()
            out[role] = ((str(source),), "")
        elif role == "random":
            out[role] = ((RANDOM,), "")
        else:
            raise ParamsError(f"finetune.roles: unknown role {role!r}")
    return out


@dataclass(frozen=True)
class Run:
    """One trained network: its sources (() = scratch), mode, training items, schedule and seed."""
    sources: tuple[str, ...]
    mode: str
    items: int
    schedule: float
    seed: int

    @property
    def label(self) -> str:
        return f"{set_key(self.sources) if self.sources else SCRATCH}/{self.mode}/n{self.items}/x{self.schedule:g}/s{self.seed}"


def plan_runs(chosen: dict[str, tuple[tuple[str, ...] | None, str]], f: FinetuneParams) -> list[Run]:
    """Every distinct run for one target: each chosen source set in each mode, and scratch at each
    schedule, at every size and seed (two roles with the same source set share their runs)."""
    sets = []
    for sources, _ in chosen.values():
        if sources is not None and sources not in sets:
            sets.append(sources)
    runs = []
    for seed in f.seeds:
        for items in f.sizes:
            runs += [Run(s, mode, items, 1.0, seed) for s in sets for mode in f.modes]
            runs += [Run((), SCRATCH, items, x, seed) for x in f.scratch_schedules]
    return runs


def schedule_loop(f: FinetuneParams, run: Run, seed: int, device: str) -> LoopConfig:
    """The run's loop: ``train_items x schedule`` items seen, as whole epochs of a small set or one
    epoch of a subset of a large one."""
    total = max(f.batch_size, round(f.train_items * run.schedule))
    if run.items >= total:
        epochs, epoch_items = 1, total
    else:
        epochs, epoch_items = max(1, round(total / run.items)), 0
    return LoopConfig(epochs=epochs, batch_size=min(f.batch_size, run.items), lr=f.lr,
                      weight_decay=0.0 if run.mode == "l2sp" else f.weight_decay, epoch_items=epoch_items,
                      optimizer=f.optimizer, schedule=f.schedule, seed=seed, device=device)


def run_seed(seed: int, target: str, items: int) -> int:
    """The seed of every run into ``target`` at one size: new layers' init and batch order."""
    return zlib.crc32(f"finetune:{seed}:{target}:{items}".encode()) & 0x7FFFFFFF


def subset(data: TaskData, items: int, seed: int, target: str) -> TaskData:
    """The first ``items`` items of the fixed permutation of ``data`` for (seed, target): nested sizes."""
    if items > len(data):
        raise ParamsError(f"finetune.sizes: {items} items, but {target}'s split has {len(data)}")
    gen = torch.Generator().manual_seed(zlib.crc32(f"finetune-items:{seed}:{target}".encode()))
    return data.subset(torch.randperm(len(data), generator=gen)[:items])


# --------------------------------------------------------------------------------------------------
# The network and what trains
# --------------------------------------------------------------------------------------------------

def encoder_blocks(encoder: Encoder) -> list[nn.Module]:
    """The encoder's blocks, bottom to top: the trunk's children that hold weights, then compress."""
    return [m for m in encoder.trunk.children() if any(True for _ in m.parameters())] + [encoder.compress]


class Standardise(nn.Module):
    """(x - mean) / std per channel of (B, k, C, h, w), with fixed moments."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, 1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, 1, -1, 1, 1).clone())

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        return (rep - self.mean) / self.std


class FinetuneNetwork(nn.Module):
    """Encoders (each on every input of an item) -> standardise -> concat -> transfer function -> head.

    Modules listed as ``fixed`` never train: no gradient, and eval mode (their BatchNorm statistics
    stay the pretrained ones) even when the network is put in training mode.
    """

    def __init__(self, encoders: Sequence[Encoder], standardise: Sequence[Standardise], trunk: nn.Module,
                 head: nn.Module, fixed: Sequence[nn.Module] = ()):
        super().__init__()
        self.encoders = nn.ModuleList(encoders)
        self.standardise = nn.ModuleList(standardise)
        self.trunk, self.head = trunk, head
        self.fixed = list(fixed)           # a plain list: already registered under encoders
        for m in self.fixed:
            m.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> "FinetuneNetwork":
        super().train(mode)
        for m in getattr(self, "fixed", []):
            m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:     # (B, k, 3, H, W)
        reps = [s(encode(e, x)) for e, s in zip(self.encoders, self.standardise)]
        return self.head(self.trunk(torch.cat(reps, 2)))    # concat channels: (B, k, K*C, h, w)

    def new_layers(self) -> list[nn.Parameter]:
        return [*self.trunk.parameters(), *self.head.parameters()]


class L2SP:
    """alpha/2 ||w - w0||^2 over the pretrained encoders' weights + beta/2 ||w||^2 over the new ones."""

    def __init__(self, network: FinetuneNetwork, alpha: float, beta: float):
        self.pretrained = [p for p in network.encoders.parameters() if p.requires_grad]
        self.anchor = [p.detach().clone() for p in self.pretrained]
        self.new = [p for p in network.new_layers() if p.dim() > 1]     # weights, not biases / BN
        self.alpha, self.beta = alpha, beta

    def __call__(self) -> torch.Tensor:
        drift = sum(((p - a) ** 2).sum() for p, a in zip(self.pretrained, self.anchor))
        size = sum((p ** 2).sum() for p in self.new)
        return 0.5 * self.alpha * drift + 0.5 * self.beta * size


def build_network(run: Run, task: Task, encoders: Sequence[Encoder], train: TaskData, f: FinetuneParams,
                  net: TrainTaskParams, seed: int, device: torch.device) -> tuple[FinetuneNetwork, list[ParamGroup]]:
    """The run's network (new layers seeded by ``seed``) and its parameter groups."""
    first_views = train.views[train.index[:, 0].unique()[:STATS_VIEWS]]      # (V, 1, 3, H, W) inputs seen
    standardise = [Standardise(*channel_moments(encode_views(e, first_views, device=device, transform=train.task.transform))) for e in encoders]
    width = encoders[0].out_channels
    torch.manual_seed(seed)
    trunk = TransferFunction(sum(e.out_channels for e in encoders), width, coords=f.coords)
    head_cfg = replace(net, width=f.decoder_width) if f.decoder_width else net
    head = build_head(task, trunk.out_channels, train.resolution // net.bottleneck_stride, head_cfg)
    blocks = [encoder_blocks(e) for e in encoders]
    if run.mode == "frozen":
        fixed = list(encoders)
    elif run.mode == "partial":
        fixed = [b for bs in blocks for b in bs[:max(0, len(bs) - f.partial_blocks)]]
    else:
        fixed = []
    network = FinetuneNetwork(encoders, standardise, trunk, head, fixed)
    encoder_params = tuple(p for p in network.encoders.parameters() if p.requires_grad)
    backbone_scale = 1.0 if run.mode == SCRATCH else f.backbone_lr_scale
    groups = [ParamGroup(tuple(network.new_layers()), 1.0), ParamGroup(encoder_params, backbone_scale)]
    return network, groups


# --------------------------------------------------------------------------------------------------
# One run, and the stage's runs
# --------------------------------------------------------------------------------------------------

@dataclass
class Context:
    """What every run of a target shares (fork workers inherit it)."""
    target: str
    task: Task                                   # resolved (out_channels)
    train: TaskData
    test: TaskData
    encoders: dict[str, Encoder]                 # source -> its pretrained encoder (copied by each run)
    params: Params
    device: str
    cache: Path
    stamps: dict[str, str]                       # run label -> the sha256 naming its result file


def train_run(context: Context, run: Run) -> dict[str, Any]:
    """Train one run and store its per-item test losses (``runs/<sha>.npz``); returns its record."""
    f, net = context.params.finetune, context.params.train_task
    device = torch.device(context.device)
    seed = run_seed(run.seed, context.target, run.items)
    train = subset(context.train, run.items, run.seed, context.target)
    if run.sources:
        encoders = [copy.deepcopy(context.encoders[s]).requires_grad_(True) for s in run.sources]
    else:
        torch.manual_seed(seed + 1)
        encoders = [build_encoder(net)]
    network, groups = build_network(run, context.task, encoders, train, f, net, seed, device)
    penalty = L2SP(network, f.l2sp_alpha, f.l2sp_beta) if run.mode == "l2sp" else None
    loop = schedule_loop(f, run, seed, context.device)
    loss = TaskLoss(context.task)
    t0 = time.perf_counter()
    result = fit(network, train, loss, loop, name=f"{context.target} <- {run.label}", groups=groups, penalty=penalty)
    test_losses = evaluate_per_item(network, context.test, loss)
    record = {"run": asdict(run), "label": run.label, "mean_loss": float(test_losses.mean()),
              "epochs": loop.epochs, "items_seen": loop.epochs * loop.items_per_epoch(run.items),
              "train_loss": result.history[-1]["train_loss"]}   # no time in a stored run: its bytes are what a rerun makes
    atomic_savez(context.cache / f"{context.stamps[run.label]}.npz",
                 {"losses": np.asarray(test_losses, dtype=np.float32), "record": np.array(json.dumps(record))})
    log.info("%s <- %s: test loss %.4f (%.1f s)", context.target, run.label, record["mean_loss"], time.perf_counter() - t0)
    return record


def load_run(path: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    """A stored run, or None when it is absent or unreadable (then it is trained again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["losses"].astype(np.float32), json.loads(str(z["record"]))
    except (OSError, ValueError, KeyError):
        return None


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_stamps(runs: Sequence[Run], target: str, params: Params, models: dict[str, Path], data: str) -> dict[str, str]:
    """sha256 of everything that makes each run: code, the settings it reads, the run, the source
    checkpoints and the data (``data``: the train and test data's digest)."""
    f = params.finetune
    settings = {k: v for k, v in asdict(f).items() if k not in ("targets", "roles", "modes", "sizes", "seeds",
                                                                   "scratch_schedules", "bootstrap", "workers", "threads")}
    base = {"code": code_version()["code_sha256"], "target": target, "finetune": settings,
            "train_task": asdict(params.train_task), "data": data}
    digests = {s: file_digest(p) for s, p in models.items()}
    stamps = {}
    for run in runs:
        stamp = {**base, "run": asdict(run), "models": {s: digests[s] for s in run.sources}}
        stamps[run.label] = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:32]
    return stamps
