"""The task registry: one frozen record per task of the bank, and the losses those records name.

A task is data (style.md rule 4): its kind, the bank array holding its label and how that label is
encoded, its training loss, the input transform applied to the image, how many encoder inputs one item
has, and whether it is a source only. Everything else (heads, data loading, baselines) branches on these
fields, never on a task's name. The registry is strict: registering a name twice raises, and asking for
an unknown name raises with the known ones listed.

Per-item losses (``per_item_loss``) are the currency of every later comparison (docs/losses-format.md):
one value per test item, lower is better. Training minimises the batch mean of the same function, so
the number a transfer is judged on is the number it was trained on. Choices against the originals
(reference §1.2), for a 32 px synthetic bank trained in seconds:

- no cGAN term; L1 for dense regression, but L2 for the mostly-zero maps (curvature, edge3d, keypoint3d,
  keypoint2d), where L1 learns to predict zero everywhere (prototype-lessons.md);
- every continuous target is z-scored per channel on the train split; depth and distance use
  log-depth with each image's mean removed first (absolute scale is ambiguous across rooms);
  curvature a signed log first (97% zeros, a few values near 100 dominated a plain z-score);
- vanishing points: a room axis and its negative are the same vanishing point (and a box room looks
  the same turned by 180 degrees), so each axis v is encoded as the 6 entries of v v^T (Taskonomy
  rotated the labels to make them "well defined" instead);
- dense class labels may be ``IGNORE_INDEX`` (no loss; the per-item loss is the mean over labelled pixels);
- soft labels (class_object): the per-item loss is KL(y || p), i.e. the soft cross-entropy minus the
  label's entropy: the same gradients and the same per-item ranking of models, but 0 = perfect;
- colorization regresses the standardised RGB image from its grayscale (L1), not 313 ab bins;
- pose tasks use Taskonomy's unsquared Euclidean norm per 6-d pose, summed over the pairs of a triplet;
- the unsupervised segmentations use Taskonomy's pairwise metric loss on ``METRIC_PIXELS`` pixels per
  image (128, not 300: the pairs dominate the cost), sampled once per item by the data loader.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F

from taskonomy.errors import TaskonomyError


class Kind(str, Enum):
    """What a task predicts; selects the head family and the trivial baseline."""
    DENSE_REGRESSION = "dense_regression"          # (C, H, W) real values
    DENSE_CLASSIFICATION = "dense_classification"  # (K, H, W) logits per pixel
    DENSE_EMBEDDING = "dense_embedding"            # (D, H, W) embedding, metric loss
    REGRESSION = "regression"                      # (D,) from one image
    CLASSIFICATION = "classification"              # (K,) logits from one image, hard or soft labels
    MULTI_VIEW_REGRESSION = "multi_view_regression"          # (D,) from a pair / triplet of views
    MULTI_VIEW_CLASSIFICATION = "multi_view_classification"  # (K,) from a pair of views
    TILE_CLASSIFICATION = "tile_classification"    # (K,) from 9 jigsaw tiles
    UNTRAINED = "untrained"                        # no label: a frozen random encoder

    @property
    def dense(self) -> bool:
        return self in (Kind.DENSE_REGRESSION, Kind.DENSE_CLASSIFICATION, Kind.DENSE_EMBEDDING)


class Encoding(str, Enum):
    """How the bank's label array becomes the training target."""
    ZSCORE = "zscore"              # float, per-channel (x - mean) / std over the train split
    LOG_CENTERED = "log_centered"  # log(x) minus the image's mean log, then / std over the train split
    SIGNED_LOG = "signed_log"      # sign(x) log(1 + |x|), then z-scored: heavy-tailed, mostly-zero maps
    AXES = "axes"                  # unit 3-vectors defined up to sign -> upper triangle of v v^T, z-scored
    INDEX = "index"                # integer class id (per item or per pixel)
    SOFT = "soft"                  # a probability vector
    SEGMENTS = "segments"          # per-image segment ids, sampled to (pixel, id) pairs
    NONE = "none"                  # no label

    @property
    def standardised(self) -> bool:
        """Real-valued targets z-scored per channel with train-split statistics."""
        return self in (Encoding.ZSCORE, Encoding.LOG_CENTERED, Encoding.SIGNED_LOG, Encoding.AXES)


