"""The transfer function of Taskonomy's readouts, and the trunk of the ``pixels`` baseline.

A transfer ``s1..sK -> t`` is ``head_t(transfer_function(concat_k rep_k))``: the frozen source
representations (concatenated along channels for K > 1), a small trainable transfer function, and a
FRESHLY initialised head of the target's kind, trained jointly (reference §2.4,
``transfer_two_stream_with_bn_ends_l2l0_no_image`` with ``unlock_decoder=True``)::

    r = clip(r, mu - 5 sigma, mu + 5 sigma)      per-channel batch moments, training only
    r = BN(r)
    a = ReLU(BN(conv3x3(r))); a = ReLU(BN(conv3x3(a)))     stream 1
    b = ReLU(BN(conv3x3(r))); b = ReLU(BN(conv3x3(b)))     stream 2 (same input, no image)
    z = BN(concat[a, b])                                    -> 2 * width channels

Deviations, on purpose: plain BatchNorm instead of batch renorm (the renorm ramp spans thousands of
steps we never take); ``width`` is one source's channel count for every order, so the head of a
target has the same input width at every order; optional x/y coordinate channels appended after the
input BN (prototype lesson: they let the readout localise, which pushed the ``random`` canary to last).

``pixels`` (reference §2.5, ``side_encoder_l2``) replaces the frozen representation by a tiny net
trained from scratch on the image: conv3x3 (4, BN, ReLU) -> conv3x3 stride s (width, BN) ->
concatenated with itself -> BN, giving the head the same (2 * width, h, w) input as a transfer.

Every module here takes and returns per-view tensors ``(B, V, C, h, w)`` (V = 1 for single-image
targets, 2 or 3 for pairwise / triplet targets); views share weights (siamese towers).
"""
from __future__ import annotations

import torch
from torch import nn


def _fold(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    b, v = x.shape[:2]
    return x.reshape(b * v, *x.shape[2:]), v  # (B*V, C, h, w)


def _unfold(x: torch.Tensor, views: int) -> torch.Tensor:
    return x.reshape(-1, views, *x.shape[1:])  # (B, V, C, h, w)


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                               nn.BatchNorm2d(c_out)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def clip_sigma(x: torch.Tensor, k: float = 5.0) -> torch.Tensor:
    """Clip each channel of ``x`` (N, C, h, w) to mean +- k std of the batch (over N, h, w)."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return torch.maximum(torch.minimum(x, mean + k * std), mean - k * std)


def coord_channels(n: int, h: int, w: int, device=None, dtype=None) -> torch.Tensor:
    """x and y in [-1, 1] as two channels: (n, 2, h, w)."""
    ys = torch.linspace(-1, 1, h, device=device, dtype=dtype)
    xs = torch.linspace(-1, 1, w, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).expand(n, 2, h, w)


class TransferFunction(nn.Module):
    """clip +-5 sigma -> BN -> two streams of [conv3x3 + BN + ReLU] x 2 -> concat -> BN."""

    def __init__(self, in_channels: int, width: int, coords: bool = True):
        super().__init__()
        self.coords = coords
        self.bn_in = nn.BatchNorm2d(in_channels)
        c = in_channels + (2 if coords else 0)
        self.stream_a = nn.Sequential(*_conv_bn_relu(c, width), *_conv_bn_relu(width, width))
        self.stream_b = nn.Sequential(*_conv_bn_relu(c, width), *_conv_bn_relu(width, width))
        self.bn_out = nn.BatchNorm2d(2 * width)
        self.out_channels = 2 * width

    def forward(self, rep: torch.Tensor) -> torch.Tensor:
        r, views = _fold(rep)  # (B*V, C_in, h, w)
        if self.training:
            r = clip_sigma(r)
        r = self.bn_in(r)
        if self.coords:
            r = torch.cat([r, coord_channels(r.shape[0], *r.shape[2:], device=r.device, dtype=r.dtype)], 1)
        z = self.bn_out(torch.cat([self.stream_a(r), self.stream_b(r)], 1))  # (B*V, 2*width, h, w)
        return _unfold(z, views)


class PixelsTrunk(nn.Module):
    """The ``pixels`` baseline's side encoder: image (B, V, 3, H, W) -> (B, V, 2*width, H/s, W/s)."""

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        self.net = nn.Sequential(*_conv_bn_relu(in_channels, 4),
                                 *_conv_bn_relu(4, width, stride=stride, relu=False))
        self.bn_out = nn.BatchNorm2d(2 * width)
        self.out_channels = 2 * width

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x, views = _fold(image)  # (B*V, 3, H, W)
        z = self.net(x)
        return _unfold(self.bn_out(torch.cat([z, z], 1)), views)  # (B, V, 2*width, h, w)


class Readout(nn.Module):
    """``head(trunk(x))``: a transfer function or pixels trunk feeding a fresh target head."""

    def __init__(self, trunk: nn.Module, head: nn.Module):
        super().__init__()
        self.trunk = trunk
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
