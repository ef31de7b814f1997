"""Typed, validated parameters: ``params.yaml`` loads into frozen dataclasses, one per stage.

Each section of ``params.yaml`` is one dataclass below (the stage, its script and its section share a
name). Loading is strict: an unknown key, a value of the wrong type or one out of range raises
:class:`~taskonomy.errors.ParamsError` with the dotted key, e.g.
``params.yaml: render.resolution: must be >= 8, got 4``. Ranges are declared next to the field with
:func:`param`; the checker is generic, so adding a field is one line.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml

from taskonomy.errors import ParamsError

# Views per fixation group: the views of a scene come in groups that fixate one point each (see
# taskonomy.bank.render.camera); pairs across groups are the non-fixated pairs.
FIXATED_VIEWS = 3


def param(default: Any = dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, doc: str = "",
          default_factory: Any = dataclasses.MISSING, min_items: int | None = None):
    """A dataclass field with an optional numeric range and, for a list, a least length (both checked on
    load), and a one-line doc."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, doc=doc, min_items=min_items).items()
            if v not in (None, "")}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskParams:
    """One entry of the ``tasks`` mapping: the task's role and its own training overrides."""
    source_only: bool = param(False, doc="never a target: only its encoder serves as a source")
    target_only: bool = param(False, doc="a novel task: no task network on the train split, never a source; "
                                         "served from the others' encoders with the small transfer split only")
    epochs: int | None = param(None, ge=1, le=100_000, doc="overrides train_task.epochs for this task")
    lr: float | None = param(None, gt=0, doc="overrides train_task.lr for this task")
    epoch_items: int | None = param(None, ge=0, doc="overrides train_task.epoch_items for this task")


@dataclass(frozen=True)
class SplitSizes:
    """Number of scenes per split; each scene yields ``views_per_scene`` images."""
    train: int = param(270, ge=1)
    transfer: int = param(100, ge=1)
    test: int = param(50, ge=1)


@dataclass(frozen=True)
class BuildingLists:
    """The buildings of each bank split, by name (real Taskonomy data)."""
    train: list[str] = param(default_factory=list)
    transfer: list[str] = param(default_factory=list)
    test: list[str] = param(default_factory=list)


@dataclass(frozen=True)
class PointCaps:
    """At most this many points (each with all its views) per bank split; 0 = every point."""
    train: int = param(0, ge=0)
    transfer: int = param(0, ge=0)
    test: int = param(0, ge=0)


@dataclass(frozen=True)
class TaskonomyDataParams:
    """A folder of real Taskonomy data read into the bank format (docs/real-data.md)."""
    root: str = param("", doc="the download's folder (omnitools' --dest, or the folder holding the buildings)")
    layout: Literal["auto", "omnidata", "flat", "legacy"] = param(
        "auto", doc="<root>/<domain>/taskonomy/<building>/, <root>/<domain>/<building>/ or <root>/<building>/<domain>/")
    split_file: str = param("", doc="an official split CSV (id,train,val,test): train -> train, val -> transfer, "
                                    "test -> test; '' = the building lists below")
    buildings: BuildingLists = param(default_factory=BuildingLists, doc="each split's buildings (override the CSV)")
    domains: list[str] = param(default_factory=list, doc="domain folders to read; [] = every known one present")
    max_points: PointCaps = param(default_factory=PointCaps)
    pairs_per_point: int = param(12, ge=1, le=10_000, doc="at most this many non-fixated pairs, triplets and "
                                                          "point-match negatives per point")


@dataclass(frozen=True)
class RenderParams:
    """The task bank: rendered synthetic rooms (see docs/bank-format.md) or real Taskonomy data read from a
    folder (``source: taskonomy``, the ``taskonomy`` section; docs/real-data.md)."""
    source: Literal["synthetic", "taskonomy"] = param("synthetic", doc="render rooms, or read real Taskonomy data")
    taskonomy: TaskonomyDataParams = param(default_factory=TaskonomyDataParams)
    seed: int = param(0, ge=0, doc="base seed; each split derives a disjoint stream from it")
    resolution: int = param(32, ge=8, le=1024, doc="image height = width, pixels")
    fov_deg: float = param(70.0, gt=10, lt=150, doc="horizontal = vertical field of view")
    scenes: SplitSizes = param(default_factory=SplitSizes)
    views_per_scene: int = param(6, ge=6, le=15, doc="groups of 3 views, each fixating its own point; "
                                                     "a multiple of 3, at least 2 groups (non-fixated pairs)")
    objects_min: int = param(2, ge=0)
    objects_max: int = param(6, ge=0, le=32)
    lights_max: int = param(2, ge=1, le=2)
    shadows: bool = param(True)
    jigsaw_permutations: int = param(24, ge=2, le=1000, doc="size of the fixed permutation set")
    chunk_scenes: int = param(64, ge=1, doc="scenes rendered per vectorised batch")
    workers: int = param(0, ge=0, le=64, doc="processes rendering chunks in parallel, one thread each "
                                                 "(1: in process; 0: the cores the load average leaves "
                                                 "free, at least 1); the bytes do not depend on it")
    sample_scenes: int = param(3, ge=1, le=16, doc="scenes shown in the sample sheet")


