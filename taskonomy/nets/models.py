"""One encoder for every task, a head per kind of task, and the task network that joins them.

Public interface (used by task networks here and by transfers next):

- ``build_encoder(cfg) -> Encoder``: image (N, 3, H, W) -> representation (N, C, H/s, W/s), with
  C = ``cfg.bottleneck_channels`` and s = ``cfg.bottleneck_stride`` (Taskonomy: 16x16x8 from 256 px;
  default here 8x8x8 from 32 px). ``arch: small`` stacks torchvision ResNet BasicBlocks
  (``cfg.width``, ``cfg.depth``); ``resnet18`` / ``resnet50`` use a randomly initialised torchvision
  ResNet trunk with its strides cut to reach s. All end in Taskonomy's ``compress1``: conv3x3 + BN + ReLU.
- ``build_head(task, in_channels, rep_hw, cfg) -> Head``: representations (B, k, in_channels, h, w) of
  the k inputs of an item -> prediction, (B, C_out, h*s, w*s) for dense kinds, (B, D) otherwise.
  ``task.out_channels`` must be resolved (``TaskData.task`` is). Transfers build one fresh with
  ``in_channels=16`` for the 2-stream transfer function.
- ``TaskNetwork(encoder, head)``: (B, k, 3, H, W) -> the encoder on each of the k inputs (shared
  weights: siamese for pairs and triplets, 9 towers for jigsaw) -> stacked -> head.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock
from torchvision.ops import Conv2dNormActivation

from taskonomy.errors import ParamsError
from taskonomy.tasks import Task

RESNETS = {"resnet18": (resnet18, 512), "resnet50": (resnet50, 2048)}


def _downsamples(stride: int) -> int:
    n = round(math.log2(stride)) if stride >= 1 else -1
    if n < 0 or 2 ** n != stride:
        raise ParamsError(f"train_task.bottleneck_stride: must be a power of 2, got {stride}")
    return n


def _block(c_in: int, c_out: int, stride: int) -> BasicBlock:
    down = None
    if stride != 1 or c_in != c_out:
        down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
    return BasicBlock(c_in, c_out, stride, downsample=down)


class Encoder(nn.Module):
    """trunk -> compress (conv3x3 to the bottleneck channels, BN, ReLU)."""

    def __init__(self, trunk: nn.Module, trunk_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.trunk = trunk
        self.compress = Conv2dNormActivation(trunk_channels, out_channels, 3)
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (N, 3, H, W) -> (N, C, H/s, W/s)
        return self.compress(self.trunk(x))


def _small_trunk(cfg: Any, downsamples: int) -> tuple[nn.Module, int]:
    """conv stem at full resolution, then one stage per halving: a strided block + depth-1 blocks."""
    layers: list[nn.Module] = [Conv2dNormActivation(3, cfg.width, 3)]
    c = cfg.width
    for i in range(max(downsamples, 1)):
        c_out = cfg.width * 2 ** (i + 1) if downsamples else c
        layers.append(_block(c, c_out, 2 if downsamples else 1))
        layers += [_block(c_out, c_out, 1) for _ in range(cfg.depth - 1)]
        c = c_out
    return nn.Sequential(*layers), c


def _resnet_trunk(arch: str, downsamples: int) -> tuple[nn.Module, int]:
    """A torchvision ResNet (random init, no download) without pooling/fc; strides beyond s removed.

    The trunk halves the resolution 5 times (conv1, maxpool, layer2-4); the halvings past
    ``downsamples`` become stride 1, as Taskonomy did for conv5 to get 16x16 from 256 px.
    """
    make, channels = RESNETS[arch]
    net = make(weights=None)
    stages = [net.conv1, net.maxpool, net.layer2, net.layer3, net.layer4]
    for stage in stages[downsamples:]:
        for m in stage.modules():
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d)) and m.stride in (2, (2, 2)):
                m.stride = 1 if isinstance(m, nn.MaxPool2d) else (1, 1)
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
    return trunk, channels


def build_encoder(cfg: Any) -> Encoder:
    """The encoder of ``cfg`` (a ``TrainTaskParams``): arch, width, depth, bottleneck channels / stride."""
    n = _downsamples(cfg.bottleneck_stride)
    if cfg.arch == "small":
        trunk, channels = _small_trunk(cfg, n)
    elif cfg.arch in RESNETS:
        if n > 5:
            raise ParamsError(f"train_task.bottleneck_stride: at most 32 for {cfg.arch}, got {cfg.bottleneck_stride}")
        trunk, channels = _resnet_trunk(cfg.arch, n)
    else:
        raise ParamsError(f"train_task.arch: unknown {cfg.arch!r} (known: small, {', '.join(RESNETS)})")
    return Encoder(trunk, channels, cfg.bottleneck_channels, cfg.bottleneck_stride)


# --------------------------------------------------------------------------------------------------
# Heads: (B, k, C, h, w) -> prediction
# --------------------------------------------------------------------------------------------------

class DenseDecoder(nn.Module):
    """Convolutional upsampling decoder (Taskonomy's 15-layer decoder, scaled down).

    2 convs at the representation size, then per halving of the encoder a stride-2 deconvolution
    (4x4 ConvTranspose2d + BN + ReLU; channels halve down to ``width``), as the original decoder
    upsampled, then a linear 3x3 conv to the outputs (no tanh: logits and standardised targets are
    unbounded). Deconvolutions, not bilinear x2 + conv: on CPU the bilinear backward pass alone took
    16% of a readout's time, and a 4x4 stride-2 deconv does a 3x3 conv's job in 4/9 of its work.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, upsamples: int):
        super().__init__()
        c = 4 * width
        layers: list[nn.Module] = [Conv2dNormActivation(in_channels, c, 3), Conv2dNormActivation(c, c, 3)]
        for _ in range(upsamples):
            c_out = max(c // 2, width)
            layers += [nn.ConvTranspose2d(c, c_out, 4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c = c_out
        layers.append(nn.Conv2d(c, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        if rep.shape[1] != 1:
            raise ValueError(f"a dense decoder takes one input view, got {rep.shape[1]}")
        return self.net(rep[:, 0])                          # (B, C, h, w) -> (B, C_out, H, W)


class FCHead(nn.Module):
    """Flatten every view's code and concatenate (siamese / multi-tile), then FC-BN-ReLU x2 -> FC.

    Taskonomy's ``encoder_multilayers_fc_bn`` with ``hidden`` units instead of 2048 and dropout 0.2 in
    the first hidden layer (0.5 in the original, which had 100x more data per parameter).
    """

    def __init__(self, in_features: int, out_features: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(1),                                  # (B, k, C, h, w) -> (B, k*C*h*w)
            nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Dropout(0.2),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, out_features))

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        return self.net(rep)


Head = DenseDecoder | FCHead


def build_head(task: Task, in_channels: int, rep_hw: int, cfg: Any) -> Head:
    """A fresh head for ``task`` reading ``task.n_views`` maps of ``in_channels`` x ``rep_hw`` x ``rep_hw``.

    Dense kinds upsample by ``cfg.bottleneck_stride`` back to the image size; the others are FC heads
    of ``cfg.head_width`` units. ``task.out_channels`` must be resolved (see ``TaskData.task``).
    """
    if task.out_channels <= 0:
        raise ValueError(f"{task.name}: resolve the output size first (TaskData.task)")
    if not task.trainable:
        raise ValueError(f"{task.name}: an untrained source has no head")
    if task.kind.dense:
        return DenseDecoder(in_channels, task.out_channels, cfg.width, _downsamples(cfg.bottleneck_stride))
    return FCHead(task.n_views * in_channels * rep_hw * rep_hw, task.out_channels, cfg.head_width)


def encode(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply one encoder to each of k inputs: (B, k, 3, H, W) -> (B, k, C, h, w)."""
    b, k = x.shape[:2]
    rep = encoder(x.flatten(0, 1))                          # (B*k, C, h, w)
    return rep.view(b, k, *rep.shape[1:])


class TaskNetwork(nn.Module):
    """encoder (shared over the k inputs of an item) -> head."""

    def __init__(self, encoder: Encoder, head: Head):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:    # (B, k, 3, H, W) -> prediction
        return self.head(encode(self.encoder, x))


def build_task_network(task: Task, cfg: Any, resolution: int) -> TaskNetwork:
    """Encoder + the task's head for inputs of ``resolution`` (tiles: the tile size)."""
    encoder = build_encoder(cfg)
    if resolution % cfg.bottleneck_stride:
        raise ParamsError(f"train_task.bottleneck_stride: must divide the input size {resolution}, "
                          f"got {cfg.bottleneck_stride}")
    return TaskNetwork(encoder, build_head(task, encoder.out_channels, resolution // cfg.bottleneck_stride, cfg))
