"""The task registry: names, records, losses, label encodings and input transforms."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_bank import fake_split
from taskonomy.config import load_params
from taskonomy.nets.data import (NOISE_STD, decode_views, encode_target, fit_stats, input_views, jigsaw_tiles, load_task_data,
                            n_outputs)
from taskonomy.errors import DataError, TaskonomyError
from taskonomy.tasks import (IGNORE_INDEX, TASKS, Encoding, Kind, Loss, Task, Transform, get_task, metric_loss, per_item_loss,
                             register, trivial_losses)

ROOT = Path(__file__).resolve().parents[1]
BANK_NAMES = ["rgb2depth", "rgb2mist", "rgb2sfnorm", "reshade", "curvature", "edge3d", "keypoint3d", "segment25d",
              "edge2d", "keypoint2d", "segment2d", "autoencoder", "denoise", "inpainting", "colorization",
              "segmentsemantic", "class_object", "class_scene", "room_layout", "vanishing_point", "fix_pose",
              "non_fixated_pose", "point_match", "ego_motion", "jigsaw", "random"]
TRAINABLE = [t for t in TASKS.values() if t.trainable]


@pytest.fixture(scope="module")
def train_split():
    return fake_split("train", n_scenes=6)


def test_registry_matches_bank_and_params():
    assert list(TASKS) == BANK_NAMES
    params = load_params(ROOT / "params.yaml")
    assert list(params.tasks) == BANK_NAMES
    assert {n: t.source_only for n, t in params.tasks.items()} == {n: t.source_only for n, t in TASKS.items()}
    assert [n for n, t in TASKS.items() if t.source_only] == ["inpainting", "colorization", "jigsaw", "random"]


def test_registry_is_strict():
    with pytest.raises(ValueError, match="registered twice"):
        register(Task("rgb2depth", Kind.REGRESSION, "x", Encoding.ZSCORE, Loss.L2))
    with pytest.raises(TaskonomyError, match=r"unknown task 'depth' \(known: rgb2depth, rgb2mist,.*random\)"):
        get_task("depth")
    assert get_task("jigsaw").n_views == 9 and get_task("ego_motion").n_views == 3


def test_library_code_never_branches_on_a_task_name():
    names = "|".join(BANK_NAMES)
    modules = sorted((ROOT / "taskonomy" / "nets").glob("*.py")) + sorted((ROOT / "taskonomy" / "transfer").glob("*.py"))
    assert len(modules) >= 10
    for module in modules:
        assert not re.search(rf"[\"']({names})[\"']", module.read_text()), module


def test_records_are_consistent():
    for task in TASKS.values():
        assert (task.label is None) == (task.kind is Kind.UNTRAINED)
        assert (task.index is not None) == task.kind.name.startswith("MULTI_VIEW")
        assert (task.n_views == 9) == (task.transform is Transform.TILES)
        assert (task.out_channels > 0) != bool(task.classes) or not task.trainable
        if task.kind.dense:
            assert task.n_views == 1


@pytest.mark.parametrize("task", TRAINABLE, ids=lambda t: t.name)
def test_every_task_loads_with_its_shapes(task, train_split):
    stats = fit_stats(task, train_split)
    data = load_task_data(train_split, task, stats)
    n, r = data.task.out_channels, data.resolution
    expected_items = train_split[task.index].shape[0] if task.index else train_split.n_views
    assert len(data) == expected_items
    batch = data.batch(torch.arange(3))
    assert batch.x.shape[:3] == (3, task.n_views, 3)
    assert data.task.output_shape(16) == ((n, 16, 16) if task.kind.dense else (n,))
    pred = torch.zeros(3, *data.task.output_shape(16 if task.kind.dense else r))
    losses = per_item_loss(data.task, pred, batch.y, batch.mask)
    assert losses.shape == (3,) and losses.dtype == torch.float32 and torch.isfinite(losses).all()
    trivial = trivial_losses(data.task, data.target, data.target, data.mask)
    assert trivial.shape == (len(data),) and torch.isfinite(trivial).all()


def test_class_counts_come_from_the_bank(train_split):
    assert n_outputs(get_task("segmentsemantic"), train_split) == len(train_split.manifest["classes"])
    assert n_outputs(get_task("class_scene"), train_split) == len(train_split.manifest["scene_types"])
    assert n_outputs(get_task("class_object"), train_split) == train_split["class_object"].shape[1]
    assert n_outputs(get_task("jigsaw"), train_split) == train_split["jigsaw_permutations"].shape[0]
    assert n_outputs(get_task("point_match"), train_split) == 2


def test_standardisation(train_split):
    for name in ("rgb2sfnorm", "room_layout", "fix_pose"):
        task = get_task(name)
        y = encode_target(task, train_split, fit_stats(task, train_split))
        dims = [d for d in range(y.dim()) if d != 1]
        assert torch.allclose(y.mean(dims), torch.zeros(y.shape[1]), atol=1e-4)
        assert torch.allclose(y.std(dims), torch.ones(y.shape[1]), atol=1e-3)
    depth = get_task("rgb2depth")
    stats = fit_stats(depth, train_split)
    y = encode_target(depth, train_split, stats)
    raw = np.log(train_split["rgb2depth"].astype(np.float32))
    centred = raw - raw.mean(axis=(2, 3), keepdims=True)
    assert abs(stats["mean"][0]) < 1e-6 and stats["std"][0] > 0
    assert torch.allclose(y * stats["std"][0], torch.from_numpy(centred), atol=1e-5)
    assert torch.allclose(y.mean((1, 2, 3)), torch.zeros(len(y)), atol=1e-4)


def test_standardisation_statistics_come_from_the_first_stats_items(train_split, monkeypatch):
    """fit_stats reads at most STATS_ITEMS labels (the first), so its cost does not grow with the split."""
    import taskonomy.nets.data as D

    task = get_task("rgb2sfnorm")
    monkeypatch.setattr(D, "STATS_ITEMS", 5)
    stats = fit_stats(task, train_split)
    first = torch.from_numpy(train_split["rgb2sfnorm"][:5].astype(np.float64))     # (5, 3, H, W)
    assert np.allclose(stats["mean"], first.mean((0, 2, 3)).numpy(), atol=1e-6)
    assert np.allclose(stats["std"], first.std((0, 2, 3)).numpy(), atol=1e-6)
    monkeypatch.setattr(D, "STATS_ITEMS", train_split.n_views)
    assert not np.allclose(stats["mean"], fit_stats(task, train_split)["mean"])     # the rest was left out


def _inputs(name: str, split) -> torch.Tensor:
    """What the encoder of ``name`` sees for every view: the stored views decoded as a batch would be."""
    task = get_task(name)
    return decode_views(input_views(task, split), task.transform)[:, 0]     # (V, 3, R, R) float


def test_input_transforms_are_deterministic(train_split):
    plain = _inputs("autoencoder", train_split)                               # (V, 3, R, R)
    assert plain.dtype == torch.float32 and plain.min() >= -1 and plain.max() <= 1
    noisy = _inputs("denoise", train_split)
    assert torch.equal(noisy, _inputs("denoise", train_split))
    assert 0.5 * NOISE_STD < ((noisy - plain) / 2).std() < 1.5 * NOISE_STD
    other = fake_split("test", n_scenes=6)                                    # another split seed
    assert not torch.equal(noisy - plain, _inputs("denoise", other) - _inputs("autoencoder", other))
    masked = _inputs("inpainting", train_split)
    assert (masked[:, :, 4:12, 4:12] == 0).all() and torch.equal(masked[:, :, :4], plain[:, :, :4])
    gray = _inputs("colorization", train_split)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])


def test_images_stay_uint8_until_the_batch(train_split):
    """The split keeps the bank's bytes (one uint8 tensor shared by the plain, masked and grayscale
    tasks); a batch decodes only its own items, to the same floats the whole split would give."""
    shared: dict = {}
    datas = {n: load_task_data(train_split, get_task(n), fit_stats(get_task(n), train_split), shared)
             for n in ("autoencoder", "inpainting", "colorization", "segmentsemantic", "denoise")}
    stored = datas["autoencoder"].views
    assert stored.dtype == torch.uint8 and stored.shape[1:] == (1, 3, 16, 16)
    assert all(datas[n].views is stored for n in ("inpainting", "colorization", "segmentsemantic"))
    assert datas["denoise"].views.dtype == torch.float32                     # noise fixed per view: float
    assert datas["segmentsemantic"].target.dtype == torch.uint8              # class ids compact too
    items = torch.tensor([3, 0, 5])
    for name in ("autoencoder", "inpainting", "colorization"):
        assert torch.equal(datas[name].batch(items).x[:, 0], _inputs(name, train_split)[items])
    seg = datas["segmentsemantic"]
    k = seg.task.out_channels
    loss = per_item_loss(seg.task, torch.zeros(3, k, 16, 16), seg.batch(items).y)
    assert torch.allclose(loss, torch.full((3,), math.log(k)))                # uint8 ids: cross-entropy as long ids


def test_trivial_baselines_from_counts_equal_the_one_hot_mean(monkeypatch):
    """Class frequencies from chunked counts give exactly the losses of the mean one-hot label (the
    definition, computed here the memory-hungry way), with chunks smaller than the split."""
    import taskonomy.tasks as T

    monkeypatch.setattr(T, "CHUNK_ITEMS", 7)
    rng = np.random.default_rng(3)
    task = get_task("segmentsemantic").with_outputs(5)
    train = torch.from_numpy(rng.integers(0, 5, (40, 6, 6)).astype(np.uint8))
    train[train == 2] = IGNORE_INDEX                                          # unlabelled pixels count for nothing
    test = torch.from_numpy(rng.integers(0, 5, (9, 6, 6)).astype(np.uint8))
    labelled = (train != IGNORE_INDEX).unsqueeze(-1)
    onehot = torch.nn.functional.one_hot(torch.where(labelled[..., 0], train, 0).long(), 5).double() * labelled
    counts = onehot.sum(0) + 1                                                # (H, W, K)
    logp = (counts / counts.sum(-1, keepdim=True)).log().movedim(-1, 0).float()
    expected = per_item_loss(task, logp.expand(9, -1, -1, -1), test)
    assert torch.equal(trivial_losses(task, train, test), expected)
    # the metric loss's same-segment rate: chunked exact counts
    ids = torch.from_numpy(rng.integers(0, 3, (40, 10)))
    samples = torch.stack([torch.arange(10).expand(40, 10), ids], 2)
    rate = (ids.unsqueeze(2) == ids.unsqueeze(1)).double().mean().item()
    assert T.same_segment_rate(samples) == pytest.approx(rate, rel=1e-15)
    # a continuous target: the chunked float64 mean
    depth = torch.randn(40, 1, 4, 4)
    assert torch.allclose(T.mean_target(depth), depth.double().mean(0), atol=1e-15)


def test_jigsaw_tiles_follow_the_stored_permutation():
    image = torch.arange(18 * 18, dtype=torch.float32).view(1, 1, 18, 18).expand(1, 3, 18, 18)
    perm = torch.tensor([[8, 7, 6, 5, 4, 3, 2, 1, 0]])
    tiles = jigsaw_tiles(image, perm)                                         # (1, 9, 3, 9, 9)
    identity = jigsaw_tiles(image, torch.arange(9).view(1, 9))
    assert tiles.shape == (1, 9, 3, 9, 9)
    assert torch.equal(tiles[0, 0], identity[0, 8]) and torch.equal(tiles[0, 8], identity[0, 0])
    assert identity[0, 0].mean() < identity[0, 1].mean() < identity[0, 3].mean()   # row-major cells


def test_losses_have_the_documented_values():
    depth = get_task("rgb2depth")
    pred, y = torch.zeros(2, 1, 2, 2), torch.tensor([1.0, -3.0, 0, 0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    mask = torch.tensor([True, False, True, True]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    assert torch.allclose(per_item_loss(depth, pred, y, mask), torch.tensor([1 / 3, 1 / 3]))
    assert torch.allclose(per_item_loss(get_task("edge3d"), pred, y, mask), torch.tensor([1 / 3, 1 / 3]))
    unmasked = get_task("keypoint2d")                                         # L2, no mask
    assert torch.allclose(per_item_loss(unmasked, pred, y, mask), torch.tensor([10 / 4, 10 / 4]))
    pose = per_item_loss(get_task("ego_motion"), torch.zeros(1, 18), torch.tensor([[3.0, 4.0] + [0] * 16]))
    assert torch.allclose(pose, torch.tensor([5.0]))
    soft = per_item_loss(get_task("class_object"), torch.zeros(2, 4),            # uniform prediction
                         torch.tensor([[0.25] * 4, [1.0, 0, 0, 0]]))
    assert torch.allclose(soft, torch.tensor([0.0, np.log(4)], dtype=torch.float32))   # KL(y || p)


def test_sign_free_encodings(train_split):
    axes = get_task("vanishing_point")
    v = torch.from_numpy(np.asarray(train_split["vanishing_point"])).view(-1, 3, 3)
    flipped = type(train_split)({**train_split.arrays, "vanishing_point": (-v).flatten(1).numpy()},
                                train_split.manifest, "flipped")
    stats = fit_stats(axes, train_split)
    assert torch.allclose(encode_target(axes, train_split, stats), encode_target(axes, flipped, stats))
    assert load_task_data(train_split, axes, stats).task.out_channels == 18
    curvature = get_task("curvature")
    y = encode_target(curvature, train_split, {"mean": [0.0, 0.0], "std": [1.0, 1.0]})
    raw = torch.from_numpy(train_split["curvature"].astype(np.float32))
    assert torch.allclose(y, raw.sign() * raw.abs().log1p())


def test_metric_loss_rewards_separated_segments():
    ids = torch.tensor([0, 0, 1, 1])
    samples = torch.stack([torch.arange(4), ids], 1).unsqueeze(0)             # (1, 4, 2)
    apart = torch.zeros(1, 2, 2, 2)
    apart[0, 0].view(-1)[2:] = 10.0                                           # segment 1 far from segment 0
    together = torch.zeros(1, 2, 2, 2)
    assert metric_loss(apart, samples).item() < 1e-3
    assert metric_loss(together, samples).item() > 5
    # trivial: every pair gets the train same-segment rate (here 1/2) -> BCE = log 2
    trivial = trivial_losses(get_task("segment2d"), samples, samples)
    assert torch.allclose(trivial, torch.tensor([np.log(2)], dtype=torch.float32), atol=1e-6)


def test_trivial_baseline_is_the_mean_prediction():
    task = get_task("room_layout")
    train = torch.tensor([[1.0] * 9, [3.0] * 9])
    assert torch.allclose(trivial_losses(task, train, torch.full((1, 9), 2.0)), torch.zeros(1))
    cls = get_task("class_scene").with_outputs(3)
    losses = trivial_losses(cls, torch.tensor([0, 0, 0, 1]), torch.tensor([0, 2]))
    freq = torch.tensor([4.0, 2.0, 1.0]) / 7                                  # +1 smoothing
    assert torch.allclose(losses, -freq[[0, 2]].log())


def test_missing_label_names_task_and_file(train_split):
    arrays = {k: v for k, v in train_split.arrays.items() if k != "keypoint2d"}
    broken = type(train_split)(arrays, train_split.manifest, "bank/train")
    with pytest.raises(DataError, match=r"^keypoint2d: bank/train/keypoint2d.npy is missing from the bank$"):
        load_task_data(broken, get_task("keypoint2d"), {})


@pytest.mark.parametrize("name,array,value,message", [
    ("segmentsemantic", "segmentsemantic", 99, r"segmentsemantic.npy: class id 99 out of range 0\.\.4"),
    ("class_scene", "class_scene", -1, r"class_scene.npy: class id -1 out of range 0\.\.2"),
    ("jigsaw", "jigsaw", 6, r"jigsaw.npy: class id 6 out of range 0\.\.5"),
    ("fix_pose", "fix_pose_index", 10_000, r"fix_pose_index.npy: view 10000 out of range 0\.\.\d+"),
])
def test_bank_labels_out_of_range_are_one_line_before_torch(name, array, value, message):
    """A class id or a view index out of range would crash inside torch mid-training; loading names the
    task, the file and the value instead."""
    from fake_bank import fake_split

    from taskonomy.errors import DataError
    split = fake_split("train")
    bad = np.array(split.arrays[array])
    bad.flat[0] = value
    split.arrays[array] = bad
    with pytest.raises(DataError, match=message):
        load_task_data(split, get_task(name), fit_stats(get_task(name), split))