class Loss(str, Enum):
    L1 = "l1"
    L2 = "l2"
    CROSS_ENTROPY = "cross_entropy"
    SOFT_CROSS_ENTROPY = "soft_cross_entropy"   # reported as KL(y || p): cross-entropy minus H(y)
    METRIC = "metric"
    POSE_NORM = "pose_norm"
    NONE = "none"


class Transform(str, Enum):
    """The input an encoder sees, made from the clean image deterministically per view index."""
    PLAIN = "plain"
    NOISY = "noisy"              # + Gaussian noise, std NOISE_STD on [0, 1]
    CENTRE_MASK = "centre_mask"  # centre half (H/4:3H/4, W/4:3W/4) set to 0 after rescaling to [-1, 1]
    GRAYSCALE = "grayscale"      # luminance copied to the 3 channels
    TILES = "tiles"              # 3x3 grid cells shuffled by the item's permutation


IGNORE_INDEX = 255   # a dense class label with no loss (real Taskonomy's "uncertain" semantic pixels)
METRIC_PIXELS = 128  # pixels sampled per image for the metric loss (Taskonomy: 300 of 65k; its cost is n^2)
POSE_DIM = 6         # one relative pose: 3 Euler angles + 3 translation components


@dataclass(frozen=True)
class Task:
    """One task of the bank.

    ``out_channels`` is the channel count of a dense output or the length of a vector output; 0 means
    "the number of classes, read from the bank" (``classes`` says where; see taskonomy.nets.data), and
    :meth:`with_outputs` returns the record with it filled in.
    """
    name: str
    kind: Kind
    label: str | None              # bank array with the label; None for the untrained source
    encoding: Encoding
    loss: Loss
    transform: Transform = Transform.PLAIN
    n_views: int = 1               # encoder inputs per item: 1 image, 2 pair, 3 triplet, 9 tiles
    index: str | None = None       # bank array (M, n) of view tuples; None: one item per view
    out_channels: int = 0
    classes: str = ""              # 'manifest:<key>' | 'rows:<array>' | 'columns' (of the label)
    masked: bool = False           # dense loss only where the bank's `mask` is true
    source_only: bool = False      # default for params.yaml `tasks.<name>.source_only`
    doc: str = ""

    @property
    def trainable(self) -> bool:
        return self.kind is not Kind.UNTRAINED

    def with_outputs(self, out_channels: int) -> "Task":
        """This record with its output size resolved (class counts come from the bank)."""
        return dataclasses.replace(self, out_channels=out_channels)

    def output_shape(self, resolution: int) -> tuple[int, ...]:
        """Shape of one item's prediction: (C, H, W) for dense kinds, (D,) otherwise."""
        if self.out_channels <= 0:
            raise TaskonomyError(f"{self.name}: output size not resolved yet (number of classes comes from the bank)")
        return (self.out_channels, resolution, resolution) if self.kind.dense else (self.out_channels,)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task; a name registered twice raises."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The record of ``name``; an unknown name raises listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise TaskonomyError(f"unknown task {name!r} (known: {', '.join(TASKS)})") from None


def task_names() -> list[str]:
    return list(TASKS)


