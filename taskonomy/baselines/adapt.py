"""Domain adaptation baselines (issue 24): a task network trained on the source domain, adapted to a
rendered target domain whose labels it never sees.

Every run is the task networks' recipe (``train_task`` with the task's own overrides, its seed
formula, :func:`taskonomy.nets.train.fit`): what differs between methods is an :class:`Objective`
added to the task loss through the loop's ``penalty``, computed from the step's source and target
representations. In training, :class:`AdaptNet` runs the encoder once over the source batch and a
batch of unlabelled target images together (BatchNorm sees both domains, as DANN trains); the target
batch of step k is drawn from a generator seeded by (seed, k), so a resumed run draws the same ones.

- ``source_only``: no objective (at ``train_task.seed`` the task network itself, reused);
- ``dann`` (Ganin et al., JMLR 2016): a domain classifier on the representation behind a gradient
  reversal layer (identity forward, -lambda x the gradient backward), lambda_p = 2 / (1 + exp(-gamma p)) - 1
  with p the training progress; the classifier minimises its loss, the encoder maximises it;
- ``entropy`` (ADVENT's direct loss, Vu et al., CVPR 2019): the mean entropy of the target
  predictions' softmax, normalised by log K (per pixel for dense classification);
- ``oracle``: the same recipe trained on the labelled target_train split.

Model selection never reads target labels: every run but the oracle keeps the epoch with the lowest
loss on ``validation_items`` of the SOURCE transfer split. The target-test loss of each epoch is
recorded too, and shown apart, marked, as what selecting on target labels would have claimed.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from taskonomy.config import Params
from taskonomy.nets.data import TaskData, decode_views
from taskonomy.nets.models import TaskNetwork, build_task_network, encode
from taskonomy.nets.train import LoopConfig, epoch_steps, evaluate_per_item, fit, task_loss, task_seed
from taskonomy.provenance import code_version
from taskonomy.storage import atomic_savez
from taskonomy.tasks import Kind, Task, Transform, get_task

log = logging.getLogger(__name__)

REFERENCES = ("source_only", "oracle")      # every adapted task gets both: the ends of "gap closed"
_TARGET_STREAM = 7_777_777                  # target batches: a stream apart from the loop's shuffling


# --------------------------------------------------------------------------------------------------
# Gradient reversal and the lambda schedule
# --------------------------------------------------------------------------------------------------

def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s schedule: 0 at the start of training, -> 1 at its end (0.99991 for gamma 10)."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * -ctx.scale, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by ``-scale``."""
    return _Reverse.apply(x, scale)


# --------------------------------------------------------------------------------------------------
# Objectives: what a method adds to the task loss
# --------------------------------------------------------------------------------------------------

class Objective(nn.Module):
    """A term added to each step's task loss, from the source and target representations (B, 1, C, h, w)
    of the step and the training progress p in [0, 1]; its parameters train with the network's."""

    def forward(self, network: TaskNetwork, source: torch.Tensor, target: torch.Tensor, progress: float) -> torch.Tensor:
        raise NotImplementedError


class DomainClassifier(nn.Module):
    """Source (0) or target (1) from a flattened representation: two fully connected layers."""

    def __init__(self, features: int, width: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(features, width), nn.ReLU(inplace=True), nn.Linear(width, 1))

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        return self.layers(rep).squeeze(1)


class DomainAdversarial(Objective):
    """DANN: ``weight`` x the domain classifier's binary cross-entropy on both domains' representations,
    seen through gradient reversal at lambda_p."""

    def __init__(self, features: int, width: int, gamma: float, weight: float):
        super().__init__()
        self.classifier = DomainClassifier(features, width)
        self.gamma, self.weight = gamma, weight

    def forward(self, network: TaskNetwork, source: torch.Tensor, target: torch.Tensor, progress: float) -> torch.Tensor:
        rep = reverse_gradient(torch.cat([source, target]), dann_lambda(progress, self.gamma))
        domain = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(rep.device)
        return self.weight * F.binary_cross_entropy_with_logits(self.classifier(rep).float(), domain)


def normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax over dim 1 divided by log K, per item and position: in [0, 1]."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1) / math.log(logits.shape[1])


