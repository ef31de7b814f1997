"""A task's inputs and targets, from one split of the bank into tensors in RAM.

``load_task_data(split, task, stats)`` turns the bank's arrays (docs/bank-format.md) into a
:class:`TaskData`: the transformed input ``views`` once per bank view, an ``index`` of which views make
each item (pairs, triplets; one view per item otherwise), the encoded ``target`` and, for masked dense
tasks, the validity ``mask``. A batch is ``views[index[items]]``: (B, k, 3, h, w) with k = the task's
number of encoder inputs. A transfer can encode ``views`` once per source and gather items the same way.

Memory follows the bank's own bytes: images stay uint8 in ``views`` (the bank's dtype) and become float
inputs one batch at a time (:func:`decode_views`: [-1, 1], then the task's centre mask or grayscale), on
whatever device the data lives on (``TaskData.to``: the whole split on a GPU). Only inputs that are not
functions of the stored bytes alone are float32 for the whole split: denoise's noisy images (noise fixed
per view) and jigsaw's tiles. Segment samples are drawn a chunk of items at a time.

Standardisation statistics come from the train split (:func:`fit_stats`) and travel with the model
checkpoint, so the transfer and test splits are encoded with the train split's numbers.

Input transforms are deterministic: noise is drawn from a generator seeded by (split seed, view index),
jigsaw tiles follow the stored permutation index. Images are rescaled to [-1, 1] as in Taskonomy.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Mapping, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from taskonomy.errors import DataError
from taskonomy.tasks import IGNORE_INDEX, METRIC_PIXELS, Encoding, Task, Transform

NOISE_STD = 0.1         # Taskonomy's denoise: skimage random_noise with var 0.01, on [0, 1]
TILE_GRID = 3           # jigsaw: 3 x 3 cells
_SEGMENT_SEED = 7919    # pixel samples of the metric loss: a stream of their own
SAMPLE_CHUNK = 256      # items whose segment samples are drawn at once


class Batch(NamedTuple):
    """What the training loop feeds a model (``x``) and a loss (all three)."""
    x: torch.Tensor                    # (B, k, C, h, w) encoder inputs, or representations for a transfer
    y: torch.Tensor                    # encoded targets, (B, ...)
    mask: torch.Tensor | None = None   # (B, 1, H, W) bool for masked dense tasks

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(None if t is None else t.to(device, non_blocking=True) for t in self))


def hash_tensors(h: "hashlib._Hash", *tensors: torch.Tensor | None) -> None:
    """Feed each tensor's dtype, shape and bytes to the hash ``h`` (None is skipped)."""
    for t in tensors:
        if t is not None:
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.contiguous().view(-1).view(torch.uint8).numpy().data)