_D, _E = Kind.DENSE_REGRESSION, Encoding.ZSCORE
for _task in [
    # 3D
    Task("rgb2depth", _D, "rgb2depth", Encoding.LOG_CENTERED, Loss.L1, out_channels=1, masked=True,
         doc="z-buffer depth"),
    Task("rgb2mist", _D, "rgb2mist", Encoding.LOG_CENTERED, Loss.L1, out_channels=1, masked=True,
         doc="Euclidean distance to the camera centre"),
    Task("rgb2sfnorm", _D, "rgb2sfnorm", _E, Loss.L1, out_channels=3, masked=True, doc="surface normals"),
    Task("reshade", _D, "reshade", _E, Loss.L1, out_channels=1, masked=True, doc="shading, light at the camera"),
    Task("curvature", _D, "curvature", Encoding.SIGNED_LOG, Loss.L2, out_channels=2, masked=True,
         doc="principal curvatures (1/m: 0 on planes, up to 100 on small spheres)"),
    Task("edge3d", _D, "edge3d", _E, Loss.L2, out_channels=1, masked=True, doc="occlusion edges"),
    Task("keypoint3d", _D, "keypoint3d", _E, Loss.L2, out_channels=1, masked=True, doc="3D keypoints"),
    Task("segment25d", Kind.DENSE_EMBEDDING, "segment25d", Encoding.SEGMENTS, Loss.METRIC, out_channels=16,
         doc="smooth surface patches (metric loss on an embedding)"),
    # 2D
    Task("edge2d", _D, "edge2d", _E, Loss.L1, out_channels=1, doc="texture edges"),
    Task("keypoint2d", _D, "keypoint2d", _E, Loss.L2, out_channels=1, doc="2D corner response"),
    Task("segment2d", Kind.DENSE_EMBEDDING, "segment2d", Encoding.SEGMENTS, Loss.METRIC, out_channels=16,
         doc="uniform-appearance regions (metric loss on an embedding)"),
    Task("autoencoder", _D, "rgb", _E, Loss.L1, out_channels=3, doc="the image itself"),
    Task("denoise", _D, "rgb", _E, Loss.L1, Transform.NOISY, out_channels=3, doc="clean image from a noisy one"),
    Task("inpainting", _D, "rgb", _E, Loss.L1, Transform.CENTRE_MASK, out_channels=3, source_only=True,
         doc="whole image from one with its centre masked"),
    Task("colorization", _D, "rgb", _E, Loss.L1, Transform.GRAYSCALE, out_channels=3, source_only=True,
         doc="colour image from its grayscale"),
    # semantic
    Task("segmentsemantic", Kind.DENSE_CLASSIFICATION, "segmentsemantic", Encoding.INDEX, Loss.CROSS_ENTROPY,
         classes="manifest:classes", doc="per-pixel class"),
    Task("class_object", Kind.CLASSIFICATION, "class_object", Encoding.SOFT, Loss.SOFT_CROSS_ENTROPY,
         classes="columns", doc="distribution of visible object classes (soft labels)"),
    Task("class_scene", Kind.CLASSIFICATION, "class_scene", Encoding.INDEX, Loss.CROSS_ENTROPY,
         classes="manifest:scene_types", doc="room type"),
    # geometric
    Task("room_layout", Kind.REGRESSION, "room_layout", _E, Loss.L2, out_channels=10,
         doc="room centre, camera rotation in the room (yaw modulo 180 degrees), room extents"),
    Task("vanishing_point", Kind.REGRESSION, "vanishing_point", Encoding.AXES, Loss.L2, out_channels=18,
         doc="the three room axes in the camera frame, as sign-free outer products"),
    # pairwise
    Task("fix_pose", Kind.MULTI_VIEW_REGRESSION, "fix_pose", _E, Loss.POSE_NORM, n_views=2,
         index="fix_pose_index", out_channels=POSE_DIM, doc="relative pose of two fixated views"),
    Task("non_fixated_pose", Kind.MULTI_VIEW_REGRESSION, "non_fixated_pose", _E, Loss.POSE_NORM, n_views=2,
         index="non_fixated_pose_index", out_channels=POSE_DIM, doc="relative pose of two views of a room"),
    Task("point_match", Kind.MULTI_VIEW_CLASSIFICATION, "point_match", Encoding.INDEX, Loss.CROSS_ENTROPY,
         n_views=2, index="point_match_index", out_channels=2, doc="do both views see the same point"),
    Task("ego_motion", Kind.MULTI_VIEW_REGRESSION, "ego_motion", _E, Loss.POSE_NORM, n_views=3,
         index="ego_motion_index", out_channels=3 * POSE_DIM, doc="the three relative poses of a triplet"),
    # self-supervised and baseline sources
    Task("jigsaw", Kind.TILE_CLASSIFICATION, "jigsaw", Encoding.INDEX, Loss.CROSS_ENTROPY, Transform.TILES,
         n_views=9, classes="rows:jigsaw_permutations", source_only=True, doc="which permutation tiled the image"),
    Task("random", Kind.UNTRAINED, None, Encoding.NONE, Loss.NONE, source_only=True,
         doc="a frozen, randomly initialised encoder"),
]:
    register(_task)
