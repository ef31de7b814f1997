"""Connected-component labelling of per-pixel keys, for segment2d / segment25d.

Two 4-neighbours are connected when their keys are equal. The key images (B, H, W) become one boolean
lattice (B, 2H - 1, 2W - 1): even rows and columns hold the pixels (always set), the cells between two
neighbours hold "keys equal", and the cells between four pixels stay clear. The 4-connected regions of
that lattice, within each image, are the regions of equal key; ``scipy.ndimage.label`` finds them in one
C pass. It numbers regions in raster order of their first cell, and a region's first cell is a pixel, so
regions are numbered in raster order of their first pixel; the images are consecutive blocks, so
subtracting each image's first label numbers its regions 0..K-1.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

# 4-neighbours within one image of a (B, H, W) stack; no connection across images
_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1, 1, :] = True
_IN_PLANE[1, :, 1] = True


def connected_components(key: Tensor) -> Tensor:
    """Region ids (B, H, W) int64, 0..K-1 per image, of the 4-connected regions of equal ``key`` (B, H, W)."""
    k = key.numpy()
    B, H, W = k.shape
    lattice = np.zeros((B, 2 * H - 1, 2 * W - 1), bool)
    lattice[:, ::2, ::2] = True                                   # pixels
    lattice[:, ::2, 1::2] = k[:, :, 1:] == k[:, :, :-1]           # between horizontal neighbours
    lattice[:, 1::2, ::2] = k[:, 1:, :] == k[:, :-1, :]           # between vertical neighbours
    label, _ = ndimage.label(lattice, structure=_IN_PLANE)
    label = label[:, ::2, ::2].reshape(B, H * W).astype(np.int64)
    return torch.from_numpy((label - label[:, :1]).reshape(B, H, W))