@dataclass(frozen=True)
class TrainTaskParams:
    """Task-specific networks (one per task) and the shared training loop."""
    seed: int = param(0, ge=0)
    arch: Literal["small", "resnet18", "resnet50"] = param("small", doc="encoder trunk")
    width: int = param(16, ge=4, le=1024, doc="base channel width of the small encoder and the decoders")
    depth: int = param(1, ge=1, le=16, doc="residual blocks per resolution of the small encoder")
    head_width: int = param(128, ge=4, le=8192, doc="hidden units of the fully connected heads")
    channels_last: bool = param(True, doc="NHWC memory format (faster convolutions on CPU)")
    bottleneck_channels: int = param(8, ge=1, le=256, doc="channels of the representation")
    bottleneck_stride: int = param(4, ge=1, le=64, doc="input resolution / representation size")
    epochs: int = param(5, ge=1, le=100_000)
    epoch_items: int = param(0, ge=0, doc="items per epoch, a fresh random subset each epoch; 0 = every item "
                                         "(pair and triplet tasks have several items per view)")
    batch_size: int = param(64, ge=1)
    lr: float = param(2e-3, gt=0, lt=10)
    weight_decay: float = param(1e-5, ge=0)
    optimizer: Literal["adam", "adamw", "sgd"] = param("adamw")
    schedule: Literal["cosine", "step", "constant"] = param("cosine")
    grad_clip: float = param(0.0, ge=0, doc="0 disables gradient-norm clipping")
    device: Literal["auto", "cpu", "cuda"] = param("auto")
    threads: int = param(0, ge=0, doc="torch CPU threads; 0 = all cores")
    samples: int = param(4, ge=1, le=32, doc="test items in each network's samples.png (the report shows them)")
    eval_every: int = param(1, ge=0, doc="the test loss in the training curve every N epochs and after the last "
                            "(0: after the last only); the final test losses do not depend on it")


@dataclass(frozen=True)
class RayParams:
    address: str | None = param(None, doc="cluster address; None = RAY_ADDRESS or a local instance")
    cpus_per_job: float = param(1.0, gt=0)
    gpus_per_job: float = param(0.0, ge=0)


@dataclass(frozen=True)
class TransferParams:
    """Readouts from frozen source encoders into every target (first and higher order)."""
    seed: int = param(0, ge=0)
    seeds: int = param(1, ge=1, le=100, doc="readouts trained per transfer, at seeds seed, seed + 1, ...; their "
                       "per-item test losses are averaged, and the affinities' intervals resample them")
    images: int = param(0, ge=0, doc="transfer-split images used; 0 = all")
    epochs: int = param(8, ge=1, le=100_000)
    epoch_items: int = param(0, ge=0, doc="items per epoch, a fresh random subset each epoch; 0 = every item")
    batch_size: int = param(64, ge=1)
    lr: float = param(3e-3, gt=0, lt=10)
    weight_decay: float = param(1e-5, ge=0)
    max_order: int = param(3, ge=1, le=25, doc="highest order of source sets")
    beam: int = param(5, ge=2, doc="orders 2-3 combine the top-`beam` first-order sources")
    beam_order4: int = param(6, ge=2, doc="order 4 combines the top-`beam_order4` sources")
    coords: bool = param(True, doc="x/y coordinate channels on the representation (readout can localise)")
    decoder_width: int = param(0, ge=0, doc="width of a readout's dense decoder; 0 = train_task.width")
    device: Literal["auto", "cpu", "cuda"] = param("auto")
    workers: int = param(0, ge=0, doc="local readout processes; 0 = one per core on CPU, 1 on CUDA")
    batch_seeds: Literal["auto", "on", "off"] = param("auto", doc="train a transfer's seeds as one batched model "
                                                      "(torch.func); auto: on CUDA, where small readouts are "
                                                      "launch-bound (on a CPU it is slower)")
    threads: int = param(0, ge=0, doc="torch threads per worker; 0 = cores / workers")
    executor: Literal["local", "ray"] = param("local")
    ray: RayParams = param(default_factory=RayParams)


@dataclass(frozen=True)
class AffinityParams:
    """Win rates -> AHP affinities (stage ``affinity``)."""
    clip: float = param(0.001, gt=0, lt=0.5, doc="win rates are clipped to [clip, 1 - clip]")
    bootstrap: int = param(200, ge=1, le=100_000, doc="resamples of the readout seeds and test images behind "
                           "the affinities' intervals and the taxonomy's edge stability")
    seed: int = param(0, ge=0, doc="seed of the resamples")