del _task


# --------------------------------------------------------------------------------------------------
# Losses: (prediction, target, mask) -> (B,) per-item values, lower is better
# --------------------------------------------------------------------------------------------------

def _dense_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of a (B, C, H, W) error map per item, over the pixels where ``mask`` (B, 1, H, W) holds."""
    if mask is None:
        return err.flatten(1).mean(1)
    m = mask.to(err.dtype)
    return (err * m).flatten(1).sum(1) / (m.flatten(1).sum(1) * err.shape[1]).clamp(min=1)


def metric_loss(embedding: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Taskonomy's segmentation metric loss per image (reference §1.2).

    ``embedding`` (B, D, H, W); ``samples`` (B, n, 2) long: flat pixel index and segment id. With
    d_ij = ||e_i - e_j||^2 clipped to [0, 80] and sigma_ij = 2 / (1 + exp(d_ij)) clipped to
    [1e-7, 1 - 1e-7], L = -mean_ij [s_ij log sigma_ij + (1 - s_ij) log(1 - sigma_ij)], s_ij = 1 iff
    same segment. Computed as log sigma = log 2 - softplus(d) and log(1 - sigma) = log tanh(d / 2):
    the same values in fewer passes over the (B, n, n) pairs, which dominate this task's cost.
    """
    b, d = embedding.shape[:2]
    pix, ids = samples[..., 0], samples[..., 1]                            # (B, n), (B, n)
    flat = embedding.float().flatten(2)                                    # (B, D, H*W)
    e = flat.gather(2, pix.unsqueeze(1).expand(b, d, -1)).transpose(1, 2)  # (B, n, D)
    sq = e.square().sum(2)                                                 # (B, n)
    dist = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * e @ e.transpose(1, 2)).clamp(0, 80)  # (B, n, n)
    log_sim = (_LOG2 - F.softplus(dist)).clamp(_LOG_EPS, _LOG_1M_EPS)      # log sigma
    log_dis = torch.tanh(dist / 2).clamp(_EPS, 1 - _EPS).log()             # log(1 - sigma)
    same = ids.unsqueeze(2) == ids.unsqueeze(1)                            # (B, n, n)
    return -torch.where(same, log_sim, log_dis).flatten(1).mean(1)


_EPS = 1e-7
_LOG2, _LOG_EPS, _LOG_1M_EPS = math.log(2), math.log(_EPS), math.log1p(-_EPS)


