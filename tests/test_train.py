"""The training loop: every task learns, per-item evaluation, exact resume, clear failures."""
from __future__ import annotations

import dataclasses
import logging
import math
import warnings

import numpy as np
import pytest
import torch

from fake_bank import fake_split
from taskonomy.config import TrainTaskParams
from taskonomy.nets.data import Batch, fit_stats, load_task_data
from taskonomy.errors import DataError, TaskonomyError
from taskonomy.nets.models import build_task_network
from taskonomy.tasks import TASKS, get_task
from taskonomy.nets.train import (LoopConfig, code_version, evaluate_per_item, fit, load_checkpoint, load_encoder,
                             load_task_network, save_checkpoint, task_checkpoint, task_loss, train_task_network)

TINY = TrainTaskParams(width=4, head_width=16, epochs=4, batch_size=8, lr=3e-3)
LOOP = LoopConfig.from_params(TINY)
TRAINABLE = [t for t in TASKS.values() if t.trainable]


@pytest.fixture(scope="module")
def splits():
    return fake_split("train", n_scenes=8), fake_split("test", n_scenes=3)


def _setup(task_name, splits, seed=0):
    task = get_task(task_name)
    stats = fit_stats(task, splits[0])
    data = load_task_data(splits[0], task, stats)
    torch.manual_seed(seed)
    return data, build_task_network(data.task, TINY, data.resolution), task_loss(data.task)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("task", TRAINABLE, ids=lambda t: t.name)
def test_every_task_learns_and_evaluates_per_item(task, splits):
    run = train_task_network(task, *splits, TINY)
    losses = [row["train_loss"] for row in run.fit.history]
    assert len(losses) == TINY.epochs and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses
    expected = splits[1][task.index].shape[0] if task.index else splits[1].n_views
    assert run.test_losses.shape == (expected,) == run.trivial_losses.shape
    assert run.test_losses.dtype == np.float32 and np.isfinite(run.test_losses).all()
    assert all("test_loss" in row for row in run.fit.history)


def test_evaluation_is_in_item_order_and_matches_batches(splits):
    data, net, loss = _setup("room_layout", splits)
    per_item = evaluate_per_item(net, data, loss, batch_size=5)
    net.eval()
    with torch.no_grad():
        direct = loss(net(data.batch(torch.tensor([7, 3])).x), data.batch(torch.tensor([7, 3])))
    assert np.allclose(per_item[[7, 3]], direct.numpy(), atol=1e-6)
    assert np.allclose(per_item, evaluate_per_item(net, data, loss, batch_size=64), rtol=1e-6, atol=1e-6)  # BLAS blocking


