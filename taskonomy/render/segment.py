"""Connected-component labelling of per-pixel keys, vectorised over images (for segment2d / segment25d).

Two 4-neighbours are connected when their keys are equal. Every pixel starts labelled with its own
raster index; each round takes the minimum label over connected neighbours, lets the pixel a label
points at adopt that minimum too (hooking, as in union-find), then follows labels as pointers twice
(``label = label[label]``, pointer jumping), so that long regions converge in a few rounds instead of
one pixel per round. A label always names a pixel of the same region with a smaller
index, so the fixed point labels each region by its first pixel. Regions are then numbered 0..K-1 per
image in raster order of their first pixel.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _min_over_neighbours(label: Tensor, same_x: Tensor, same_y: Tensor) -> Tensor:
    new = label.clone()
    left, right = label[:, :, :-1], label[:, :, 1:]
    new[:, :, :-1] = torch.where(same_x, torch.minimum(new[:, :, :-1], right), new[:, :, :-1])
    new[:, :, 1:] = torch.where(same_x, torch.minimum(new[:, :, 1:], left), new[:, :, 1:])
    up, down = label[:, :-1, :], label[:, 1:, :]
    new[:, :-1, :] = torch.where(same_y, torch.minimum(new[:, :-1, :], down), new[:, :-1, :])
    new[:, 1:, :] = torch.where(same_y, torch.minimum(new[:, 1:, :], up), new[:, 1:, :])
    return new


def connected_components(key: Tensor) -> Tensor:
    """Region ids (B, H, W) int64, 0..K-1 per image, of the 4-connected regions of equal ``key`` (B, H, W)."""
    B, H, W = key.shape
    same_x = key[:, :, 1:] == key[:, :, :-1]                   # (B, H, W - 1)
    same_y = key[:, 1:, :] == key[:, :-1, :]                   # (B, H - 1, W)
    index = torch.arange(H * W).expand(B, H * W)               # (B, H * W)
    label = index.reshape(B, H, W).clone()
    label = label.reshape(B, H * W)
    while True:
        low = _min_over_neighbours(label.reshape(B, H, W), same_x, same_y).reshape(B, H * W)
        # hooking: the pixel a label points at adopts the smaller label too (union-find style)
        new = torch.minimum(label.scatter_reduce(1, label, low, "amin"), low)
        new = new.gather(1, new)
        new = new.gather(1, new)
        if torch.equal(new, label):
            break
        label = new
    first = (label == index).long()
    ids = first.cumsum(1) - 1                                  # region number at each region's first pixel
    return ids.gather(1, label).reshape(B, H, W)