@dataclass(frozen=True)
class ChecksParams:
    """The known-structure checks, their pass rate over readout seeds and their pass share over resamples of
    the seeds and test images (stage ``checks``)."""
    rounds: int = param(100, ge=1, le=100_000, doc="bootstrap resamples of the readout seeds and test items")
    seed: int = param(0, ge=0, doc="seed of the resamples")


@dataclass(frozen=True)
class TaxonomyParams:
    """The BIP sweep over budgets x max orders and the similarity tree (stage ``taxonomy``)."""
    budgets: list[int] = param(default_factory=lambda: list(range(1, 9)), ge=0, min_items=1,
                               doc="supervision budgets swept")
    max_orders: list[int] = param(default_factory=lambda: [1, 2, 3], ge=1, le=25, min_items=1,
                                  doc="maximum transfer orders swept")
    objective: Literal["affinity", "quality", "gain"] = param("affinity")
    sqrt: bool = param(True, doc="use sqrt(affinity) as the official solver did")
    tree_linkage: Literal["average", "complete", "single", "ward"] = param(
        "average", doc="linkage of the task similarity tree (clusters first-order affinity columns)")
    bootstrap: int = param(1000, ge=1, le=100_000, doc="resamples of the test images for the novel tasks' intervals")
    stability: int = param(100, ge=1, le=100_000, doc="resamples of the affinity stage re-solved for the edge "
                           "stability (at most affinity.bootstrap)")


FINETUNE_ROLES = ("taxonomy", "best", "worst", "random")
FINETUNE_MODES = ("frozen", "partial", "full", "l2sp")


@dataclass(frozen=True)
class FinetuneParams:
    """Fine-tuning baselines (stages ``finetune@<target>`` and ``finetune_summary``): for each target,
    networks started from the taxonomy's source set, the best and worst first-order source, ``random``
    and nothing (scratch), trained on ``sizes`` items of the target's ``split``."""
    targets: list[str] = param(default_factory=lambda: ["rgb2depth", "segmentsemantic", "class_scene", "room_layout"],
                               min_items=1, doc="targets fine-tuned (tasks of the task list, not source-only)")
    roles: list[Literal["taxonomy", "best", "worst", "random"]] = param(
        default_factory=lambda: list(FINETUNE_ROLES), min_items=1,
        doc="source roles: the taxonomy's choice, the best / worst first-order source by affinity, random")
    modes: list[Literal["frozen", "partial", "full", "l2sp"]] = param(
        default_factory=lambda: ["frozen", "partial", "full"], min_items=1,
        doc="frozen encoder + readout; the last partial_blocks encoder blocks trained; all of it; all with L2-SP")
    sizes: list[int] = param(default_factory=lambda: [240, 2160], ge=8, min_items=1,
                             doc="target training items (nested subsets of the split)")
    train_items: int = param(1440, ge=8, doc="items seen by one run at the 1x schedule, whatever its size")
    scratch_schedules: list[float] = param(default_factory=lambda: [1.0, 3.0], gt=0, le=100, min_items=1,
                                           doc="schedules of the from-scratch network, in multiples of 1x")
    budget: int = param(4, ge=0, doc="the taxonomy solution whose source sets are used: budget ...")
    max_order: int = param(1, ge=1, le=25, doc="... and max order (both among the taxonomy's sweep)")
    split: Literal["train", "transfer"] = param("train", doc="the split the target data is drawn from")
    seeds: list[int] = param(default_factory=lambda: [0], ge=0, min_items=1, doc="seeds of every run")
    batch_size: int = param(32, ge=2)
    lr: float = param(3e-3, gt=0, lt=10, doc="learning rate of new layers (readout, head, scratch encoder)")
    backbone_lr_scale: float = param(0.1, gt=0, le=1, doc="pretrained layers train at this fraction of lr")
    partial_blocks: int = param(1, ge=1, le=64, doc="encoder blocks trained in partial mode (counted from the top)")
    l2sp_alpha: float = param(0.01, ge=0, doc="L2-SP: alpha/2 ||w - w0||^2 over the pretrained weights")
    l2sp_beta: float = param(0.0, ge=0, doc="L2-SP: beta/2 ||w||^2 over the new layers' weights")
    weight_decay: float = param(1e-5, ge=0)
    optimizer: Literal["adam", "adamw", "sgd"] = param("adamw")
    schedule: Literal["cosine", "step", "constant"] = param("cosine")
    coords: bool = param(True, doc="x/y channels in the readout, as in transfers")
    decoder_width: int = param(8, ge=0, doc="width of a dense head's decoder; 0 = train_task.width")
    bootstrap: int = param(1000, ge=10, le=1_000_000, doc="bootstrap resamples of test images per interval")
    device: Literal["auto", "cpu", "cuda"] = param("auto")
    workers: int = param(0, ge=0, doc="local run processes; 0 = one per core on CPU, 1 on CUDA")
    threads: int = param(0, ge=0, doc="torch threads per worker; 0 = cores / workers")


