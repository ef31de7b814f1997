"""The one training loop: task networks here, transfers and baselines later.

``fit(model, data, loss_fn, cfg, name=...)`` trains any module on any data that has ``len(data)`` and
``data.batch(items) -> Batch`` (taskonomy.nets.data), with ``loss_fn(prediction, batch) -> (B,)`` per-item
losses whose mean is minimised. ``evaluate_per_item`` returns the same per-item losses on a test set,
in data order: the numbers every later comparison uses.

Guarantees:
- seeded: shuffling draws from a generator seeded by (seed, epoch); the global torch RNG (dropout) is
  seeded at the start and saved in every checkpoint; deterministic on CPU for a given thread count;
- a checkpoint after every epoch (atomic: temp file + ``os.replace``) with model, optimizer,
  scheduler, RNG states and history; a rerun finds it and resumes, ending with weights bit-identical to
  an uninterrupted run. It is stamped with what made it: the run's name and loop settings, the
  package's code (sha256 of its sources) and the caller's fingerprint (a task network's: task, its
  training data's sha256, standardisation statistics). A checkpoint stamped otherwise (after a code
  change, a re-render, another task's file) starts the run afresh with one warning naming what
  differs; an unreadable one stops with one line naming the file;
- a non-finite loss stops with a :class:`TaskonomyError` naming the run, epoch and step;
- CUDA with bf16 autocast when present (``device: auto``), CPU otherwise. On CUDA the loop is fed
  without host stalls: a :class:`TaskData` split lives on the GPU (batches are gathered and decoded
  there), inputs are channels_last, cudnn picks its kernels (``cudnn.benchmark``), AdamW is fused, and
  the running loss and the finiteness check stay on the device, read once per epoch (a non-finite
  loss still names its first step). A batch that does not fit in GPU memory, or a split that does not
  fit beside the model, is one line naming the run, the batch size and the memory.

The last section applies the loop to one task network (``train_task_network``), writes its final
checkpoint (params, code version, the training data's sha256, standardisation stats) and reads an encoder
back (``load_encoder``), refusing another task's checkpoint.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from taskonomy.config import TrainTaskParams, as_dict, from_dict
from taskonomy.nets.data import Batch, TaskData, fit_stats, load_task_data
from taskonomy.errors import DataError, TaskonomyError
from taskonomy.nets.models import Encoder, TaskNetwork, build_encoder, build_task_network
from taskonomy.provenance import code_version
from taskonomy.stage import CORES_ENV   # one name for the runner and the stages
from taskonomy.storage import atomic_path
from taskonomy.tasks import Task, per_item_loss, trivial_losses

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]   # (prediction, batch) -> (B,) per-item losses


class BatchSource(Protocol):
    def __len__(self) -> int: ...
    def batch(self, items: torch.Tensor) -> Batch: ...


@dataclass(frozen=True)
class LoopConfig:
    """Settings of one training run; ``from_params`` reads the matching keys of any params section."""
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    epoch_items: int = 0              # items per epoch, a fresh random subset each epoch; 0 = all
    optimizer: str = "adamw"          # adam | adamw | sgd (momentum 0.9)
    schedule: str = "cosine"          # cosine | step | constant, per step
    step_fraction: float = 2 / 3      # 'step': lr x 0.1 after this fraction of the steps
    grad_clip: float = 0.0            # max gradient norm; 0 disables
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda
    channels_last: bool = False       # NHWC weights: 1.3-1.7x faster task networks on CPU, slower small heads
    eval_every: int = 1               # test loss recorded every N epochs and after the last; 0 = after the last

    def items_per_epoch(self, n: int) -> int:
        """Items an epoch trains on out of ``n``: ``epoch_items`` of them, or all (0 or more than n)."""
        return min(n, self.epoch_items) if self.epoch_items else n

    @classmethod
    def from_params(cls, section: Any, **overrides: Any) -> "LoopConfig":
        known = {f.name for f in fields(cls)}
        values = {k: getattr(section, k) for k in known if hasattr(section, k)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    seconds: float = 0.0           # training time of this process (a resumed run: since resuming)
    device: str = "cpu"
    resumed_from: int = 0          # epochs found in the checkpoint


# --------------------------------------------------------------------------------------------------
# Devices, checkpoints, code version
# --------------------------------------------------------------------------------------------------

def resolve_device(name: str = "auto", key: str = "device") -> torch.device:
    """``auto``: CUDA when present, else the CPU; ``cuda`` without CUDA is one line naming ``key``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TaskonomyError(f"{key}: cuda, but no CUDA device is available here (torch {torch.__version__}); "
                             f"set it to auto or cpu")
    return torch.device(name)