class EntropyMinimisation(Objective):
    """ADVENT's direct loss: ``weight`` x the mean normalised entropy of the target predictions."""

    def __init__(self, weight: float):
        super().__init__()
        self.weight = weight

    def forward(self, network: TaskNetwork, source: torch.Tensor, target: torch.Tensor, progress: float) -> torch.Tensor:
        return self.weight * normalised_entropy(network.head(target)).mean()


def serves(method: str, task: Task) -> bool:
    """Whether ``method`` can adapt ``task`` (entropy needs a distribution output)."""
    if method == "entropy":
        return task.kind in (Kind.CLASSIFICATION, Kind.DENSE_CLASSIFICATION)
    return True


def make_objective(method: str, params: Params, rep_shape: Sequence[int]) -> Objective | None:
    """The objective of ``method`` (None for the references) for representations of ``rep_shape``."""
    a = params.adapt
    if method == "dann":
        return DomainAdversarial(int(np.prod(rep_shape)), a.domain_width, a.gamma, a.domain_weight)
    if method == "entropy":
        return EntropyMinimisation(a.entropy_weight)
    if method in REFERENCES:
        return None
    raise ValueError(f"unknown adaptation method {method!r}")


class AdaptNet(nn.Module):
    """A task network trained beside an objective: in training with a target batch set, one encoder
    pass over source and target images together; the prediction is the source part's. In eval mode,
    the task network alone."""

    def __init__(self, network: TaskNetwork, objective: Objective):
        super().__init__()
        self.network, self.objective = network, objective
        self.target: torch.Tensor | None = None        # (B, 1, 3, H, W), set before each step
        self.progress = 0.0
        self._reps: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.target is None:
            return self.network(x)
        rep = encode(self.network.encoder, torch.cat([x, self.target.to(x.device)]))
        self._reps = rep[:len(x)], rep[len(x):]
        return self.network.head(self._reps[0])

    def penalty(self) -> torch.Tensor:
        if self._reps is None:
            raise RuntimeError("AdaptNet.penalty before a training forward pass with a target batch")
        source, target = self._reps
        self._reps = None
        return self.objective(self.network, source, target, self.progress)


@dataclass
class TargetFeed:
    """``fit``'s ``on_step``: before step k, a batch of target images drawn from (seed, k) and the
    progress p = k / total steps. Only images: the target's labels never reach a method."""
    model: AdaptNet
    views: torch.Tensor          # (V, 1, 3, H, W) target_train images (uint8 as stored, or float inputs)
    batch_size: int
    total: int
    seed: int
    transform: Transform = Transform.PLAIN    # the task's input transform, applied as its batches get it

    def __call__(self, step: int, batch: Any, optimizer: torch.optim.Optimizer) -> None:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + _TARGET_STREAM + step)
        items = torch.randint(len(self.views), (self.batch_size,), generator=gen)
        self.model.target = decode_views(self.views[items], self.transform)
        self.model.progress = step / self.total


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One network of one task: method and seed."""
    task: str
    method: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.task}/{self.method}/s{self.seed}"


def plan(task: str, params: Params) -> list[Run]:
    """The task's runs: source_only, each method listing the task, oracle; at every seed."""
    a = params.adapt
    methods = ["source_only", *(m for m, tasks in a.methods.items() if task in tasks), "oracle"]
    return [Run(task, method, seed) for method in methods for seed in a.seeds]


def reused(run: Run, params: Params) -> bool:
    """Whether ``run`` is the task network itself (source_only at the task network's seed)."""
    return run.method == "source_only" and run.seed == params.train_task.seed


def task_loop(params: Params, task: str, seed: int, device: str) -> LoopConfig:
    """The task network's loop (train_task with the task's own epochs, lr, epoch items) at ``seed``."""
    own = params.tasks[task]
    return LoopConfig.from_params(params.train_task, seed=task_seed(seed, get_task(task)), epochs=own.epochs,
                                  lr=own.lr, epoch_items=own.epoch_items, device=device)


@dataclass
class Context:
    """What every run of a task shares (fork workers inherit it)."""
    train: TaskData               # source train split
    validation: TaskData          # source transfer split, its first validation_items
    source_test: TaskData
    target_test: TaskData         # labels for evaluation only
    target_views: torch.Tensor    # target_train images, no labels
    oracle: TaskData              # target_train with labels: the oracle's alone
    params: Params
    device: str
    cache: Path
    stamps: dict[str, str]