MULTITASK_TASKS = ("rgb2depth", "rgb2sfnorm", "edge2d", "keypoint2d", "class_scene")
MULTITASK_GROUPINGS = ("single", "taxonomy", "all", "random")        # built in; `custom` names more
# the weightings of stage multitask: built in, and torchjd's aggregators (taskonomy.baselines.multitask)
MULTITASK_WEIGHTINGS = ("equal", "fixed", "uncertainty", "dwa")
JACOBIAN_WEIGHTINGS = ("upgrad", "mgda", "pcgrad", "cagrad", "nashmtl", "imtlg", "alignedmtl", "dualproj", "graddrop",
                       "config", "gradvac")


@dataclass(frozen=True)
class MultitaskParams:
    """Multi-task baselines (stages ``multitask@<grouping>`` and ``multitask_summary``): ``tasks`` share
    encoders as each grouping says, their losses combined by each weighting, against their task networks."""
    tasks: list[str] = param(default_factory=lambda: list(MULTITASK_TASKS), min_items=1,
                             doc="the tasks studied (tasks of the task list, not source-only)")
    groupings: list[str] = param(default_factory=lambda: list(MULTITASK_GROUPINGS), min_items=1,
                                 doc="single, taxonomy, all, random, or a name of `custom`")
    custom: dict[str, list[list[str]]] = param(default_factory=dict,
                                               doc="your own groupings: name -> groups of tasks (the rest alone)")
    weightings: list[str] = param(default_factory=lambda: ["equal", "uncertainty"], min_items=1,
                                  doc="equal, fixed, uncertainty, dwa, or a torchjd aggregator (upgrad, mgda, ...)")
    weights: dict[str, float] = param(default_factory=dict,
                                      doc="the `fixed` weighting's weight per task (unlisted: 1), normalised per group")
    budget: int = param(4, ge=0, doc="the taxonomy solution whose groups are used: budget ...")
    max_order: int = param(1, ge=1, le=25, doc="... and max order (both among the taxonomy's sweep)")
    seeds: list[int] = param(default_factory=lambda: [0, 1, 2], ge=0, min_items=1, doc="seeds of every run")
    compute: Literal["labels", "passes"] = param(
        "labels", doc="labels: each task sees as many labelled items as its task network; passes: as many encoder passes")
    validation_items: int = param(600, ge=8, doc="items of the transfer split that select each run's epoch")
    tag_every: int = param(20, ge=0, doc="TAG lookahead every this many steps in the all-in-one runs (0 = off)")
    dwa_temperature: float = param(2.0, gt=0, doc="DWA's temperature T")
    dwa_period: int = param(20, ge=1, doc="DWA's loss ratios over periods of this many steps")
    bootstrap: int = param(1000, ge=10, le=1_000_000, doc="bootstrap resamples of test images per interval")
    device: Literal["auto", "cpu", "cuda"] = param("auto")
    workers: int = param(0, ge=0, doc="local run processes; 0 = one per core on CPU, 1 on CUDA")
    threads: int = param(0, ge=0, doc="torch threads per worker; 0 = cores / workers")


# The domain shift of stage render_target (taskonomy.bank.render.domain): appearance changes composed in this
# order, none of which moves geometry
ADAPT_SHIFTS = ("palette", "lighting", "fog", "blur", "noise")
# adaptation methods beside the two references every task gets (source_only: its task network; oracle:
# the same recipe on labelled target data), and the task kinds each can serve
ADAPT_METHODS = ("dann", "entropy")
ADAPT_TASKS = ("rgb2depth", "segmentsemantic", "class_scene")


@dataclass(frozen=True)
class TargetScenes:
    """Scenes of the target domain's splits: target_train (new scenes; its labels reach only the oracle)
    and target_test (the test split's scenes, re-rendered in the target domain)."""
    target_train: int = param(1080, ge=1)