@dataclass(frozen=True)
class TaskData:
    """One split of one task. ``task`` has its output size resolved from the bank."""
    task: Task
    views: torch.Tensor          # (V, k_v, 3, h, w) per bank view (k_v = 9 tiles or 1): uint8 images, or float32
                                 # inputs (noisy images, tiles, a transfer's representations)
    index: torch.Tensor          # (M, n) long: the views of each item, in bank order
    target: torch.Tensor         # (M, ...) encoded target
    mask: torch.Tensor | None    # (M, 1, H, W) bool, or None

    def __len__(self) -> int:
        return self.index.shape[0]

    @property
    def resolution(self) -> int:
        return self.views.shape[-1]

    def batch(self, items: torch.Tensor) -> Batch:
        items = torch.as_tensor(items, device=self.index.device)
        x = decode_views(self.views[self.index[items]], self.task.transform)   # (B, n, k_v, 3, h, w)
        return Batch(x.flatten(1, 2), self.target[items],     # (B, k, 3, h, w)
                     None if self.mask is None else self.mask[items])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.views, self.index, self.target, self.mask) if t is not None)

    def to(self, device: torch.device | str) -> "TaskData":
        """The same split with every tensor on ``device`` (batches are then gathered and decoded there)."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, views=move(self.views), index=move(self.index), target=move(self.target),
                       mask=move(self.mask))

    def digest(self) -> str:
        """sha256 of everything the split feeds a network: views, item index, targets, mask."""
        h = hashlib.sha256()
        hash_tensors(h, self.views, self.index, self.target, self.mask)
        return h.hexdigest()

    def subset(self, items: torch.Tensor | np.ndarray) -> "TaskData":
        """The same data restricted to ``items`` (in the given order); views are shared."""
        items = torch.as_tensor(items, dtype=torch.long)
        return replace(self, index=self.index[items], target=self.target[items],
                       mask=None if self.mask is None else self.mask[items])


# --------------------------------------------------------------------------------------------------
# Bank access
# --------------------------------------------------------------------------------------------------

def _split_name(split: Any) -> str:
    return str(getattr(split, "path", None) or split.manifest.get("split", "?"))


def _array(split: Any, name: str, task: Task) -> np.ndarray:
    """A bank array needed by ``task``; a missing one is one line naming the task and the file."""
    if name not in split.arrays:
        raise DataError(f"{task.name}: {_split_name(split)}/{name}.npy is missing from the bank")
    return split.arrays[name]


def n_outputs(task: Task, split: Any) -> int:
    """The task's output size: fixed by its record, or its number of classes from the bank."""
    if task.out_channels > 0:
        return task.out_channels
    where, _, key = task.classes.partition(":")
    if where == "manifest":
        found = split.manifest.get(key)
        if not isinstance(found, list) or not found:
            raise DataError(f"{task.name}: {_split_name(split)}/manifest.json has no list {key!r} of class names")
        return len(found)
    if where == "rows":
        return int(_array(split, key, task).shape[0])
    if where == "columns":
        return int(_array(split, task.label, task).shape[1])
    raise ValueError(f"{task.name}: bad class source {task.classes!r}")


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------