def test_epoch_items_trains_on_a_fresh_subset_each_epoch(splits):
    data, net, loss = _setup("class_scene", splits)
    seen = []

    class Recorder:
        def __len__(self):
            return len(data)

        def batch(self, items):
            seen.append(items.clone())
            return data.batch(items)

    cfg = dataclasses.replace(LOOP, epochs=2, batch_size=4, epoch_items=9)
    result = fit(net, Recorder(), loss, cfg, name="class_scene")
    assert len(seen) == 2 * (9 // 4) and all(len(b) == 4 for b in seen)           # 2 steps of 4 per epoch
    first, second = torch.cat(seen[:2]), torch.cat(seen[2:])
    assert len(first.unique()) == 8 and not torch.equal(first.sort().values, second.sort().values)
    assert len(result.history) == 2
    full = dataclasses.replace(cfg, epoch_items=0)
    seen.clear()
    fit(net, Recorder(), loss, full, name="class_scene")
    assert len(seen) == 2 * (len(data) // 4)


def test_training_is_deterministic(splits):
    runs = []
    for _ in range(2):
        data, net, loss = _setup("segmentsemantic", splits)
        fit(net, data, loss, LOOP, name="segmentsemantic")
        runs.append(net)
    assert _same_weights(*runs)


class Interrupt(Exception):
    pass


def _interrupted(name, splits, ckpt, fingerprint=None):
    """Two of LOOP's epochs of ``name`` written to ``ckpt``, then an interrupt; returns the data, the
    interrupted network and the loss."""
    def stop_after_two(epoch, row):
        if epoch == 2:
            raise Interrupt
    data, net, loss = _setup(name, splits)
    with pytest.raises(Interrupt):
        fit(net, data, loss, LOOP, name=name, checkpoint=ckpt, fingerprint=fingerprint,
            on_epoch_end=stop_after_two)
    return data, net, loss


@pytest.mark.parametrize("name", ["class_scene", "rgb2sfnorm"])   # FC head with dropout; dense decoder
def test_interrupted_run_resumes_to_identical_weights(name, splits, tmp_path):
    data, reference, loss = _setup(name, splits)
    fit(reference, data, loss, LOOP, name=name)
    ckpt = tmp_path / "checkpoint.pt"
    data, first, loss = _interrupted(name, splits, ckpt)
    assert load_checkpoint(ckpt)["epoch"] == 2
    torch.manual_seed(123)                      # the resumed process has a different RNG state
    data, resumed, loss = _setup(name, splits, seed=99)
    result = fit(resumed, data, loss, LOOP, name=name, checkpoint=ckpt)
    assert result.resumed_from == 2 and len(result.history) == LOOP.epochs
    assert _same_weights(reference, resumed)
    assert not _same_weights(reference, first)


@pytest.mark.parametrize("change", ["code", "inputs", "task", "loop", "no stamp"])
def test_a_checkpoint_that_does_not_belong_starts_afresh_and_says_why(change, splits, tmp_path, monkeypatch, caplog):
    """Resumed only when the same code, settings, task and data made it; otherwise a fresh run that ends
    where an uninterrupted one does, with one warning naming what differs."""
    import taskonomy.nets.train as train_module

    ckpt = tmp_path / "checkpoint.pt"
    data, _, loss = _interrupted("class_scene", splits, ckpt, fingerprint={"task": "class_scene", "inputs": "a"})
    fingerprint, cfg = {"task": "class_scene", "inputs": "a"}, LOOP
    if change == "code":
        real = code_version()
        monkeypatch.setattr(train_module, "code_version", lambda: {**real, "code_sha256": "edited"})
    elif change == "inputs":
        fingerprint["inputs"] = "b"
    elif change == "task":
        fingerprint["task"] = "rgb2depth"
    elif change == "loop":
        cfg = dataclasses.replace(LOOP, weight_decay=0.5)
    else:
        state = load_checkpoint(ckpt)
        del state["fingerprint"]
        save_checkpoint(ckpt, state)
    torch.manual_seed(0)
    net = build_task_network(data.task, TINY, data.resolution)
    with caplog.at_level(logging.WARNING, logger="taskonomy.nets.train"):
        result = fit(net, data, loss, cfg, name="class_scene", checkpoint=ckpt, fingerprint=fingerprint)
    assert result.resumed_from == 0 and len(result.history) == cfg.epochs
    words = {"code": "code (the package's sources changed)", "inputs": "inputs (the bank's arrays changed)",
             "task": "task", "loop": "loop settings", "no stamp": "settings (no record of what made it)"}[change]
    assert [r.getMessage() for r in caplog.records] == [
        f"class_scene: starting afresh: {ckpt} was written with other {words}"]
    if change != "loop":
        torch.manual_seed(0)
        clean = build_task_network(data.task, TINY, data.resolution)
        fit(clean, data, loss, LOOP, name="class_scene")
        assert _same_weights(net, clean)


def test_task_run_records_its_inputs(splits):
    """The training data's digest (in the resume stamp and model.pt) changes with any array's content."""
    data, _, _ = _setup("class_scene", splits)
    same, _, _ = _setup("class_scene", splits)
    assert data.digest() == same.digest() and len(data.digest()) == 64
    edited = dataclasses.replace(data, target=data.target.clone())
    edited.target[0] = (edited.target[0] + 1) % data.task.out_channels
    assert edited.digest() != data.digest()
    assert dataclasses.replace(data, views=data.views.flip(0)).digest() != data.digest()


@pytest.mark.parametrize("reader", ["load_encoder", "load_task_network", "load_source_encoder"])
def test_a_model_of_another_task_is_refused(reader, splits, tmp_path):
    """class_scene's model.pt copied over rgb2depth's is one line naming both, not rgb2depth's encoder."""
    from taskonomy.transfer.engine import load_source_encoder

    task = get_task("class_scene")
    run = train_task_network(task, *splits, TrainTaskParams(width=4, head_width=16, epochs=1, batch_size=8))
    path = tmp_path / "rgb2depth" / "model.pt"
    path.parent.mkdir()
    save_checkpoint(path, task_checkpoint(task, TINY, network=run.network, run=run))
    read = {"load_encoder": lambda: load_encoder(path, task="rgb2depth"),
            "load_task_network": lambda: load_task_network(path, get_task("rgb2depth")),
            "load_source_encoder": lambda: load_source_encoder(path, "rgb2depth")}[reader]
    with pytest.raises(DataError, match=rf"^{path}: a checkpoint of task 'class_scene', not of 'rgb2depth' "
                                        r"\(copied or moved\?\); rerun `dvc repro train_task@rgb2depth`$"):
        read()
    assert load_encoder(path, task="class_scene").out_channels == load_encoder(path).out_channels


def test_non_finite_loss_names_task_epoch_and_step(splits):
    data, net, loss = _setup("vanishing_point", splits)
    calls = []

    def poisoned(pred, batch):
        calls.append(1)
        value = loss(pred, batch)
        return value * float("nan") if len(calls) == 7 else value

    steps = len(data) // TINY.batch_size                                       # 4 per epoch here
    with pytest.raises(TaskonomyError, match=rf"^vanishing_point: non-finite training loss \(nan\) at epoch "
                                             rf"{7 // steps + 1}, step {7 - steps * (7 // steps)};"):
        fit(net, data, poisoned, LOOP, name="vanishing_point")


def test_huge_learning_rate_stops_cleanly(splits):
    data, net, loss = _setup("rgb2depth", splits)
    with pytest.raises(TaskonomyError, match=r"^rgb2depth: non-finite training loss .* at epoch \d+, step \d+"):
        fit(net, data, loss, LoopConfig.from_params(TINY, lr=1e30, optimizer="sgd", epochs=20), name="rgb2depth")


def test_schedules(splits):
    data, net, loss = _setup("class_scene", splits)
    cosine = fit(net, data, loss, LOOP, name="c").history
    assert cosine[-1]["lr"] == pytest.approx(0.0, abs=1e-12) and cosine[0]["lr"] < LOOP.lr
    data, net, loss = _setup("class_scene", splits)
    step = fit(net, data, loss, LoopConfig.from_params(TINY, schedule="step"), name="s").history
    assert [row["lr"] for row in step] == pytest.approx([LOOP.lr, LOOP.lr, LOOP.lr * 0.1, LOOP.lr * 0.1])
    data, net, loss = _setup("class_scene", splits)
    constant = fit(net, data, loss, LoopConfig.from_params(TINY, schedule="constant", optimizer="adam"),
                   name="k").history
    assert {row["lr"] for row in constant} == {LOOP.lr}


def test_loop_is_generic():
    """Any module and any batch source: here a linear model on a toy regression."""
    class Toy:
        x = torch.randn(64, 1, 3)
        y = x[:, 0] @ torch.tensor([1.0, -2.0, 0.5])

        def __len__(self):
            return 64

        def batch(self, items):
            return Batch(self.x[items], self.y[items])

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.Linear(3, 1), torch.nn.Flatten(0))
    result = fit(model, Toy(), lambda pred, b: (pred - b.y).square(),
                 LoopConfig(epochs=30, batch_size=16, lr=0.05, schedule="constant"), name="toy")
    assert result.history[-1]["train_loss"] < 1e-3
    assert torch.allclose(model[1].weight, torch.tensor([[1.0, -2.0, 0.5]]), atol=0.05)


def test_corrupt_checkpoint_is_one_line_naming_the_file(tmp_path, splits):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match=rf"^{bad}: corrupt or unreadable checkpoint"):
        load_checkpoint(bad)
    data, net, loss = _setup("class_scene", splits)
    with pytest.raises(DataError, match="corrupt or unreadable"):
        fit(net, data, loss, LOOP, name="class_scene", checkpoint=bad)
    save_checkpoint(tmp_path / "other.pt", {"something": 1})
    with pytest.raises(DataError, match="not a taskonomy checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_final_checkpoint_round_trip(splits, tmp_path):
    task = get_task("rgb2sfnorm")
    run = train_task_network(task, *splits, TrainTaskParams(width=4, head_width=16, epochs=1, batch_size=8))
    path = tmp_path / "model.pt"
    save_checkpoint(path, task_checkpoint(task, TINY, network=run.network, run=run, params={"p": 1}))
    payload = load_checkpoint(path)
    assert payload["code"]["code_sha256"] == code_version()["code_sha256"]
    assert payload["train_task"]["width"] == 4 and payload["stats"] == run.stats
    encoder = load_encoder(path)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    x = run.test.batch(torch.arange(2)).x[:, 0]
    run.network.eval()
    with torch.no_grad():
        assert torch.equal(encoder(x), run.network.encoder(x))
        network, _ = load_task_network(path, task)
        assert torch.equal(network(x[:, None]), run.network(x[:, None]))


def test_onednn_is_off_only_for_narrow_convolutions():
    """Narrow (< 8-channel) convolutions train with PyTorch's own CPU kernels: oneDNN's corrupt the heap on
    AVX2 hosts there. The default widths keep oneDNN (2-3x faster)."""
    from taskonomy.nets.train import cpu_kernels, _has_narrow_convs

    depth = get_task("rgb2depth").with_outputs(1)
    assert not _has_narrow_convs(build_task_network(depth, TrainTaskParams(width=16), 32))
    narrow = build_task_network(depth, TrainTaskParams(width=4), 32)
    assert _has_narrow_convs(narrow)
    before = torch.backends.mkldnn.enabled, torch.backends.mkldnn.deterministic
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # only the one switch: no TF32 setting and its warning
        with cpu_kernels(narrow, torch.device("cpu")):
            assert not torch.backends.mkldnn.enabled
        with pytest.raises(RuntimeError), cpu_kernels(narrow, torch.device("cpu")):
            raise RuntimeError("restored on the way out")
    assert (torch.backends.mkldnn.enabled, torch.backends.mkldnn.deterministic) == before


@pytest.mark.parametrize("width", [8, 12])
def test_width_8_and_12_encoders_train_at_64_px(width):
    """A strided 1x1 convolution reading 8 or 12 channels aborted the process in oneDNN's backward pass at
    64 px ("double free or corruption"): such a network trains with PyTorch's kernels, in a process of
    its own here so that a regression fails this test instead of killing the run."""
    import subprocess
    import sys

    from taskonomy.nets.train import _has_narrow_convs

    cfg = TrainTaskParams(width=width, head_width=16)
    assert _has_narrow_convs(build_task_network(get_task("rgb2sfnorm"), cfg, 64))
    assert not _has_narrow_convs(build_task_network(get_task("rgb2sfnorm"), TrainTaskParams(width=24), 64))
    code = f"""
import torch
from taskonomy.config import TrainTaskParams
from taskonomy.nets.models import build_task_network
from taskonomy.nets.train import cpu_kernels
from taskonomy.tasks import get_task
torch.manual_seed(0)
net = build_task_network(get_task("rgb2sfnorm"), TrainTaskParams(width={width}), 64).to(memory_format=torch.channels_last)
with cpu_kernels(net, torch.device("cpu")):
    for _ in range(3):
        net(torch.randn(32, 1, 3, 64, 64)).mean().backward()
print("trained")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "trained" in proc.stdout, proc.stderr[-500:]


def test_a_deferred_loss_check_still_names_the_first_bad_step(splits, monkeypatch):
    """On a GPU the loss is checked once per epoch from a device-side record: the same line names the
    first non-finite step (here forced on the CPU)."""
    import taskonomy.nets.train as T

    monkeypatch.setattr(T, "DEFERRED_CHECKS", ("cpu", "cuda"))
    data, net, loss = _setup("vanishing_point", splits)
    calls = []

    def poisoned(pred, batch):
        calls.append(1)
        value = loss(pred, batch)
        return value * float("nan") if len(calls) in (6, 7) else value     # epoch 2, steps 2 and 3

    with pytest.raises(TaskonomyError, match=r"^vanishing_point: non-finite training loss \(nan\) at epoch 2, step 2;"):
        fit(net, data, poisoned, LOOP, name="vanishing_point")
    assert len(calls) == 8                                  # the epoch ran to its end, then stopped before saving


def test_deferred_and_eager_checks_train_the_same(splits, monkeypatch):
    import taskonomy.nets.train as T

    eager_data, eager, loss = _setup("rgb2depth", splits)
    eager_rows = fit(eager, eager_data, loss, LOOP, name="rgb2depth").history
    monkeypatch.setattr(T, "DEFERRED_CHECKS", ("cpu", "cuda"))
    data, deferred, loss = _setup("rgb2depth", splits)
    assert fit(deferred, data, loss, LOOP, name="rgb2depth").history == eager_rows
    assert _same_weights(eager, deferred)


def test_eval_every_records_fewer_test_losses_and_trains_the_same(splits):
    data, every, loss = _setup("class_scene", splits)
    test = load_task_data(splits[1], get_task("class_scene"), {})
    rows = fit(every, data, loss, LOOP, name="class_scene", eval_data=test).history
    data, sparse, loss = _setup("class_scene", splits)
    sparse_rows = fit(sparse, data, loss, dataclasses.replace(LOOP, eval_every=3), name="class_scene",
                      eval_data=test).history
    assert [("test_loss" in r) for r in sparse_rows] == [False, False, True, True]   # epoch 3 and the last (4)
    assert sparse_rows[2]["test_loss"] == rows[2]["test_loss"] and sparse_rows[3] == rows[3]
    assert _same_weights(every, sparse)
    data, last, loss = _setup("class_scene", splits)
    assert [("test_loss" in r) for r in fit(last, data, loss, dataclasses.replace(LOOP, eval_every=0),
                                             name="class_scene", eval_data=test).history] == [False] * 3 + [True]


def test_data_placement_and_out_of_memory_lines(splits):
    from taskonomy.nets.train import out_of_memory, place_data

    data, _, _ = _setup("segmentsemantic", splits)
    assert place_data(data, torch.device("cpu"), "x") is data                  # the CPU reads the split as it is
    moved = data.to("cpu")
    assert moved.nbytes == data.nbytes == sum(t.numel() * t.element_size() for t in
                                              (data.views, data.index, data.target, data.mask) if t is not None)
    assert torch.equal(moved.batch(torch.tensor([1, 0])).x, data.batch(torch.tensor([1, 0])).x)
    err = RuntimeError("CUDA out of memory. Tried to allocate 3.50 GiB. GPU 0 has a total capacity of 79.1 GiB")
    line = str(out_of_memory("rgb2depth", 512, err))
    assert line.startswith("rgb2depth: batch size 512 does not fit in GPU memory (it asked for 3.50 GiB more")
    assert "lower the stage's batch_size" in line and "\n" not in line