def _pair_bce(sigma: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The metric loss for given pair similarities ``sigma`` (B, n, n) (the trivial baseline's)."""
    same = (ids.unsqueeze(2) == ids.unsqueeze(1)).to(sigma.dtype)          # (B, n, n)
    bce = -(same * torch.log(sigma) + (1 - same) * torch.log1p(-sigma))
    return bce.flatten(1).mean(1)


def per_item_loss(task: Task, pred: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """The task's loss per item, shape (B,), float32; training minimises its mean."""
    pred = pred.float()
    if not task.masked:
        mask = None
    if task.loss is Loss.L1:
        return _dense_mean((pred - target).abs(), mask) if task.kind.dense else (pred - target).abs().mean(1)
    if task.loss is Loss.L2:
        return _dense_mean((pred - target).square(), mask) if task.kind.dense else (pred - target).square().mean(1)
    if task.loss is Loss.CROSS_ENTROPY:
        target = target.long()                                             # ids may be stored compact (uint8)
        if not task.kind.dense:
            return F.cross_entropy(pred, target, reduction="none")         # (B,)
        # the mean over labelled pixels (no data-dependent branch: no device sync on CUDA)
        ce = F.cross_entropy(pred, target, reduction="none", ignore_index=IGNORE_INDEX).flatten(1)
        return ce.sum(1) / (target.flatten(1) != IGNORE_INDEX).sum(1).clamp(min=1)
    if task.loss is Loss.SOFT_CROSS_ENTROPY:
        return (target * (target.clamp(min=1e-12).log() - F.log_softmax(pred, dim=1))).sum(1)  # KL(y || p)
    if task.loss is Loss.METRIC:
        return metric_loss(pred, target)
    if task.loss is Loss.POSE_NORM:
        err = (pred - target).view(pred.shape[0], -1, POSE_DIM)              # (B, poses, 6)
        return err.norm(dim=2).sum(1)
    raise TaskonomyError(f"{task.name}: has no loss (kind {task.kind.value})")


CHUNK_ITEMS = 256   # items per chunk of every whole-split reduction: memory follows the chunk, not the split


def _chunks(n: int, size: int = CHUNK_ITEMS) -> Iterator[slice]:
    return (slice(i, min(i + size, n)) for i in range(0, n, size))


def same_segment_rate(samples: torch.Tensor) -> float:
    """The share of same-segment pairs among the sampled pixel pairs (i, j) of every item (i = j included),
    counted a chunk of items at a time (an exact integer count, never the split's (N, n, n) pairs)."""
    ids = samples[..., 1]
    same = sum(int((ids[part].unsqueeze(2) == ids[part].unsqueeze(1)).sum()) for part in _chunks(ids.shape[0]))
    return same / (ids.shape[0] * ids.shape[1] ** 2)


def class_counts(target: torch.Tensor, k: int, dense: bool) -> torch.Tensor:
    """Per-class label counts, int64: (K,) for item labels, (K, H, W) per pixel for dense maps; dense
    ``IGNORE_INDEX`` pixels are not counted. Chunked bincounts, never a one-hot of the split."""
    if not dense:
        return torch.bincount(target.flatten().long(), minlength=k)[:k]
    hw = target[0].numel()
    counts = torch.zeros(k * hw, dtype=torch.int64)
    pixel = torch.arange(hw)
    for part in _chunks(target.shape[0]):
        labels = target[part].flatten(1).long()                            # (b, H*W)
        keep = labels != IGNORE_INDEX
        counts += torch.bincount((labels * hw + pixel)[keep], minlength=k * hw)
    return counts.view(k, *target.shape[1:])


def mean_target(target: torch.Tensor) -> torch.Tensor:
    """The float64 mean over items, summed chunk by chunk (no float64 copy of the split)."""
    total = sum(target[part].double().sum(0) for part in _chunks(target.shape[0]))
    return total / target.shape[0]


def trivial_losses(task: Task, train_target: torch.Tensor, test_target: torch.Tensor,
                   test_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-item test losses of the best input-blind predictor: the train split's mean prediction.

    Continuous targets: the mean target (per position for dense maps). Classes: the class
    frequencies (per pixel for dense maps, +1 smoothing) as log-probabilities, i.e. the mean of the
    one-hot labels; the majority class alone would have an infinite cross-entropy. Metric loss: every
    pixel pair gets the train split's same-segment rate as its similarity. Memory grows with a chunk
    of items, not with the train split: counts, chunked sums.
    """
    if task.encoding is Encoding.SEGMENTS:
        rate = min(max(same_segment_rate(train_target), 1e-7), 1 - 1e-7)
        n = test_target.shape[1]
        return torch.cat([_pair_bce(torch.full((part.stop - part.start, n, n), rate), test_target[part, :, 1])
                          for part in _chunks(test_target.shape[0])])
    if task.encoding is Encoding.INDEX:
        counts = class_counts(train_target, task.out_channels, task.kind.dense).double() + 1
        mean = (counts / counts.sum(0, keepdim=True)).log()               # (K, H, W) or (K,)
    elif task.encoding is Encoding.SOFT:
        mean = mean_target(train_target).clamp(min=1e-6).log()
    else:
        mean = mean_target(train_target)
    pred = mean.float().unsqueeze(0).expand(test_target.shape[0], *mean.shape)
    return torch.cat([per_item_loss(task, pred[part], test_target[part], None if test_mask is None else test_mask[part])
                      for part in _chunks(test_target.shape[0])])
