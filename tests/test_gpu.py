"""GPU smoke test (``pytest -m gpu``): runs wherever CUDA is present and skips elsewhere.

A task network trains one epoch on the GPU from a device-resident split, is interrupted and resumed to
the end; a readout trains on cached representations; bf16 autocast is on in training and when
encoding; a batch that does not fit is one line. Tolerances, not equality: cuDNN picks its kernels
(``cudnn.benchmark``) and bf16 rounds, so a GPU run equals another only closely.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fake_bank import fake_split
from taskonomy.config import TrainTaskParams, TransferParams
from taskonomy.errors import TaskonomyError
from taskonomy.nets.data import fit_stats, load_task_data
from taskonomy.nets.models import build_encoder, build_task_network
from taskonomy.nets.train import LoopConfig, evaluate_per_item, fit, load_checkpoint, task_loss
from taskonomy.tasks import get_task
from taskonomy.transfer import engine as T
from taskonomy.transfer.executors import ExecutorSpec

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

NET = TrainTaskParams(width=16, head_width=32, epochs=2, batch_size=16, lr=2e-3, device="cuda")


@pytest.fixture(scope="module")
def splits():
    return {s: fake_split(s, n_scenes=n, resolution=32) for s, n in (("train", 16), ("transfer", 6), ("test", 4))}


class Interrupt(Exception):
    pass


def _network(task, data):
    torch.manual_seed(0)
    return build_task_network(data.task, NET, data.resolution)


def test_task_network_trains_on_the_gpu_interrupted_and_resumed(splits, tmp_path):
    task = get_task("rgb2sfnorm")
    stats = fit_stats(task, splits["train"])
    train, test = (load_task_data(splits[s], task, stats) for s in ("train", "test"))
    assert train.views.dtype == torch.uint8
    loop = LoopConfig.from_params(NET, channels_last=True)
    reference = _network(task, train)
    whole = fit(reference, train, task_loss(train.task), loop, name="rgb2sfnorm", eval_data=test)
    assert whole.device.startswith("cuda") and len(whole.history) == 2
    assert torch.backends.cudnn.benchmark

    def stop(epoch, row):
        if epoch == 1:
            raise Interrupt
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Interrupt):
        fit(_network(task, train), train, task_loss(train.task), loop, name="rgb2sfnorm", checkpoint=ckpt, on_epoch_end=stop)
    assert load_checkpoint(ckpt)["epoch"] == 1
    resumed_net = _network(task, train)
    resumed = fit(resumed_net, train, task_loss(train.task), loop, name="rgb2sfnorm", checkpoint=ckpt)
    assert resumed.resumed_from == 1 and len(resumed.history) == 2
    a = evaluate_per_item(reference, test, task_loss(train.task))
    b = evaluate_per_item(resumed_net, test, task_loss(train.task))
    assert np.isfinite(a).all() and np.allclose(a, b, rtol=0.05, atol=1e-3)


def test_training_runs_under_bf16_autocast(splits):
    task = get_task("class_scene")
    data = load_task_data(splits["train"], task, {})
    net = _network(task, data)
    seen = []
    first_conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    fit(net, data, task_loss(data.task), LoopConfig.from_params(NET, epochs=1), name="class_scene")
    assert seen and set(seen) == {torch.bfloat16}


def test_a_readout_trains_on_the_gpu_and_encoding_matches_the_cpu(splits):
    targets = T.load_targets(splits, ["rgb2depth", "class_scene"])
    torch.manual_seed(1)
    enc = build_encoder(NET).eval()
    views = targets["rgb2depth"]["test"].views
    on_gpu = T.encode_views(enc, views, device="cuda")
    on_cpu = T.encode_views(enc, views, device="cpu")
    assert on_gpu.device.type == "cpu" and torch.allclose(on_gpu, on_cpu, rtol=0.05, atol=0.05)   # bf16
    reps = {"edge2d": T.encode_source(enc, targets)}
    context = T.TransferContext(reps, T.strip_views(targets), TransferParams(epochs=2, batch_size=8), NET, device="cuda")
    losses = T.run_transfers(context, [(("edge2d",), "rgb2depth"), (("edge2d",), "class_scene")], ExecutorSpec(threads=1))
    assert all(np.isfinite(losses[t]["edge2d"]).all() for t in ("rgb2depth", "class_scene"))


class Hungry(nn.Module):
    """A model that asks for more memory than any GPU has."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.empty(2 ** 46, device=x.device) * self.w


def test_a_batch_that_does_not_fit_is_one_line(splits):
    task = get_task("class_scene")
    data = load_task_data(splits["train"], task, {})
    with pytest.raises(TaskonomyError, match=r"^class_scene: batch size 16 does not fit in GPU memory \(it asked for .*; "
                                             r"lower the stage's batch_size$"):
        fit(Hungry(), data, lambda pred, batch: pred[:2], LoopConfig.from_params(NET, epochs=1), name="class_scene")
