"""Users' own encoders as transfer sources (params ``encoders``; docs/real-data.md, "Your own encoders").

Each entry names a local weight file and an architecture this module builds; nothing is downloaded.

- ``taskonomy``: the original task bank's encoder as its PyTorch ports lay it out (reference section 2.1:
  ResNet-50 with 3, 4, 6, 3 bottlenecks whose last unit in layers 1 and 2 has the stride, conv5 at stride
  1, then ``compress1`` 3x3 to 8 channels with BN and ReLU, and the ports' parameter-free GroupNorm on
  the output), 16x16x8 from 256 px. The file is a state dict (or ``{"state_dict": ...}``, a DataParallel
  ``module.`` prefix allowed) with the ports' parameter names (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
  ``compress1``, ``compress_bn``).
- ``checkpoint``: a task-network checkpoint of this project (``models/<task>/model.pt`` of another run,
  say one trained on real data), any task.

Both see the bank's images in [-1, 1] resized to ``rep_hw`` times their own stride, so that every source's
representation has the same size (``render.resolution / train_task.bottleneck_stride``) and the readouts
and higher-order sets treat a user's encoder like a task network's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from taskonomy.errors import DataError, TaskonomyError

ARCHITECTURES = ("taskonomy", "checkpoint")
TASKBANK_STRIDE = 16          # 256 px -> 16 x 16
TASKBANK_CHANNELS = 8


class _Bottleneck(nn.Module):
    """1x1 -> 3x3 (with the block's stride) -> 1x1 (x4 channels), BN after each, identity or projected skip."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(out + skip)


def _layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """TF-slim's resnet_v1 unit order: the first unit projects the channels, the LAST one strides (its skip
    is a 1x1 max-pool subsampling, which has no parameters)."""
    project = None
    if inplanes != planes * 4:
        project = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4))
    units = [_Bottleneck(inplanes, planes, 1, project)]
    units += [_Bottleneck(planes * 4, planes) for _ in range(blocks - 2)]
    subsample = nn.Sequential(nn.MaxPool2d(kernel_size=1, stride=stride)) if stride != 1 else None
    units.append(_Bottleneck(planes * 4, planes, stride, subsample))
    return nn.Sequential(*units)


class TaskbankEncoder(nn.Module):
    """The original task bank's encoder (reference section 2.1), parameters named as its PyTorch ports."""

    stride = TASKBANK_STRIDE

    def __init__(self, normalize: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)   # TF 'SAME' as the ports have it
        self.layer1 = _layer(64, 64, 3, 2)
        self.layer2 = _layer(256, 128, 4, 2)
        self.layer3 = _layer(512, 256, 6, 1)
        self.layer4 = _layer(1024, 512, 3, 1)
        self.compress1 = nn.Conv2d(2048, TASKBANK_CHANNELS, 3, padding=1, bias=False)
        self.compress_bn = nn.BatchNorm2d(TASKBANK_CHANNELS)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(F.pad(x, (3, 3, 3, 3))))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = F.relu(self.compress_bn(self.compress1(x)))
        return F.group_norm(x, TASKBANK_CHANNELS) if self.normalize else x


class Resized(nn.Module):
    """An encoder fed the images resized to ``size`` (bilinear), so that its output is ``size / stride``."""

    def __init__(self, encoder: nn.Module, size: int):
        super().__init__()
        self.encoder, self.size = encoder, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return self.encoder(x)


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: no such weight file (encoders)") from None
    except Exception as err:          # torch raises many kinds for a file that is not a weight file
        raise DataError(f"{path}: not a PyTorch weight file ({type(err).__name__})") from None
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise DataError(f"{path}: not a state dict of tensors (nor {{'state_dict': ...}})")
    return {k.removeprefix("module."): v for k, v in payload.items()}


def load_taskbank_encoder(path: str | Path, normalize: bool = True) -> TaskbankEncoder:
    """The task bank's encoder with the weights of ``path``; a file that does not match it is one line
    naming the file and the first parameter that differs."""
    path = Path(path)
    encoder = TaskbankEncoder(normalize)
    weights = _state_dict(path)
    expected = encoder.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}      # older torch saved none
    missing = [k for k in expected if k not in weights and k not in optional]
    unexpected = [k for k in weights if k not in expected]
    if missing or unexpected:
        what = f"no {missing[0]!r}" if missing else f"an unknown {unexpected[0]!r}"
        raise DataError(f"{path}: does not match the taskonomy encoder: {what} ({len(missing)} missing, "
                        f"{len(unexpected)} unknown of {len(expected)} parameters)")
    for key, value in weights.items():
        if value.shape != expected[key].shape:
            raise DataError(f"{path}: does not match the taskonomy encoder: {key} has shape {tuple(value.shape)}, "
                            f"expected {tuple(expected[key].shape)}")
    encoder.load_state_dict(weights, strict=False)
    return encoder


def load_user_encoder(name: str, spec: Any, rep_hw: int) -> nn.Module:
    """The frozen encoder of ``encoders.<name>`` (``spec``: its params), fed images resized so that it
    outputs ``rep_hw`` x ``rep_hw``."""
    path = Path(spec.path)
    if not path.is_file():
        raise DataError(f"{path}: no such weight file (encoders.{name}.path)")
    if spec.arch == "taskonomy":
        encoder, stride = load_taskbank_encoder(path, spec.normalize), TASKBANK_STRIDE
    elif spec.arch == "checkpoint":
        from taskonomy.nets.train import load_encoder

        encoder = load_encoder(path)
        stride = encoder.stride
    else:
        raise TaskonomyError(f"encoders.{name}.arch: unknown {spec.arch!r} (known: {', '.join(ARCHITECTURES)})")
    return Resized(encoder, rep_hw * stride).eval().requires_grad_(False)