def train_run(context: Context, run: Run) -> dict[str, Any]:
    """Train one run, keep its epoch (best on source validation; the oracle its last), store its
    per-item losses on the source and the target test split."""
    params = context.params
    loop = task_loop(params, run.task, run.seed, context.device)
    task = context.train.task
    torch.manual_seed(loop.seed)
    network = build_task_network(task, params.train_task, context.train.resolution)   # the task network's init
    loss = task_loss(task)
    data = context.oracle if run.method == "oracle" else context.train
    objective = make_objective(run.method, params, (params.train_task.bottleneck_channels,
                                                    context.train.resolution // params.train_task.bottleneck_stride,
                                                    context.train.resolution // params.train_task.bottleneck_stride))
    model: nn.Module = network if objective is None else AdaptNet(network, objective)
    feed = None
    if objective is not None:
        batch_size, steps = epoch_steps(loop, len(data))
        feed = TargetFeed(model, context.target_views, batch_size, steps * loop.epochs, loop.seed, task.transform)
    best: dict[str, Any] = {"validation": float("inf")}
    epochs: list[dict[str, float]] = []

    def select(epoch: int, row: dict[str, float]) -> None:
        validation = float(evaluate_per_item(network, context.validation, loss).mean())
        # recorded to show what selecting on target labels would claim; never used to select
        on_target = float(evaluate_per_item(network, context.target_test, loss).mean())
        epochs.append({"epoch": epoch, "train_loss": row["train_loss"], "source_validation": validation,
                       "target_test": on_target})
        if run.method == "oracle" or validation < best["validation"]:
            best.update(validation=validation, epoch=epoch, state=copy.deepcopy(network.state_dict()))

    t0 = time.perf_counter()
    fit(model, data, loss, loop, name=run.label, penalty=None if objective is None else model.penalty,
        on_step=feed, on_epoch_end=select)
    network.load_state_dict(best["state"])
    source = evaluate_per_item(network, context.source_test, loss)
    target = evaluate_per_item(network, context.target_test, loss)
    record = {"run": asdict(run), "label": run.label, "epochs": loop.epochs, "selected_epoch": best["epoch"],
              "selected_on": "last epoch" if run.method == "oracle" else "source validation",
              "history": epochs}                     # no time in a stored run: its bytes are what a rerun makes
    atomic_savez(context.cache / f"{context.stamps[run.label]}.npz",
                 {"source": source.astype(np.float32), "target": target.astype(np.float32),
                  "record": np.array(json.dumps(record))})
    log.info("%s: epoch %d of %d, source %.4f, target %.4f, %.1f s", run.label, best["epoch"], loop.epochs,
             source.mean(), target.mean(), time.perf_counter() - t0)
    return record


def load_run(path: Path) -> dict[str, Any] | None:
    """A stored run (``source``, ``target`` per-item losses, ``record``), or None when absent or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {"source": z["source"].astype(np.float32), "target": z["target"].astype(np.float32),
                    "record": json.loads(str(z["record"]))}
    except (OSError, ValueError, KeyError):
        return None


def run_stamps(runs: Sequence[Run], params: Params, data: dict[str, str]) -> dict[str, str]:
    """sha256 of everything that makes each run: code, the settings it reads, the run, the data it may
    read (an adaptation method: never the target's labels, so they are not in its stamp)."""
    a = params.adapt
    objective = {"dann": {"gamma": a.gamma, "domain_weight": a.domain_weight, "domain_width": a.domain_width},
                 "entropy": {"entropy_weight": a.entropy_weight}}
    base = {"code": code_version()["code_sha256"], "train_task": asdict(params.train_task),
            "validation_items": a.validation_items}
    stamps = {}
    for r in runs:
        reads = ("source", "target_test", "oracle") if r.method == "oracle" else ("source", "target_test", "target_views")
        stamp = {**base, "run": asdict(r), "task": asdict(params.tasks[r.task]), "objective": objective.get(r.method, {}),
                 "data": {k: data[k] for k in reads}}
        stamps[r.label] = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:32]
    return stamps