def given_cores() -> int:
    """The cores this stage is given: ``TASKONOMY_CORES`` where a concurrent runner shares the machine
    out (``taskonomy repro --jobs N --share-cores``: cores / N), else every core."""
    value = os.environ.get(CORES_ENV, "").strip()
    if not value:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise TaskonomyError(f"{CORES_ENV}={value!r}: expected a whole number of cores >= 1")
    return int(value)


def set_threads(threads: int) -> None:
    """torch CPU threads; 0 keeps torch's default (all cores), or the cores this stage was given when a
    concurrent runner shares them out (:func:`given_cores`)."""
    if threads > 0:
        torch.set_num_threads(threads)
    elif os.environ.get(CORES_ENV, "").strip():
        torch.set_num_threads(given_cores())


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a crash leaves the previous file or the new one, never half of one. Serialised in
    memory first: torch names the archive inside the file after the file, and the temporary file's name
    would make every save's bytes differ; so the same payload always gives the same bytes."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint; a truncated or foreign file is one line naming it."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: no such checkpoint") from None
    except Exception as err:  # torch raises many types for a damaged file (zip, unpickling, EOF)
        raise DataError(f"{path}: corrupt or unreadable checkpoint ({type(err).__name__}); "
                        f"delete it to start over") from None
    if not isinstance(payload, dict) or not ({"model", "encoder"} & set(payload)):
        raise DataError(f"{path}: not a taskonomy checkpoint (no model state)")
    return payload