@dataclass(frozen=True)
class AdaptParams:
    """Domain adaptation baselines (stages ``render_target``, ``adapt@<task>``, ``adapt_summary`` and
    ``adapt_taxonomy``): a target domain rendered with ``shift`` at ``severity``; per task the source-only
    network, each method of ``methods`` and the target oracle, all with train_task's recipe."""
    shift: list[str] = param(default_factory=lambda: list(ADAPT_SHIFTS),
                             doc="appearance changes of the target domain: palette, lighting, fog, blur, noise")
    severity: float = param(0.6, ge=0, le=1, doc="strength of every change; 0 renders the source domain")
    scenes: TargetScenes = param(default_factory=TargetScenes)
    tasks: list[str] = param(default_factory=lambda: list(ADAPT_TASKS), min_items=1,
                             doc="tasks adapted: one adapt@<task> stage each (single-image tasks)")
    methods: dict[str, list[str]] = param(
        default_factory=lambda: {"dann": list(ADAPT_TASKS), "entropy": ["segmentsemantic", "class_scene"]},
        doc="method -> tasks it adapts (dann: any; entropy: classification outputs only)")
    seeds: list[int] = param(default_factory=lambda: [0, 1, 2], ge=0, min_items=1,
                             doc="seeds of every trained run; the task network is source_only at train_task.seed")
    gamma: float = param(10.0, gt=0, doc="DANN's schedule lambda_p = 2 / (1 + exp(-gamma p)) - 1")
    domain_weight: float = param(1.0, gt=0, doc="weight of the domain classifier's loss (times lambda_p)")
    domain_width: int = param(64, ge=4, le=8192, doc="hidden units of the domain classifier")
    entropy_weight: float = param(0.1, gt=0, doc="weight of the mean normalised entropy on target images")
    validation_items: int = param(600, ge=8, doc="items of the SOURCE transfer split that select each run's epoch")
    bootstrap: int = param(1000, ge=10, le=1_000_000, doc="bootstrap resamples of test images per interval")
    device: Literal["auto", "cpu", "cuda"] = param("auto")
    workers: int = param(0, ge=0, doc="local run processes; 0 = one per core on CPU, 1 on CUDA")
    threads: int = param(0, ge=0, doc="torch threads per worker; 0 = cores / workers")


@dataclass(frozen=True)
class ReportParams:
    """The report page and its Markdown twin (stage ``report``)."""
    top_sources: int = param(3, ge=1, le=10, doc="best first-order sources listed per target")


@dataclass(frozen=True)
class EncoderParams:
    """One of the user's own encoders (``encoders.<name>``): a local weight file the transfer matrix reads as
    a source beside the task networks (taskonomy.nets.external)."""
    path: str = param(doc="the weight file (nothing is downloaded)")
    arch: Literal["taskonomy", "checkpoint"] = param(
        "taskonomy", doc="taskonomy: the original task bank's ResNet-50 encoder (its PyTorch ports' state dict); "
                         "checkpoint: a task-network checkpoint of this project")
    normalize: bool = param(True, doc="taskonomy: the ports' parameter-free GroupNorm on the output")
    cost: float = param(0.0, ge=0, doc="its supervision cost in the taxonomy's budget (0: it exists already)")


@dataclass(frozen=True)
class Params:
    tasks: dict[str, TaskParams]
    render: RenderParams = param(default_factory=RenderParams)
    train_task: TrainTaskParams = param(default_factory=TrainTaskParams)
    transfer: TransferParams = param(default_factory=TransferParams)
    affinity: AffinityParams = param(default_factory=AffinityParams)
    checks: ChecksParams = param(default_factory=ChecksParams)
    taxonomy: TaxonomyParams = param(default_factory=TaxonomyParams)
    finetune: FinetuneParams = param(default_factory=FinetuneParams)
    multitask: MultitaskParams = param(default_factory=MultitaskParams)
    adapt: AdaptParams = param(default_factory=AdaptParams)
    report: ReportParams = param(default_factory=ReportParams)
    encoders: dict[str, EncoderParams] = param(default_factory=dict)

    def targets(self) -> list[str]:
        """Tasks that are solved (not source-only), in params order."""
        return [name for name, t in self.tasks.items() if not t.source_only]

    def sources(self) -> list[str]:
        """Every source of a transfer: the tasks whose encoder is one (not target-only), in params order, then
        the user's own encoders."""
        return [name for name, t in self.tasks.items() if not t.target_only] + list(self.encoders)

    def source_only(self) -> list[str]:
        """Tasks that are only sources (never targets), in params order."""
        return [name for name, t in self.tasks.items() if t.source_only]

    def target_only(self) -> list[str]:
        """The novel tasks: only the transfer split's labels, never a source."""
        return [name for name, t in self.tasks.items() if t.target_only]