def _image(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (N, 3, R, R) -> float32 in [-1, 1]."""
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32)) / 127.5 - 1


def jigsaw_tiles(image: torch.Tensor, perms: torch.Tensor) -> torch.Tensor:
    """(N, 3, R, R) images, (N, 9) permutations -> (N, 9, 3, R//2, R//2) tiles.

    Tile i shows grid cell ``perm[i]`` (row-major cells of side R//3, no jitter), resized to R//2 so
    that nine tiles cost about two images through the encoder (Taskonomy resized each to full size).
    """
    n, c, r, _ = image.shape
    cell, tile = r // TILE_GRID, r // 2
    grid = image[:, :, :cell * TILE_GRID, :cell * TILE_GRID]
    cells = grid.reshape(n, c, TILE_GRID, cell, TILE_GRID, cell)          # (N, C, gy, cy, gx, cx)
    cells = cells.permute(0, 2, 4, 1, 3, 5).reshape(n, TILE_GRID ** 2, c, cell, cell)
    shuffled = cells[torch.arange(n)[:, None], perms]                      # (N, 9, C, cell, cell)
    tiles = F.interpolate(shuffled.flatten(0, 1), size=(tile, tile), mode="bilinear", align_corners=False)
    return tiles.view(n, TILE_GRID ** 2, c, tile, tile)


STORED = (Transform.PLAIN, Transform.CENTRE_MASK, Transform.GRAYSCALE)   # inputs decoded from uint8 per batch
_LUMA = (0.299, 0.587, 0.114)


def decode_views(views: torch.Tensor, transform: Transform) -> torch.Tensor:
    """uint8 images (..., 3, R, R) -> the task's float32 input in [-1, 1] (centre masked, or grayscale,
    as ``transform`` says), on their device; float inputs (already transformed) pass unchanged."""
    if views.dtype != torch.uint8:
        return views
    image = views.float() / 127.5 - 1
    if transform is Transform.CENTRE_MASK:
        r = image.shape[-1]
        image[..., r // 4:3 * r // 4, r // 4:3 * r // 4] = 0
    elif transform is Transform.GRAYSCALE:
        lum = torch.tensor(_LUMA, device=image.device).view(3, 1, 1)
        image = (image * lum).sum(-3, keepdim=True).expand(image.shape).contiguous()
    return image


def input_views(task: Task, split: Any) -> torch.Tensor:
    """The encoder input for every bank view of ``split``: (V, k_v, 3, h, w), the stored uint8 images
    for the transforms :func:`decode_views` applies per batch, else float32."""
    if task.transform in STORED:
        return torch.from_numpy(np.array(_array(split, "rgb", task), dtype=np.uint8)).unsqueeze(1)
    image = _image(_array(split, "rgb", task))                             # (V, 3, R, R)
    if task.transform is Transform.NOISY:
        seed = int(split.manifest.get("seed", 0))
        noise = np.stack([np.random.default_rng([seed, v]).standard_normal(image.shape[1:], dtype=np.float32)
                          for v in range(image.shape[0])])
        image = (image + torch.from_numpy(noise) * (2 * NOISE_STD)).clamp(-1, 1)  # std 0.1 on [0, 1]
    elif task.transform is Transform.TILES:
        perms = torch.from_numpy(np.array(_array(split, "jigsaw_permutations", task), dtype=np.int64))
        labels = torch.from_numpy(np.array(_array(split, task.label, task), dtype=np.int64))
        return jigsaw_tiles(image, perms[labels])
    return image.unsqueeze(1)


# --------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------

def _raw_target(task: Task, split: Any, limit: int | None = None) -> torch.Tensor:
    raw = np.asarray(_array(split, task.label, task)[:limit])
    if task.encoding is Encoding.LOG_CENTERED:
        log = torch.from_numpy(np.log(np.maximum(raw.astype(np.float32), 1e-3)))  # (N, C, H, W)
        return log - log.mean(dim=(2, 3), keepdim=True)
    if task.encoding is Encoding.SIGNED_LOG:
        x = torch.from_numpy(raw.astype(np.float32))
        return x.sign() * x.abs().log1p()
    if task.encoding is Encoding.AXES:
        v = torch.from_numpy(raw.astype(np.float32)).view(raw.shape[0], -1, 3)  # (N, axes, 3)
        outer = v.unsqueeze(3) * v.unsqueeze(2)                                 # (N, axes, 3, 3)
        i, j = torch.triu_indices(3, 3)
        return outer[:, :, i, j].flatten(1)                                     # (N, axes * 6)
    if task.encoding in (Encoding.ZSCORE, Encoding.SOFT):
        return torch.from_numpy(raw.astype(np.float32))
    # class and segment ids keep the bank's integer type (losses take them as long per batch)
    return torch.from_numpy(np.array(raw) if raw.dtype in _COMPACT_IDS else raw.astype(np.int64))


_COMPACT_IDS = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.int32, np.int64))


STATS_ITEMS = 4096   # standardisation statistics come from at most this many labels of the split (the first)


def fit_stats(task: Task, split: Any) -> dict[str, list[float]]:
    """Per-channel mean and std of a continuous target on (normally) the train split, from its first
    ``STATS_ITEMS`` labels (plenty for a mean and a std; every transfer stage fits them for every target,
    so their cost must not grow with the split); {} for targets that are not standardised."""
    if not task.encoding.standardised:
        return {}
    raw = _raw_target(task, split, STATS_ITEMS).double()
    dims = [d for d in range(raw.dim()) if d != 1]                          # all but channels
    mean, std = raw.mean(dims), raw.std(dims).clamp(min=1e-6)
    return {"mean": mean.tolist(), "std": std.tolist()}


STATS_SPLIT = {False: "train", True: "transfer"}   # a novel (target-only) task has only the transfer split's labels


def label_stats(task: Task, splits: Mapping[str, Any], novel: bool = False) -> dict[str, list[float]]:
    """:func:`fit_stats` on the split a task's labels are standardised with: the train split, or for a novel
    (``target_only``) task the transfer split, the only labels it has. Its network, every readout into it
    and every rescoring standardise with the same numbers, so their losses compare."""
    return fit_stats(task, splits[STATS_SPLIT[novel]])


def encode_target(task: Task, split: Any, stats: dict[str, list[float]]) -> torch.Tensor:
    """The training target of every item of ``split`` (bank order)."""
    raw = _raw_target(task, split)
    if task.encoding.standardised:
        shape = (1, -1) + (1,) * (raw.dim() - 2)
        mean = torch.tensor(stats["mean"], dtype=torch.float32).view(shape)
        std = torch.tensor(stats["std"], dtype=torch.float32).view(shape)
        return (raw - mean) / std
    if task.encoding is Encoding.SEGMENTS:
        ids = raw.flatten(1)                                                # (N, H*W)
        n = min(METRIC_PIXELS, ids.shape[1])
        gen = torch.Generator().manual_seed(_SEGMENT_SEED + int(split.manifest.get("seed", 0)))
        # one uniform stream, drawn a chunk of rows at a time (the same numbers as one draw: the
        # generator is sequential), so the argsort's memory follows the chunk, not the split
        pix = torch.cat([torch.rand((len(rows), ids.shape[1]), generator=gen).argsort(1)[:, :n]
                         for rows in torch.arange(ids.shape[0]).split(SAMPLE_CHUNK)] or [torch.zeros(0, n, dtype=torch.long)])
        return torch.stack([pix, ids.gather(1, pix).long()], dim=2)         # (N, n, 2)
    if task.encoding is Encoding.INDEX and raw.dim() == 4:
        return raw[:, 0]                                                    # (N, H, W) class ids
    return raw


def load_task_data(split: Any, task: Task, stats: dict[str, list[float]],
                   shared: dict[str, torch.Tensor] | None = None) -> TaskData:
    """Inputs and targets of ``task`` on one bank split (a ``taskonomy.bank.Split``).

    ``stats`` are the train split's (:func:`fit_stats`), or {} for encodings that need none. ``shared``:
    a dict kept across the tasks loaded from the same split, which then share one tensor of inputs per
    input transform (and one validity mask) instead of converting the images again for each task; the
    tensors are read-only by convention, as ``TaskData.subset`` already shares its views.
    """
    if not task.trainable:
        raise DataError(f"{task.name}: has no label to load")
    task = task.with_outputs(n_outputs(task, split))
    shared = {} if shared is None else shared
    target = encode_target(task, split, stats)
    if task.encoding is Encoding.INDEX and target.numel():
        # class ids index the output (and jigsaw's, the permutations): out of range crashes inside torch
        labelled = target[target != IGNORE_INDEX] if task.kind.dense else target
        lo, hi = (int(labelled.min()), int(labelled.max())) if labelled.numel() else (0, 0)
        if lo < 0 or hi >= task.out_channels:
            raise DataError(f"{task.name}: {_split_name(split)}/{task.label}.npy: class id {lo if lo < 0 else hi} "
                            f"out of range 0..{task.out_channels - 1}")
    # jigsaw tiles follow the task's own label, so only the other transforms are shared; the stored
    # images serve every transform decoded per batch
    key = ("views/stored" if task.transform in STORED else f"views/{task.transform.value}"
           + (f"/{task.label}" if task.transform is Transform.TILES else ""))
    if key not in shared:
        shared[key] = input_views(task, split)
    views = shared[key]
    if task.index is None:
        index = torch.arange(views.shape[0]).unsqueeze(1)                  # (V, 1)
    else:
        index = torch.from_numpy(np.array(_array(split, task.index, task), dtype=np.int64))
        lo, hi = (int(index.min()), int(index.max())) if index.numel() else (0, 0)
        if lo < 0 or hi >= views.shape[0]:
            bad = lo if lo < 0 else hi
            raise DataError(f"{task.name}: {_split_name(split)}/{task.index}.npy: view {bad} out of range "
                            f"0..{views.shape[0] - 1}")
    if index.shape[0] != target.shape[0] or index.shape[1] * views.shape[1] != task.n_views:
        raise DataError(f"{task.name}: {_split_name(split)}: {task.index or 'views'} has shape {tuple(index.shape)} "
                        f"but the label has {target.shape[0]} items of {task.n_views} inputs")
    mask = None
    if task.masked and "mask" in split.arrays:
        if "mask" not in shared:
            shared["mask"] = torch.from_numpy(np.array(split.arrays["mask"], dtype=bool))
        mask = shared["mask"]
    return TaskData(task, views, index, target, mask)