def stamp_differences(old: Any, new: dict[str, Any]) -> list[str]:
    """What made a checkpoint that differs from what would make it now, in words ([] = the same).

    A stamp holds the run's ``name``, ``loop`` settings, package ``code`` (sha256 of its sources) and
    the caller's fingerprint (for a task: ``task``, ``inputs``, the data's sha256, and ``stats``)."""
    if not isinstance(old, dict):
        return ["settings (no record of what made it)"]
    words = {"code": "code (the package's sources changed)", "inputs": "inputs (the bank's arrays changed)",
             "loop": "loop settings", "name": "run", "stats": "standardisation statistics"}
    return [words.get(key, key) for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParamGroup:
    """Parameters trained at ``lr_scale`` times the loop's learning rate (e.g. pretrained layers at 0.1)."""
    params: tuple[nn.Parameter, ...]
    lr_scale: float = 1.0


def _optimizer(model: nn.Module, cfg: LoopConfig, groups: list[ParamGroup] | None = None,
               fused: bool = False) -> torch.optim.Optimizer:
    if groups is None:
        groups = [ParamGroup(tuple(model.parameters()))]
    params = [{"params": [p for p in g.params if p.requires_grad], "lr": cfg.lr * g.lr_scale} for g in groups]
    params = [g for g in params if g["params"]]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        # fused: one kernel for every parameter on CUDA (the same update as the loop of the default)
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise TaskonomyError(f"optimizer: unknown {cfg.optimizer!r} (known: adam, adamw, sgd)")


def _schedule(cfg: LoopConfig, total_steps: int) -> Callable[[int], float]:
    if cfg.schedule == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    if cfg.schedule == "step":
        return lambda step: 0.1 if step >= cfg.step_fraction * total_steps else 1.0
    if cfg.schedule == "constant":
        return lambda step: 1.0
    raise TaskonomyError(f"schedule: unknown {cfg.schedule!r} (known: cosine, step, constant)")


NARROW_CHANNELS = 8
STRIDED_1X1_CHANNELS = 16


def _has_narrow_convs(model: nn.Module) -> bool:
    """Whether a convolution of ``model`` is one oneDNN mishandles: fewer than ``NARROW_CHANNELS`` channels
    on both sides, or a strided 1x1 convolution (a residual block's downsample) reading fewer than
    ``STRIDED_1X1_CHANNELS``."""
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return any(max(m.in_channels, m.out_channels) < NARROW_CHANNELS for m in convs) or any(
        m.kernel_size == (1, 1) and max(m.stride) > 1 and m.in_channels < STRIDED_1X1_CHANNELS for m in convs)


@contextlib.contextmanager
def cpu_kernels(model: nn.Module, device: torch.device) -> Iterator[None]:
    """oneDNN off for a model with narrow convolutions on the CPU; on otherwise.

    torch 2.14.1's oneDNN CPU convolutions corrupt the heap or spin forever with 4-channel layers on
    AVX2-only hosts: a width-4 task network aborted ("double free or corruption") or hung in most runs,
    in NCHW and NHWC alike, and never with oneDNN off. PyTorch's own kernels are 2-3x slower at the
    default widths, which never trigger it; test-sized models and the pixels trunk's 3 -> 4 layer do.
    On this AVX-512 host too, a strided 1x1 convolution reading 4, 8 or 12 channels (the small encoder's
    first downsample at width 8 or 12) aborted the same way at 64 px and more, in its backward pass
    (16, 24 and 32 channels never did).
    """
    narrow = device.type == "cpu" and _has_narrow_convs(model)
    before = torch.backends.mkldnn.enabled
    # only the one switch: torch.backends.mkldnn.flags also resets deterministic / TF32 (and warns about TF32)
    torch.backends.mkldnn.enabled = not narrow
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


GIB = 2 ** 30
DEVICE_DATA_SHARE = 0.5    # a split goes to the GPU when it takes at most this share of the free memory


def place_data(data: BatchSource, device: torch.device, name: str) -> BatchSource:
    """``data`` where the loop gathers its batches: on a GPU when it can move there (``TaskData.to``),
    so no batch waits on the host; elsewhere as it is. A split too large for the GPU's free memory is
    one line naming the run, the split's size and the memory free."""
    if device.type != "cuda" or not hasattr(data, "to") or not hasattr(data, "nbytes"):
        return data
    free, total = torch.cuda.mem_get_info(device)
    if data.nbytes > DEVICE_DATA_SHARE * free:
        raise TaskonomyError(f"{name}: the split's {data.nbytes / GIB:.1f} GiB do not fit on the GPU beside the "
                             f"model ({free / GIB:.1f} of {total / GIB:.1f} GiB free; the loop keeps a split on "
                             f"the GPU): lower render.scenes or render.resolution, or use a larger GPU")
    return data.to(device)


def out_of_memory(name: str, batch_size: int, err: BaseException) -> TaskonomyError:
    """One line for a CUDA out-of-memory error: the run, its batch size and the memory it asked for."""
    import re

    asked = re.search(r"Tried to allocate ([\d.]+ [KMGT]?i?B)", str(err))
    use = ""
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        use = f", with {torch.cuda.memory_allocated() / GIB:.1f} GiB in use of {total / GIB:.1f} GiB"
    return TaskonomyError(f"{name}: batch size {batch_size} does not fit in GPU memory (it asked for "
                          f"{asked.group(1) if asked else 'more'} more{use}); lower the stage's batch_size")


DEFERRED_CHECKS = ("cuda",)   # devices whose loss is checked once per epoch (reading back a value stalls them)


class LossWatch:
    """The epoch's running loss and its first non-finite step, kept on the loss's device.

    On the CPU each step is checked as it ends (reading a value back costs nothing); on a GPU the check
    is a device-side record read at the epoch's end, so no step waits for the host."""

    def __init__(self, device: torch.device):
        self.eager = device.type not in DEFERRED_CHECKS
        self.running = torch.zeros((), dtype=torch.float64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_value = torch.zeros((), device=device)

    def add(self, step: int, loss: torch.Tensor, objective: torch.Tensor, name: str, epoch: int) -> None:
        if self.eager:
            if not torch.isfinite(objective):
                self._fail(name, epoch, step, objective.item())
        else:
            bad = ~torch.isfinite(objective.detach()) & (self.first_bad < 0)
            self.first_bad = torch.where(bad, step, self.first_bad)
            self.bad_value = torch.where(bad, objective.detach().float(), self.bad_value)
        self.running += loss.detach().double()

    def finish(self, name: str, epoch: int) -> float:
        """The epoch's summed loss (one read); raises if a step was non-finite."""
        if not self.eager and int(self.first_bad) >= 0:
            self._fail(name, epoch, int(self.first_bad), float(self.bad_value))
        return float(self.running)

    @staticmethod
    def _fail(name: str, epoch: int, step: int, value: float) -> None:
        raise TaskonomyError(f"{name}: non-finite training loss ({value}) at epoch {epoch + 1}, "
                             f"step {step + 1}; try a lower lr or grad_clip")


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_steps(cfg: LoopConfig, n: int) -> tuple[int, int]:
    """The batch size and the steps of one epoch over ``n`` items (the ragged last batch is dropped:
    BatchNorm needs B > 1)."""
    batch_size = min(cfg.batch_size, cfg.items_per_epoch(n))
    return batch_size, cfg.items_per_epoch(n) // batch_size


def channels_last_inputs(batch: Any) -> Any:
    """``batch`` with its (B, k, 3, H, W) images NHWC per input, the layout channels_last weights run
    fastest on (CUDA; a CPU converts its inputs itself)."""
    x = batch.x
    if x.dim() != 5:
        return batch
    return batch._replace(x=x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, x.shape[:2]))


def epoch_order(seed: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    """The order of ``n`` items in ``epoch`` of a run seeded ``seed`` (with ``epoch_items``, its subset: the
    first items), on ``device``: from (seed, epoch) alone, so a resumed run and a seed of a batched model
    see what a fresh run would."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).to(device)


def fit(model: nn.Module, data: BatchSource, loss_fn: LossFn, cfg: LoopConfig, *, name: str,
        checkpoint: Path | None = None, eval_data: BatchSource | None = None,
        fingerprint: dict[str, Any] | None = None, groups: list[ParamGroup] | None = None,
        penalty: Callable[[], torch.Tensor] | None = None,
        backward: Callable[[torch.Tensor], None] | None = None,
        on_step: Callable[[int, Batch, torch.optim.Optimizer], None] | None = None,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None) -> FitResult:
    """Train ``model`` in place for ``cfg.epochs`` epochs; returns the per-epoch history.

    ``groups``: parameter groups with their learning-rate scales (default: every parameter at
    ``cfg.lr``; parameters without ``requires_grad`` are never trained). ``penalty()``: a term added to
    each step's mean loss (e.g. L2-SP); the recorded train loss is the task loss alone.

    Several losses per item (a multi-task network: ``loss_fn`` returns (B, T)): by default their mean
    is minimised; ``backward(losses)`` instead gets the step's per-task mean losses (T,) and runs the
    backward pass itself (a weighting of the tasks, or a Jacobian aggregator); the recorded train loss
    is still the mean. ``on_step(step, batch, optimizer)`` runs at the start of every step, before the
    forward pass (a probe of the current weights, e.g. TAG's lookahead); ``step`` counts from 0 over
    the whole run.

    ``name`` labels progress, logs and errors (e.g. the task). ``checkpoint``: where the per-epoch
    checkpoint lives (resumed from when present and written for the same ``fingerprint`` and ``cfg``).
    ``eval_data``: its mean per-item loss is recorded each epoch (no model selection).
    ``on_epoch_end(epoch, row)`` runs after each epoch's checkpoint is written.
    """
    if backward is not None and penalty is not None:
        raise ValueError("fit: a penalty and a backward cannot be combined (the backward owns the objective)")
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    n = len(data)
    if n == 0:
        raise TaskonomyError(f"{name}: no training items")
    batch_size, steps = epoch_steps(cfg, n)
    total = steps * cfg.epochs
    optimizer = _optimizer(model, cfg, groups, fused=cuda)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg, total))
    stamp = {"name": name, "loop": asdict(cfg), "code": code_version()["code_sha256"], **(fingerprint or {})}

    result = FitResult(device=str(device))
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        differs = stamp_differences(state.get("fingerprint"), stamp)
        if not differs and state.get("epoch", 0) <= cfg.epochs:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"])
            result.history = list(state["history"])
            start = result.resumed_from = state["epoch"]
            log.info("%s: resuming from %s after epoch %d", name, checkpoint, start)
        else:
            log.warning("%s: starting afresh: %s was written with other %s", name, checkpoint,
                        ", ".join(differs or ["epochs"]))
    if start == 0:
        torch.manual_seed(cfg.seed)

    t0 = time.perf_counter()
    placed = place_data(data, device, name)
    items_on = device if placed is not data else torch.device("cpu")   # the epoch's order where the data is
    data, eval_data = placed, None if eval_data is None else place_data(eval_data, device, name)
    if cuda:
        torch.backends.cudnn.benchmark = True     # fixed shapes: cudnn times its kernels once and keeps the best
    nhwc_inputs = cuda and cfg.channels_last
    bar = tqdm(total=total, initial=start * steps, desc=name, disable=None, leave=False)
    with cpu_kernels(model, device), _naming_oom(name, batch_size):
        for epoch in range(start, cfg.epochs):
            # ---- one epoch: shuffle from (seed, epoch), so a resumed run sees the same order (and, with
            # epoch_items, the same subset: the first items of the order)
            model.train()
            order = epoch_order(cfg.seed, epoch, n, items_on)
            watch = LossWatch(device)
            for step in range(steps):
                batch = data.batch(order[step * batch_size:(step + 1) * batch_size]).to(device)
                if nhwc_inputs:
                    batch = channels_last_inputs(batch)
                if on_step is not None:
                    on_step(epoch * steps + step, batch, optimizer)
                with autocast(device):
                    pred = model(batch.x)
                per_item = loss_fn(pred, batch).float()
                loss = per_item.mean()
                objective = loss if penalty is None else loss + penalty()
                watch.add(step, loss, objective, name, epoch)
                optimizer.zero_grad(set_to_none=True)
                if backward is None:
                    objective.backward()
                else:
                    backward(per_item.flatten(1).mean(0))
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                bar.update(1)
            # ---- epoch end: record, evaluate, checkpoint
            row = {"epoch": epoch + 1, "train_loss": watch.finish(name, epoch) / steps,
                   "lr": optimizer.param_groups[0]["lr"]}
            if eval_data is not None and _evaluates(cfg, epoch + 1):
                row["test_loss"] = float(evaluate_per_item(model, eval_data, loss_fn, device=device).mean())
            result.history.append(row)      # no time in it: a checkpoint holds only what a rerun reproduces
            bar.set_postfix(loss=f"{row['train_loss']:.4f}")
            log.info("%s: epoch %d/%d train loss %.4f%s (%.1f s)", name, epoch + 1, cfg.epochs, row["train_loss"],
                     f" test loss {row['test_loss']:.4f}" if "test_loss" in row else "", time.perf_counter() - t0)
            if checkpoint is not None:
                save_checkpoint(checkpoint, {
                    "format": 1, "fingerprint": stamp, "epoch": epoch + 1, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(), "history": result.history})
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, row)
    bar.close()
    result.seconds = time.perf_counter() - t0
    return result


def _evaluates(cfg: LoopConfig, epoch: int) -> bool:
    """Whether the test loss is recorded after ``epoch`` (from 1): every ``eval_every`` and the last."""
    return epoch == cfg.epochs or (cfg.eval_every > 0 and epoch % cfg.eval_every == 0)


@contextlib.contextmanager
def _naming_oom(name: str, batch_size: int) -> Iterator[None]:
    try:
        yield
    except torch.cuda.OutOfMemoryError as err:
        raise out_of_memory(name, batch_size, err) from None


@torch.no_grad()
def predict(model: nn.Module, data: BatchSource, items: torch.Tensor,
            device: torch.device | None = None) -> torch.Tensor:
    """The model's outputs for ``items`` (eval mode), float32 on the CPU."""
    device = device or next(model.parameters()).device
    model.eval()
    with cpu_kernels(model, device), autocast(device):
        return model(data.batch(items).to(device).x).float().cpu()


@torch.no_grad()
def evaluate_per_item(model: nn.Module, data: BatchSource, loss_fn: LossFn, *, batch_size: int = 256,
                      device: torch.device | None = None) -> np.ndarray:
    """Per-item losses of ``model`` on every item of ``data``, in data order: float32 (len(data),)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    with cpu_kernels(model, device):
        for i in range(0, len(data), batch_size):
            batch = data.batch(torch.arange(i, min(i + batch_size, len(data)))).to(device)
            with autocast(device):
                pred = model(batch.x)
            pred = tuple(p.float() for p in pred) if isinstance(pred, tuple) else pred.float()   # multi-task: one per task
            out.append(loss_fn(pred, batch).float())
    model.train(was_training)
    return torch.cat(out).cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Task networks
# --------------------------------------------------------------------------------------------------

def task_loss(task: Task) -> LossFn:
    """The loop's loss for ``task``: its per-item loss on the batch's targets (and mask)."""
    return lambda pred, batch: per_item_loss(task, pred, batch.y, batch.mask)


def task_seed(seed: int, task: Task) -> int:
    """A distinct, stable seed per task (tasks are independent draws, not copies of one init)."""
    return seed + zlib.crc32(task.name.encode())


@dataclass
class TaskRun:
    """A trained task network with its data and its per-item test losses (bank order)."""
    network: TaskNetwork
    train: TaskData
    test: TaskData
    stats: dict[str, list[float]]
    loop: LoopConfig
    fit: FitResult
    test_losses: np.ndarray        # float32 (M_test,)
    trivial_losses: np.ndarray     # float32 (M_test,): the train split's mean prediction, same loss
    inputs: str = ""               # sha256 of the training data (TaskData.digest)


def train_task_network(task: Task, train_split: Any, test_split: Any, cfg: TrainTaskParams, *,
                       epochs: int | None = None, lr: float | None = None, epoch_items: int | None = None,
                       checkpoint: Path | None = None) -> TaskRun:
    """Train ``task``'s network on the train split and evaluate it per item on the test split.

    ``epochs`` / ``lr`` / ``epoch_items`` override ``cfg`` (params.yaml ``tasks.<name>``). Standardisation statistics
    come from the train split. ``checkpoint``: the per-epoch resume file.
    """
    stats = fit_stats(task, train_split)
    train, test = load_task_data(train_split, task, stats), load_task_data(test_split, task, stats)
    seed = task_seed(cfg.seed, task)
    torch.manual_seed(seed)
    network = build_task_network(train.task, cfg, train.resolution)
    loop = LoopConfig.from_params(cfg, seed=seed, epochs=epochs, lr=lr, epoch_items=epoch_items)
    loss = task_loss(train.task)
    inputs = train.digest()
    fingerprint = {"task": task.name, "items": len(train), "stats": stats, "inputs": inputs}
    result = fit(network, train, loss, loop, name=task.name, checkpoint=checkpoint, eval_data=test,
                 fingerprint=fingerprint)
    test_losses = evaluate_per_item(network, test, loss)
    trivial = trivial_losses(train.task, train.target, test.target, test.mask).numpy().astype(np.float32)
    return TaskRun(network, train, test, stats, loop, result, test_losses, trivial, inputs)


def task_checkpoint(task: Task, cfg: TrainTaskParams, *, network: TaskNetwork | None = None,
                    encoder: Encoder | None = None, run: TaskRun | None = None,
                    params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The final checkpoint of a task network (or of the untrained ``random`` encoder)."""
    encoder = network.encoder if network is not None else encoder
    return {
        "format": 1, "task": task.name, "kind": task.kind.value,
        "train_task": as_dict(cfg), "params": params or {}, "code": code_version(),
        "encoder": encoder.state_dict(), "head": None if network is None else network.head.state_dict(),
        "out_channels": None if run is None else run.train.task.out_channels,
        "resolution": None if run is None else run.train.resolution,
        "stats": {} if run is None else run.stats,
        "inputs": None if run is None else run.inputs,
        "loop": None if run is None else asdict(run.loop),
        "history": [] if run is None else run.fit.history,
    }


def _check_task(path: Path, payload: dict[str, Any], task: str | None) -> None:
    """A task network's checkpoint under another task's name (a copied ``model.pt``) is refused."""
    if task is not None and payload.get("task") != task:
        raise DataError(f"{path}: a checkpoint of task '{payload.get('task')}', not of '{task}' "
                        f"(copied or moved?); rerun `dvc repro train_task@{task}`")


def load_encoder(path: Path, task: str | None = None) -> Encoder:
    """The encoder of a task checkpoint (``models/<task>/model.pt``), frozen and in eval mode; with
    ``task``, a checkpoint of any other task is refused."""
    payload = load_checkpoint(path)
    _check_task(path, payload, task)
    try:
        cfg = from_dict(TrainTaskParams, payload["train_task"], "train_task")
        encoder = build_encoder(cfg)
        encoder.load_state_dict(payload["encoder"])
    except (KeyError, RuntimeError, TaskonomyError) as err:
        raise DataError(f"{path}: not a task-network checkpoint of this code ({type(err).__name__})") from None
    encoder.requires_grad_(False)
    return encoder.eval()


def load_task_network(path: Path, task: Task) -> tuple[TaskNetwork, dict[str, Any]]:
    """A trained task network (eval mode) and its checkpoint payload (stats, history, params)."""
    payload = load_checkpoint(path)
    _check_task(path, payload, task.name)
    if payload.get("head") is None:
        raise DataError(f"{path}: {payload.get('task')} has no trained head")
    cfg = from_dict(TrainTaskParams, payload["train_task"], "train_task")
    network = build_task_network(task.with_outputs(payload["out_channels"]), cfg, payload["resolution"])
    network.encoder.load_state_dict(payload["encoder"])
    network.head.load_state_dict(payload["head"])
    return network.eval(), payload
