"""Encoders, heads and task networks: shapes for every task, the transfer-engine interface."""
from __future__ import annotations

import pytest
import torch

from fake_bank import fake_split
from taskonomy.config import TrainTaskParams
from taskonomy.nets.data import load_task_data, fit_stats
from taskonomy.errors import ParamsError
from taskonomy.nets.models import (DenseDecoder, FCHead, TaskNetwork, build_encoder, build_head, build_task_network,
                              encode)
from taskonomy.tasks import TASKS

TINY = TrainTaskParams(width=4, head_width=16)
TRAINABLE = [t for t in TASKS.values() if t.trainable]


@pytest.fixture(scope="module")
def split():
    return fake_split("train", n_scenes=2)


def test_default_encoder_has_the_8x8x8_bottleneck():
    encoder = build_encoder(TrainTaskParams())
    assert encoder(torch.zeros(2, 3, 32, 32)).shape == (2, 8, 8, 8)
    assert (encoder(torch.randn(2, 3, 32, 32)) >= 0).all()                   # compress ends in ReLU
    deeper = build_encoder(TrainTaskParams(depth=2, bottleneck_channels=4, bottleneck_stride=8))
    assert deeper(torch.zeros(1, 3, 32, 32)).shape == (1, 4, 4, 4)
    assert sum(p.numel() for p in deeper.parameters()) > sum(p.numel() for p in encoder.parameters())


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_trunks_give_the_same_bottleneck(arch):
    encoder = build_encoder(TrainTaskParams(arch=arch, bottleneck_stride=16)).eval()
    with torch.no_grad():
        assert encoder(torch.zeros(1, 3, 64, 64)).shape == (1, 8, 4, 4)
    shallow = build_encoder(TrainTaskParams(arch=arch, bottleneck_stride=4)).eval()
    with torch.no_grad():
        assert shallow(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 8, 8)


def test_bad_stride_is_a_params_error():
    with pytest.raises(ParamsError, match="train_task.bottleneck_stride: must be a power of 2, got 3"):
        build_encoder(TrainTaskParams(bottleneck_stride=3))


@pytest.mark.parametrize("task", TRAINABLE, ids=lambda t: t.name)
def test_task_network_shapes(task, split):
    data = load_task_data(split, task, fit_stats(task, split))
    torch.manual_seed(0)
    net = build_task_network(data.task, TINY, data.resolution).eval()
    batch = data.batch(torch.arange(2))
    rep = encode(net.encoder, batch.x)
    # the representation of one input has the same shape for every task (tiles are half size)
    side = data.resolution // TINY.bottleneck_stride
    assert rep.shape == (2, task.n_views, TINY.bottleneck_channels, side, side)
    assert side == (2 if task.n_views == 9 else 4)
    out = net(batch.x)
    assert out.shape == (2, *data.task.output_shape(16))
    assert isinstance(net.head, DenseDecoder if task.kind.dense else FCHead)


@pytest.mark.parametrize("task", TRAINABLE, ids=lambda t: t.name)
def test_fresh_head_takes_any_channel_count(task, split):
    resolved = task.with_outputs(task.out_channels or 5)
    side = 2 if task.n_views == 9 else 4
    head = build_head(resolved, in_channels=16, rep_hw=side, cfg=TINY).eval()
    out = head(torch.randn(3, task.n_views, 16, side, side))                 # (B, k, C, h, w)
    assert out.shape == (3, *resolved.output_shape(16))


def test_views_share_one_encoder():
    task = TASKS["fix_pose"]
    net = build_task_network(task, TINY, 16).eval()
    x = torch.randn(1, 2, 3, 16, 16)
    rep = encode(net.encoder, x)
    assert torch.allclose(rep[0, 0], net.encoder(x[:, 0])[0], atol=1e-6)
    assert torch.allclose(rep[0, 1], net.encoder(x[:, 1])[0], atol=1e-6)
    assert isinstance(net, TaskNetwork)


def test_head_needs_resolved_outputs():
    with pytest.raises(ValueError, match="resolve the output size"):
        build_head(TASKS["class_scene"], 8, 4, TINY)