# --------------------------------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ParamsError:
                continue
        raise ParamsError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ParamsError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        _, item_tp = typing.get_args(tp)
        return {str(k): _convert({} if v is None else v, item_tp, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is type(None):
        if value is None:
            return None
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ParamsError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _check_range(value: Any, meta: typing.Mapping, key: str) -> None:
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value and "min_items" in meta:
        raise ParamsError(f"{key}: must list at least {meta['min_items']} value, got []")
    for v in values:
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v):
            raise ParamsError(f"{key}: must be a finite number, got {v!r}")
        for bound, ok, word in (("ge", v >= meta.get("ge", v), ">="), ("gt", "gt" not in meta or v > meta["gt"], ">"),
                                ("le", v <= meta.get("le", v), "<="), ("lt", "lt" not in meta or v < meta["lt"], "<")):
            if not ok:
                raise ParamsError(f"{key}: must be {word} {meta[bound]}, got {v!r}")


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys, wrong types and bad ranges."""
    where = prefix or "params"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        raise ParamsError(f"{prefix + '.' if prefix else ''}{unknown[0]}: unknown key "
                          f"(known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ParamsError(f"{key}: missing")
            continue
        value = _convert(data[name], hints[name], key)
        _check_range(value, f.metadata, key)
        kwargs[name] = value
    return cls(**kwargs)


def _check_params(p: Params) -> None:
    if not p.tasks:
        raise ParamsError("tasks: the task list is empty")
    from taskonomy.tasks import TASKS
    unknown = [name for name in p.tasks if name not in TASKS]
    if unknown:
        raise ParamsError(f"tasks.{unknown[0]}: not a task of the bank (known: {', '.join(TASKS)})")
    if not p.targets():
        raise ParamsError("tasks: every task is source_only; at least one target is needed")
    both = [name for name, t in p.tasks.items() if t.source_only and t.target_only]
    if both:
        raise ParamsError(f"tasks.{both[0]}: source_only and target_only exclude each other")
    untrained = [name for name in p.target_only() if name in TASKS and not TASKS[name].trainable]
    if untrained:
        raise ParamsError(f"tasks.{untrained[0]}.target_only: has no label, so it cannot be a target")
    if not [name for name in p.sources() if name in TASKS and TASKS[name].trainable]:
        raise ParamsError("tasks: every trained task is target_only; at least one source network is needed")
    for name, spec in p.encoders.items():
        if name in p.tasks or name in TASKS or name in ("self", "pixels") or "__" in name or not name.isidentifier():
            raise ParamsError(f"encoders.{name}: a source's name must be a new identifier without '__' "
                              f"(not a task, self or pixels)")
        if not spec.path:
            raise ParamsError(f"encoders.{name}.path: the weight file is needed")
    r = p.render
    if r.source == "taskonomy" and not r.taskonomy.root:
        raise ParamsError("render.taskonomy.root: the folder of the Taskonomy download is needed with "
                          "render.source: taskonomy")
    if r.views_per_scene % FIXATED_VIEWS:
        raise ParamsError(f"render.views_per_scene: must be a multiple of {FIXATED_VIEWS} (groups of views that "
                          f"fixate one point), got {r.views_per_scene}")
    if r.objects_min > r.objects_max:
        raise ParamsError(f"render.objects_min: must be <= render.objects_max ({r.objects_max}), got {r.objects_min}")
    if r.resolution % p.train_task.bottleneck_stride:
        raise ParamsError(f"train_task.bottleneck_stride: must divide render.resolution ({r.resolution}), "
                          f"got {p.train_task.bottleneck_stride}")
    _check_finetune(p)
    _check_multitask(p)
    _check_adapt(p)
    if p.transfer.beam_order4 < 4 and p.transfer.max_order >= 4:
        raise ParamsError(f"transfer.beam_order4: must be >= 4 when transfer.max_order >= 4, got {p.transfer.beam_order4}")
    if p.taxonomy.stability > p.affinity.bootstrap:
        raise ParamsError(f"taxonomy.stability: {p.taxonomy.stability} re-solved resamples, but the affinity stage "
                          f"draws affinity.bootstrap = {p.affinity.bootstrap}")


# Seconds of one readout on the reference CPU (2 cores of an AMD EPYC, one single-threaded readout per core) at
# 3 epochs x 600 items of 32 px (benchmarks/noise.py: 0.37 s); scaled by items seen and pixels per image.
READOUT_SECONDS = 0.37
READOUT_ITEMS = 1800
CPU_RUN_MINUTES = 30


def readout_estimate(p: Params) -> tuple[int, float]:
    """The readouts the transfer stages train (every seed, every order) and about how many minutes they take
    on the reference CPU: what ``taskonomy check-params`` warns about when it exceeds the CPU default's run."""
    import math

    t = p.transfer
    per_target = len(p.sources()) + sum(math.comb(t.beam if k <= 3 else t.beam_order4, k)
                                        for k in range(2, t.max_order + 1))
    readouts = t.seeds * per_target * len(p.targets())
    items = t.epochs * (t.epoch_items or 2400)        # 2400: the transfer split's views at the default
    seconds = readouts * READOUT_SECONDS * items / READOUT_ITEMS * (p.render.resolution / 32) ** 2
    return readouts, seconds / 60


def time_warnings(p: Params) -> list[str]:
    """Settings that run but exceed the CPU default's time (a warning each, never a refusal)."""
    readouts, minutes = readout_estimate(p)
    if p.transfer.device != "cuda" and p.transfer.seeds > 1 and minutes > CPU_RUN_MINUTES:
        return [f"transfer.seeds: {p.transfer.seeds} seeds make {readouts} readouts, about {minutes:.0f} min of "
                f"readout training on a 2-core CPU ({READOUT_SECONDS} s each at 3 x 600 items of 32 px, scaled); "
                f"the CPU default's whole run is meant to take about {CPU_RUN_MINUTES} min"]
    return []


BANK_BYTES_PER_PIXEL = 34   # one view of the synthetic bank, every array, per pixel: 550 MB / 15,960 views of 32 x 32
LARGE_BANK = 4 * 2 ** 30    # above this, a second copy in DVC's cache is worth a warning
LINKS = ("hardlink", "symlink")


def bank_bytes(render: RenderParams) -> int:
    """The synthetic bank's size on disk, estimated from its views and resolution."""
    views = (render.scenes.train + render.scenes.transfer + render.scenes.test) * render.views_per_scene
    return views * render.resolution ** 2 * BANK_BYTES_PER_PIXEL


def dvc_cache_type(root: str | Path = ".") -> str:
    """DVC's ``cache.type`` for the repository at ``root``, read by DVC's own config (the repository's file,
    its local one, the user's and the system's, in DVC's order); DVC's default when none sets it or the
    config does not parse (DVC itself then says why)."""
    from dvc.config import Config, ConfigError

    try:
        found = Config(dvc_dir=Path(root) / ".dvc")["cache"].get("type")
    except ConfigError:
        found = None
    return ",".join(found) if found else "reflink,copy"


def disk_warnings(p: Params, root: str | Path = ".") -> list[str]:
    """A bank large enough that DVC's cache copying it would double its disk (a warning, never a refusal)."""
    size = bank_bytes(p.render)
    if p.render.source != "synthetic" or size < LARGE_BANK:
        return []
    link = dvc_cache_type(root)
    if any(kind in link for kind in LINKS):
        return []
    import shutil

    free = shutil.disk_usage(Path(root).resolve()).free
    return [f"render: the bank takes about {size / 2 ** 30:.0f} GiB and DVC's cache would keep a second copy "
            f"(cache.type {link}; {free / 2 ** 30:.0f} GiB free here): run `dvc config cache.type "
            f"reflink,hardlink,symlink,copy` to link it instead (README, On a GPU)"]


def _check_targets(p: Params, key: str, names: Iterable[str]) -> None:
    """Every name is a task of the task list and not source-only, or one line naming it under ``key``."""
    for name in names:
        if name not in p.tasks:
            raise ParamsError(f"{key}: '{name}' is not in the task list")
        if p.tasks[name].source_only:
            raise ParamsError(f"{key}: '{name}' is source-only, never a target")


def _check_unique(section: str, lists: Iterable[tuple[str, list]]) -> None:
    """No value listed twice in any of a section's lists."""
    for key, values in lists:
        twice = sorted({v for v in values if values.count(v) > 1}, key=str)
        if twice:
            raise ParamsError(f"{section}.{key}: {twice[0]!r} listed twice")


def _check_in_sweep(p: Params, section: str, budget: int, max_order: int) -> None:
    """A section's taxonomy solution (``budget``, ``max_order``) is one the taxonomy stage solves."""
    if budget not in p.taxonomy.budgets:
        raise ParamsError(f"{section}.budget: {budget} is not among taxonomy.budgets {p.taxonomy.budgets}")
    if max_order not in p.taxonomy.max_orders:
        raise ParamsError(f"{section}.max_order: {max_order} is not among taxonomy.max_orders {p.taxonomy.max_orders}")


def _check_not_novel(p: Params, key: str, names: Iterable[str]) -> None:
    """No target-only task among ``names``: the sibling stages compare with or start from its task network."""
    for name in names:
        if name in p.tasks and p.tasks[name].target_only:
            raise ParamsError(f"{key}: '{name}' is target_only (a novel task without a task network of its own)")


def _check_finetune(p: Params) -> None:
    f = p.finetune
    _check_targets(p, "finetune.targets", f.targets)
    _check_not_novel(p, "finetune.targets", f.targets)
    _check_unique("finetune", (("targets", f.targets), ("roles", f.roles), ("modes", f.modes), ("sizes", f.sizes),
                               ("scratch_schedules", f.scratch_schedules), ("seeds", f.seeds)))
    if "taxonomy" in f.roles:
        _check_in_sweep(p, "finetune", f.budget, f.max_order)


def _check_multitask(p: Params) -> None:
    m = p.multitask
    _check_unique("multitask", (("tasks", m.tasks), ("groupings", m.groupings), ("weightings", m.weightings),
                                ("seeds", m.seeds)))
    _check_targets(p, "multitask.tasks", m.tasks)
    _check_not_novel(p, "multitask.tasks", m.tasks)
    for name, groups in m.custom.items():
        if name in MULTITASK_GROUPINGS:
            raise ParamsError(f"multitask.custom.{name}: a built-in grouping's name; choose another")
        seen: set[str] = set()
        for group in groups:
            _check_targets(p, f"multitask.custom.{name}", group)
            for task in group:
                if task not in m.tasks:
                    raise ParamsError(f"multitask.custom.{name}: '{task}' is not among multitask.tasks")
                if task in seen:
                    raise ParamsError(f"multitask.custom.{name}: '{task}' is in two groups")
                seen.add(task)
    for name in m.weightings:
        if name not in MULTITASK_WEIGHTINGS + JACOBIAN_WEIGHTINGS:
            raise ParamsError(f"multitask.weightings: unknown {name!r} "
                              f"(known: {', '.join(MULTITASK_WEIGHTINGS + JACOBIAN_WEIGHTINGS)})")
    for name in m.groupings:
        if name not in MULTITASK_GROUPINGS and name not in m.custom:
            raise ParamsError(f"multitask.groupings: unknown grouping {name!r} "
                              f"(known: {', '.join([*MULTITASK_GROUPINGS, *m.custom])})")
    for task, weight in m.weights.items():
        if task not in m.tasks:
            raise ParamsError(f"multitask.weights.{task}: not among multitask.tasks")
        if weight < 0:
            raise ParamsError(f"multitask.weights.{task}: must be >= 0, got {weight!r}")
    if "fixed" in m.weightings and not sum(m.weights.get(t, 1.0) for t in m.tasks) > 0:
        raise ParamsError("multitask.weights: they sum to 0; the fixed weighting needs a positive sum")
    if {"taxonomy", "random"} & set(m.groupings):
        _check_in_sweep(p, "multitask", m.budget, m.max_order)


def _check_adapt(p: Params) -> None:
    a = p.adapt
    _check_unique("adapt", (("shift", a.shift), ("tasks", a.tasks), ("seeds", a.seeds),
                            *((f"methods.{m}", tasks) for m, tasks in a.methods.items())))
    for name in a.shift:
        if name not in ADAPT_SHIFTS:
            raise ParamsError(f"adapt.shift: unknown shift {name!r} (known: {', '.join(ADAPT_SHIFTS)})")
    _check_targets(p, "adapt.tasks", a.tasks)
    _check_not_novel(p, "adapt.tasks", a.tasks)
    from taskonomy.tasks import Kind, get_task
    for name in a.tasks:
        task = get_task(name)
        if task.n_views != 1 or task.transform.value != "plain":
            raise ParamsError(f"adapt.tasks: '{name}' does not predict from one plain image "
                              f"(pairs, triplets and transformed inputs are not adapted)")
    for method, tasks in a.methods.items():
        if method not in ADAPT_METHODS:
            raise ParamsError(f"adapt.methods.{method}: unknown method (known: {', '.join(ADAPT_METHODS)}; "
                              f"source_only and oracle run for every task)")
        for name in tasks:
            if name not in a.tasks:
                raise ParamsError(f"adapt.methods.{method}: '{name}' is not among adapt.tasks")
            kind = get_task(name).kind
            if method == "entropy" and kind not in (Kind.CLASSIFICATION, Kind.DENSE_CLASSIFICATION):
                raise ParamsError(f"adapt.methods.entropy: '{name}' is a {kind.value} task; entropy minimisation "
                                  f"needs a distribution output (classification or dense_classification)")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key repeated in one mapping is an error, as DVC has it (YAML itself
    would keep the last value silently: a task listed twice, an epochs set twice)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


# YAML 1.2, which DVC reads params with, takes ``1e-3`` as a float; PyYAML (YAML 1.1) needs a dot
# (``1.0e-3``) and would make it a string, so a learning rate DVC records as 0.001 would be refused.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def check_tasks(params: Params, names: Iterable[str], path: str | Path = "params.yaml") -> None:
    """Every name is in the task list of ``params`` (read from ``path``), or a ParamsError naming it."""
    for name in names:
        if name not in params.tasks:
            raise ParamsError(f"{path}: tasks.{name}: not in the task list (listed: {', '.join(params.tasks)})")


def load_params(path: str | Path = "params.yaml", overlay: dict[str, Any] | None = None) -> Params:
    """Read and validate ``params.yaml`` (with a profile's ``overlay`` on top: taskonomy.profiles); every
    problem is a :class:`ParamsError` naming the key."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such params file") from None
    except IsADirectoryError:
        raise ParamsError(f"{path}: is a folder, not a params file") from None
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ParamsError(f"{path}: cannot be read ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        twice = f": {err.problem}" if isinstance(err, yaml.constructor.ConstructorError) else ""
        raise ParamsError(f"{path}: not valid YAML{where}{twice}") from None
    if raw is None:
        raise ParamsError(f"{path}: empty params file")
    if overlay:
        from taskonomy.profiles import merge

        raw = merge(raw, overlay)
    missing = [f.name for f in dataclasses.fields(Params) if f.name not in raw] if isinstance(raw, dict) else []
    if missing:  # as DVC: every stage names its section in dvc.yaml
        raise ParamsError(f"{path}: section '{missing[0]}' missing (DVC refuses a params file without a "
                          f"stage's section; write '{missing[0]}: {{}}' for the code's defaults)")
    try:
        params = from_dict(Params, raw)
        _check_params(params)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    return params


def as_dict(obj: Any) -> Any:
    """Plain-data view of a params object (for manifests and checkpoints)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
