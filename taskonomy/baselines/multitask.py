"""Multi-task baselines: one shared encoder and a head per task, trained on L = sum_i w_i L_i with
sum_i w_i = 1 (stage ``multitask@<grouping>``).

Which tasks share an encoder is a *grouping*: ``taxonomy`` (each task the BIP supervises, with the
targets it serves: the first source of each chosen set), ``all`` (one network), ``random`` (groups of
the taxonomy's sizes, drawn per seed, never the taxonomy's own: the control), ``single`` (the task networks themselves, reused)
or one of the user's own (``multitask.custom``). A group of one task is its task network, reused.

How the tasks' losses combine is a *weighting* (:func:`make_weighting`):

- ``equal``: w_i = 1/T; ``fixed``: the user's ``multitask.weights``, normalised to sum 1;
- ``uncertainty`` (Kendall et al., CVPR 2018): L = sum_i exp(-s_i) L_i + s_i, s_i = log sigma_i^2
  learned with the network (its reported weights: exp(-s_i) normalised);
- ``dwa`` (Liu et al., MTAN): w_i proportional to exp(r_i / T), r_i = L_i(t-1) / L_i(t-2) over periods of
  ``dwa_period`` steps (equal weights for the first two periods);
- a Jacobian aggregator of ``torchjd`` (``upgrad``, ``mgda``, ``pcgrad``, ``cagrad``, ``nashmtl``, ...): one
  backward per task through the shared encoder, the rows of its Jacobian combined by the aggregator
  (``torchjd.autojac.mtl_backward`` + ``jac_to_grad``); each head gets its own task's gradient.

Every network trains with the project's one loop (``taskonomy.nets.train.fit``): the loss function
returns (B, T) per-item losses and the weighting runs the backward pass. Each run keeps the epoch of
lowest validation loss (the mean over tasks of the loss relative to the input-blind predictor's, on
items of the transfer split: never the test split) and is then evaluated per test image.

The all-in-one runs also measure TAG's inter-task affinity (Fifty et al., NeurIPS 2021,
:class:`TagProbe`): every ``tag_every`` steps, Z(i -> j) = 1 - L_j(theta'_i) / L_j(theta) on the
step's batch, theta'_i = the shared weights after a lookahead step on task i's loss alone.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from taskonomy.config import (JACOBIAN_WEIGHTINGS, MULTITASK_GROUPINGS, MULTITASK_WEIGHTINGS, MultitaskParams,
                              Params, TrainTaskParams)
from taskonomy.errors import ParamsError
from taskonomy.nets.data import Batch, TaskData, hash_tensors
from taskonomy.nets.models import Encoder, build_encoder, build_head, encode
from taskonomy.nets.train import LoopConfig, evaluate_per_item, fit
from taskonomy.provenance import code_version
from taskonomy.storage import atomic_savez
from taskonomy.tasks import Task, Transform, per_item_loss

log = logging.getLogger(__name__)

# torchjd aggregators by the name params use: (class name, keyword arguments)
JD_AGGREGATORS = {
    "upgrad": ("UPGrad", {}), "mgda": ("MGDA", {}), "pcgrad": ("PCGrad", {}), "cagrad": ("CAGrad", {"c": 0.5}),
    "nashmtl": ("NashMTL", {}), "imtlg": ("IMTLG", {}), "alignedmtl": ("AlignedMTL", {}),
    "dualproj": ("DualProj", {}), "graddrop": ("GradDrop", {}), "config": ("ConFIG", {}),
    "gradvac": ("GradVac", {}),
}
assert tuple(JD_AGGREGATORS) == JACOBIAN_WEIGHTINGS     # the names params accept


# --------------------------------------------------------------------------------------------------
# Which tasks can share an encoder, and the groupings
# --------------------------------------------------------------------------------------------------

def exclusion(task: Task) -> str:
    """Why ``task`` cannot join a multi-task network fed one image per item ('' when it can)."""
    if not task.trainable:
        return "an untrained source: no loss to learn"
    if task.n_views != 1 or task.index is not None:
        return (f"its items are {task.n_views}-view tuples, not one image: one batch cannot feed it "
                f"and the single-image heads the same inputs")
    if task.transform is not Transform.PLAIN:
        return f"its input is the {task.transform.value} image, not the image the other heads see"
    return ""


Group = tuple[str, ...]


def taxonomy_groups(solution: dict, tasks: Sequence[str]) -> list[Group]:
    """Each task the solution supervises with the targets it serves (first source of their chosen
    set), restricted to ``tasks``; a task of ``tasks`` the solution does not cover is a group alone."""
    members: dict[str, list[str]] = {s: [s] for s in solution.get("supervised", [])}
    for target, sources in solution.get("transfers", {}).items():
        members.setdefault(sources[0], []).append(target)
    groups = [tuple(t for t in tasks if t in m) for m in members.values()]
    covered = {t for g in groups for t in g}
    groups += [(t,) for t in tasks if t not in covered]
    return _ordered([g for g in groups if g], tasks)


def random_groups(sizes: Sequence[int], tasks: Sequence[str], seed: int,
                  avoid: Sequence[Group] | None = None) -> list[Group]:
    """Groups of ``sizes`` drawn from ``tasks`` by ``seed`` (a control of the same shape); a draw equal
    to ``avoid`` (the taxonomy's groups) is drawn again, unless no other grouping of these sizes exists."""
    avoid = None if avoid is None else _ordered(list(avoid), tasks)
    for attempt in range(1000):
        order = list(tasks)
        random.Random(zlib.crc32(f"multitask-random:{seed}:{attempt}".encode())).shuffle(order)
        groups, start = [], 0
        for size in sizes:
            groups.append(tuple(order[start:start + size]))
            start += size
        groups = _ordered(groups, tasks)
        if groups != avoid:
            return groups
    return groups                     # every draw was the taxonomy's: no other grouping has these sizes


def _ordered(groups: list[Group], tasks: Sequence[str]) -> list[Group]:
    """Tasks within a group in params order; groups by their first task's position."""
    rank = {t: i for i, t in enumerate(tasks)}
    groups = [tuple(sorted(g, key=rank.__getitem__)) for g in groups]
    return sorted(groups, key=lambda g: rank[g[0]])


def make_groups(grouping: str, m: MultitaskParams, solution: dict | None, seed: int) -> list[Group]:
    """The groups of ``grouping`` over ``m.tasks`` at ``seed`` (only ``random`` depends on it)."""
    tasks = list(m.tasks)
    if grouping == "single":
        return [(t,) for t in tasks]
    if grouping == "all":
        return [tuple(tasks)]
    if grouping in ("taxonomy", "random"):
        groups = taxonomy_groups(solution or {}, tasks)
        if grouping == "random":
            groups = random_groups(sorted((len(g) for g in groups), reverse=True), tasks, seed, avoid=groups)
        return groups
    if grouping in m.custom:
        listed = [tuple(g) for g in m.custom[grouping]]
        covered = {t for g in listed for t in g}
        return _ordered(listed + [(t,) for t in tasks if t not in covered], tasks)
    raise ParamsError(f"multitask.groupings: unknown grouping {grouping!r} "
                      f"(known: {', '.join([*MULTITASK_GROUPINGS, *m.custom])})")


def group_name(group: Group) -> str:
    return "+".join(group)


# --------------------------------------------------------------------------------------------------
# Data and network
# --------------------------------------------------------------------------------------------------

class Targets(tuple):
    """One tensor (or None) per task, moved to a device together (a ``Batch``'s ``y`` and ``mask``)."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Targets":
        return Targets(None if t is None else t.to(device, non_blocking=non_blocking) for t in self)


@dataclass(frozen=True)
class MultiTaskData:
    """The same images with every task's labels: a batch is the images once and a target per task."""
    parts: tuple[TaskData, ...]

    def __post_init__(self):
        first = self.parts[0]
        for part in self.parts[1:]:
            if part.views is not first.views and not torch.equal(part.views, first.views):
                raise ValueError(f"{part.task.name}: its inputs differ from {first.task.name}'s")
            if not torch.equal(part.index, first.index):
                raise ValueError(f"{part.task.name}: its items differ from {first.task.name}'s")

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(p.task for p in self.parts)

    @property
    def resolution(self) -> int:
        return self.parts[0].resolution

    def __len__(self) -> int:
        return len(self.parts[0])

    def batch(self, items: torch.Tensor) -> Batch:
        x = self.parts[0].batch(items).x
        return Batch(x, Targets(p.target[items] for p in self.parts),
                     Targets(None if p.mask is None else p.mask[items] for p in self.parts))

    def subset(self, items: torch.Tensor) -> "MultiTaskData":
        return MultiTaskData(tuple(p.subset(items) for p in self.parts))

    def digest(self) -> str:
        """sha256 of the shared inputs, hashed once, and of every task's name, targets and mask (what
        ``TaskData.digest`` covers, without hashing the same images once per task)."""
        h = hashlib.sha256(self.parts[0].digest().encode())
        for part in self.parts[1:]:
            h.update(part.task.name.encode())
            hash_tensors(h, part.target, part.mask)
        return h.hexdigest()


@dataclass(frozen=True)
class MultiTaskLoss:
    """``(predictions, batch) -> (B, T)``: every task's per-item loss, picklable."""
    tasks: tuple[Task, ...]

    def __call__(self, preds: Sequence[torch.Tensor], batch: Batch) -> torch.Tensor:
        return torch.stack([per_item_loss(t, p, y, m) for t, p, y, m in zip(self.tasks, preds, batch.y, batch.mask)], 1)


class MultiTaskNetwork(nn.Module):
    """One encoder (on the image) -> a head per task; ``weighting`` combines the tasks' losses.

    In training mode the last shared representation is kept (``features``) for a Jacobian aggregator.
    """

    def __init__(self, encoder: Encoder, heads: dict[str, nn.Module], weighting: "Weighting"):
        super().__init__()
        self.encoder, self.heads, self.weighting = encoder, nn.ModuleDict(heads), weighting
        self.features: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:    # (B, 1, 3, H, W)
        rep = encode(self.encoder, x)
        self.features = rep if self.training else None
        return tuple(head(rep) for head in self.heads.values())

    def backward(self, losses: torch.Tensor) -> None:
        """The step's backward pass for per-task mean losses (T,), as the weighting has it."""
        self.weighting.backward(losses, self)


def build_network(tasks: Sequence[Task], weighting: "Weighting", net: TrainTaskParams, resolution: int,
                  seed: int) -> MultiTaskNetwork:
    """A fresh encoder and heads of the task networks' architecture (``train_task``), seeded."""
    torch.manual_seed(seed)
    encoder = build_encoder(net)
    heads = {t.name: build_head(t, encoder.out_channels, resolution // net.bottleneck_stride, net) for t in tasks}
    return MultiTaskNetwork(encoder, heads, weighting)


# --------------------------------------------------------------------------------------------------
# Weightings
# --------------------------------------------------------------------------------------------------

class Weighting(nn.Module):
    """How T losses make one update. ``weights()`` (T,) sum to 1 (those in effect now, for the record)."""

    def __init__(self, n_tasks: int):
        super().__init__()
        self.n_tasks = n_tasks

    def weights(self) -> torch.Tensor:
        raise NotImplementedError

    def objective(self, losses: torch.Tensor) -> torch.Tensor:
        return (self.weights().to(losses.device).detach() * losses).sum()

    def backward(self, losses: torch.Tensor, network: MultiTaskNetwork) -> None:
        self.objective(losses).backward()


class FixedWeighting(Weighting):
    """Constant weights, normalised to sum 1 (equal: 1/T each)."""

    def __init__(self, weights: Sequence[float]):
        super().__init__(len(weights))
        w = torch.as_tensor(weights, dtype=torch.float32)
        if (w < 0).any() or not w.sum() > 0:
            raise ParamsError(f"multitask.weights: must be >= 0 and sum to a positive number, got {w.tolist()}")
        self.register_buffer("w", w / w.sum())

    def weights(self) -> torch.Tensor:
        return self.w


class UncertaintyWeighting(Weighting):
    """Kendall et al.: sum_i exp(-s_i) L_i + s_i with learned log-variances s (initially 0)."""

    def __init__(self, n_tasks: int):
        super().__init__(n_tasks)
        self.log_var = nn.Parameter(torch.zeros(n_tasks))

    def weights(self) -> torch.Tensor:
        return torch.softmax(-self.log_var.detach(), 0)

    def objective(self, losses: torch.Tensor) -> torch.Tensor:
        s = self.log_var.to(losses.device)
        return (torch.exp(-s) * losses + s).sum()


class DWAWeighting(Weighting):
    """Dynamic weight average over periods of ``period`` steps: w = softmax(r / temperature), r_i = the
    ratio of task i's mean loss in the last two periods; equal until two periods have passed."""

    def __init__(self, n_tasks: int, temperature: float = 2.0, period: int = 20):
        super().__init__(n_tasks)
        self.temperature, self.period = temperature, period
        self.register_buffer("w", torch.full((n_tasks,), 1.0 / n_tasks))
        self.register_buffer("running", torch.zeros(n_tasks, dtype=torch.float64))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("history", torch.zeros(2, n_tasks, dtype=torch.float64))
        self.register_buffer("periods", torch.zeros((), dtype=torch.long))

    def weights(self) -> torch.Tensor:
        return self.w

    def objective(self, losses: torch.Tensor) -> torch.Tensor:
        out = (self.w.to(losses.device) * losses).sum()
        self.running += losses.detach().double().to(self.running.device)
        self.steps += 1
        if int(self.steps) % self.period == 0:
            self.history = torch.stack([self.history[1], self.running / self.period])
            self.running.zero_()
            self.periods += 1
            if int(self.periods) >= 2:
                ratio = self.history[1] / self.history[0].clamp(min=1e-12)
                self.w = torch.softmax(ratio / self.temperature, 0).float()
        return out


class JacobianWeighting(Weighting):
    """A torchjd aggregator over the Jacobian of the T losses with respect to the shared encoder."""

    def __init__(self, n_tasks: int, name: str):
        super().__init__(n_tasks)
        self.name = name
        self.aggregator = jd_aggregator(name, n_tasks)
        self.register_buffer("w", torch.full((n_tasks,), 1.0 / n_tasks))

    def weights(self) -> torch.Tensor:
        return self.w

    def backward(self, losses: torch.Tensor, network: MultiTaskNetwork) -> None:
        from torchjd.autojac import jac_to_grad, mtl_backward

        shared = [p for p in network.encoder.parameters() if p.requires_grad]
        heads = [[p for p in h.parameters() if p.requires_grad] for h in network.heads.values()]
        mtl_backward(list(losses), features=network.features, tasks_params=heads, shared_params=shared,
                     retain_graph=True)     # the losses are slices of one stacked tensor: its graph is walked per task
        weights = jac_to_grad(shared, self.aggregator)
        if weights is not None and weights.sum().abs() > 0:     # the aggregator's own weights, as shares
            self.w = (weights.detach().float().cpu() / weights.detach().sum().cpu()).to(self.w.device)


def jd_aggregator(name: str, n_tasks: int):
    """torchjd's aggregator ``name`` (one line naming what to install when it, or its solver, is missing)."""
    if name not in JD_AGGREGATORS:
        raise ParamsError(f"multitask.weightings: unknown {name!r} (known: "
                          f"{', '.join([*MULTITASK_WEIGHTINGS, *JD_AGGREGATORS])})")
    try:
        import torchjd.aggregation as aggregation
    except ImportError:
        raise ParamsError(f"multitask.weightings: {name!r} needs the torchjd library, which is not installed "
                          f"(pip install 'taskonomy[mtl]')") from None
    cls, kwargs = JD_AGGREGATORS[name]
    kwargs = {**kwargs, "n_tasks": n_tasks} if cls == "NashMTL" else kwargs
    try:
        aggregator = getattr(aggregation, cls)(**kwargs)
        aggregator(torch.eye(n_tasks, 3))            # solvers are imported on first use
    except ImportError as err:
        raise ParamsError(f"multitask.weightings: {name!r} needs a solver that is not installed ({err})") from None
    return aggregator


def make_weighting(name: str, group: Group, m: MultitaskParams) -> Weighting:
    """The weighting ``name`` for the tasks of ``group``."""
    if name == "equal":
        return FixedWeighting([1.0] * len(group))
    if name == "fixed":
        weights = [m.weights.get(t, 1.0) for t in group]
        if not sum(weights) > 0:
            raise ParamsError(f"multitask.weights: the weights of group {group_name(group)} sum to {sum(weights)}; "
                              f"they must sum to a positive number")
        return FixedWeighting(weights)
    if name == "uncertainty":
        return UncertaintyWeighting(len(group))
    if name == "dwa":
        return DWAWeighting(len(group), m.dwa_temperature, m.dwa_period)
    return JacobianWeighting(len(group), name)


# --------------------------------------------------------------------------------------------------
# TAG's lookahead affinity
# --------------------------------------------------------------------------------------------------

class TagProbe:
    """Inter-task affinity by lookahead (TAG), every ``every`` steps, on the step's batch.

    Z[i, j] = 1 - L_j(theta'_i) / L_j(theta): theta'_i moves only the shared encoder, by the update
    the optimiser would make from task i's share of the equal-weight loss alone, (1/T) grad L_i (Adam /
    AdamW: divided by the optimiser's current second-moment estimate, at the current learning rate;
    SGD: the plain step). Taking the whole grad L_i instead overshoots: T times a normal Adam step.
    Forward passes use copies of the BatchNorm buffers and a forked RNG (the same dropout draws for
    each), so training is bit-identical with or without the probe. It runs in the all-in-one runs of
    the first listed weighting.
    """

    def __init__(self, network: MultiTaskNetwork, loss_fn: Callable, every: int):
        self.network, self.loss_fn, self.every = network, loss_fn, every
        n = len(network.heads)
        self.total = torch.zeros(n, n, dtype=torch.float64)
        self.count = 0

    @property
    def affinity(self) -> np.ndarray:
        """The mean Z over the probes so far (T, T), source i in rows, target j in columns."""
        return (self.total / max(self.count, 1)).numpy()

    def _losses(self, overrides: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        net = self.network
        state = {**dict(net.named_parameters()), **{k: v.clone() for k, v in net.named_buffers()}, **overrides}
        torch.manual_seed(0)                         # the same dropout draws for every forward
        preds = torch.func.functional_call(net, state, (batch.x,))
        return self.loss_fn(preds, batch).float().mean(0)

    def __call__(self, step: int, batch: Batch, optimizer: torch.optim.Optimizer) -> None:
        if self.every <= 0 or step % self.every:
            return
        shared = {f"encoder.{k}": p for k, p in self.network.encoder.named_parameters() if p.requires_grad}
        group = optimizer.param_groups[0]
        if "betas" in group and not optimizer.state.get(next(iter(shared.values()))):
            return                                   # Adam before its first step: no second moments yet
        devices = [batch.x.device] if batch.x.is_cuda else []
        with torch.random.fork_rng(devices=devices):
            base = self._losses({}, batch)
            grads = [torch.autograd.grad(base[i], list(shared.values()), retain_graph=True, allow_unused=True)
                     for i in range(len(base))]
            base = base.detach()
            with torch.no_grad():
                share = 1.0 / len(grads)           # task i's part of the equal-weight objective
                for i, g in enumerate(grads):
                    moved = {k: p - share * self._step(p, gi, optimizer, group) for (k, p), gi in zip(shared.items(), g)}
                    after = self._losses(moved, batch)
                    self.total[i] += (1 - after / base.clamp(min=1e-12)).double().cpu()
        self.count += 1

    @staticmethod
    def _step(p: torch.Tensor, g: torch.Tensor | None, optimizer: torch.optim.Optimizer, group: dict) -> torch.Tensor:
        if g is None:
            return torch.zeros_like(p)
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" in state:
            beta2, eps = group["betas"][1], group["eps"]
            steps = float(state["step"])
            denom = (state["exp_avg_sq"] / (1 - beta2 ** steps)).sqrt() + eps
            return group["lr"] * g / denom
        return group["lr"] * g


# --------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One multi-task network: its group of tasks, weighting and seed (in one grouping)."""
    grouping: str
    group: Group
    weighting: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.grouping}/{group_name(self.group)}/{self.weighting}/s{self.seed}"


def probes(run: Run, m: MultitaskParams) -> bool:
    """Whether TAG's probe runs in ``run``: the all-in-one runs of the first listed weighting."""
    return run.grouping == "all" and run.weighting == m.weightings[0] and m.tag_every > 0


def run_seed(seed: int, group: Group) -> int:
    """The seed of a group's networks: the same initialisation and batches for every weighting."""
    return zlib.crc32(f"multitask:{seed}:{group_name(group)}".encode()) & 0x7FFFFFFF


def group_loop(m: MultitaskParams, params: Params, group: Group, seed: int, device: str) -> LoopConfig:
    """The group's loop: the task networks' settings (``train_task``, with the tasks' own epochs and
    epoch items; a group trains as long as its longest member, at its members' highest rate). At ``compute: labels`` every task sees
    as many labelled items as alone, one image feeding every head; at ``compute: passes`` the group
    runs as many encoder passes as its tasks' networks together (T times the epochs)."""
    net = params.train_task
    epochs = max(params.tasks[t].epochs or net.epochs for t in group)
    items = max(params.tasks[t].epoch_items if params.tasks[t].epoch_items is not None else net.epoch_items
                for t in group)
    lr = max(params.tasks[t].lr or net.lr for t in group)
    if m.compute == "passes":
        epochs *= len(group)
    return LoopConfig.from_params(net, epochs=epochs, epoch_items=items, lr=lr, seed=seed, device=device)


@dataclass
class Context:
    """What every run of a grouping shares (fork workers inherit it)."""
    train: dict[str, TaskData]                   # task -> train split data (shared views)
    validation: dict[str, TaskData]              # task -> validation items
    test: dict[str, TaskData]
    trivial: dict[str, float]                    # task -> validation loss of the input-blind predictor
    params: Params
    device: str
    cache: Path
    stamps: dict[str, str]


def validation_score(losses: np.ndarray, group: Group, trivial: dict[str, float]) -> float:
    """Mean over the group's tasks of the validation loss relative to the input-blind predictor's."""
    return float(np.mean([losses[:, i].mean() / trivial[t] for i, t in enumerate(group)]))


def train_run(context: Context, run: Run) -> dict[str, Any]:
    """Train one multi-task network, keep its best validation epoch, store its per-item test losses."""
    m, net = context.params.multitask, context.params.train_task
    seed = run_seed(run.seed, run.group)
    train = MultiTaskData(tuple(context.train[t] for t in run.group))
    validation = MultiTaskData(tuple(context.validation[t] for t in run.group))
    test = MultiTaskData(tuple(context.test[t] for t in run.group))
    weighting = make_weighting(run.weighting, run.group, m)
    network = build_network(train.tasks, weighting, net, train.resolution, seed)
    loss = MultiTaskLoss(train.tasks)
    loop = group_loop(m, context.params, run.group, seed, context.device)
    probe = TagProbe(network, loss, m.tag_every) if probes(run, m) else None
    best: dict[str, Any] = {"score": float("inf")}
    weights: list[list[float]] = []

    def select(epoch: int, row: dict[str, float]) -> None:
        score = validation_score(evaluate_per_item(network, validation, loss), run.group, context.trivial)
        row["validation"] = score
        weights.append([round(float(w), 6) for w in network.weighting.weights()])
        if score < best["score"]:
            best.update(score=score, epoch=epoch, state=copy.deepcopy(network.state_dict()))

    t0 = time.perf_counter()
    result = fit(network, train, loss, loop, name=run.label, backward=network.backward, on_step=probe,
                 on_epoch_end=select)
    network.load_state_dict(best["state"])
    test_losses = evaluate_per_item(network, test, loss)              # (M, T)
    record = {"run": asdict(run), "label": run.label, "epochs": loop.epochs, "selected_epoch": best["epoch"],
              "validation": best["score"], "weights": weights,
              "mean_loss": {t: float(test_losses[:, i].mean()) for i, t in enumerate(run.group)},
              "history": result.history, "tag_probes": 0 if probe is None else probe.count}
    arrays = {"losses": np.asarray(test_losses, dtype=np.float32), "record": np.array(json.dumps(record))}
    if probe is not None:
        arrays["tag"] = probe.affinity.astype(np.float64)
    atomic_savez(context.cache / f"{context.stamps[run.label]}.npz", arrays)
    log.info("%s: selected epoch %d of %d, %.1f s", run.label, best["epoch"], loop.epochs, time.perf_counter() - t0)
    return record


def load_run(path: Path) -> dict[str, Any] | None:
    """A stored run (``losses`` (M, T), ``record``, ``tag`` when measured), or None when absent or
    unreadable (then it is trained again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {"losses": z["losses"].astype(np.float32), "record": json.loads(str(z["record"]))}
            if "tag" in z.files:
                out["tag"] = z["tag"]
            return out
    except (OSError, ValueError, KeyError):
        return None


def run_stamps(runs: Sequence[Run], params: Params, data: str) -> dict[str, str]:
    """sha256 of everything that makes each run: code, the settings it reads, the run, the data."""
    m = params.multitask
    settings = {k: v for k, v in asdict(m).items()
                if k not in ("tasks", "groupings", "weightings", "seeds", "custom", "budget", "max_order",
                             "bootstrap", "workers", "threads")}
    base = {"code": code_version()["code_sha256"], "multitask": settings, "train_task": asdict(params.train_task),
            "data": data}
    stamps = {}
    for r in runs:   # a run's own tasks' entries (their epochs, lr), not every task's
        stamp = {**base, "run": asdict(r), "tag": probes(r, m), "tasks": {t: asdict(params.tasks[t]) for t in r.group}}
        stamps[r.label] = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:32]
    return stamps
