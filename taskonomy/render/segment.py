"""Connected-component labelling of per-pixel keys, for segment2d / segment25d.

Two 4-neighbours are connected when their keys are equal. All images of a batch form one graph (pixels
are nodes, equal-key neighbour pairs are edges; no edge crosses images) whose components
``scipy.sparse.csgraph.connected_components`` finds in one C call. It numbers components in the order of
their lowest node, i.e. in raster order of each region's first pixel, and the images are consecutive
blocks of nodes, so subtracting each image's first label numbers its regions 0..K-1.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components as graph_components
from torch import Tensor


def connected_components(key: Tensor) -> Tensor:
    """Region ids (B, H, W) int64, 0..K-1 per image, of the 4-connected regions of equal ``key`` (B, H, W)."""
    k = key.numpy()
    B, H, W = k.shape
    n = B * H * W
    # edges from each pixel to its right and lower neighbours when keys match; rows are pixels, so the
    # graph is built directly in CSR form (row i lists i + 1 and then i + W, already sorted)
    right = np.zeros((B, H, W), bool)
    down = np.zeros((B, H, W), bool)
    right[:, :, :-1] = k[:, :, 1:] == k[:, :, :-1]
    down[:, :-1, :] = k[:, 1:, :] == k[:, :-1, :]
    node = np.arange(n)
    both = np.stack([np.where(right.ravel(), node + 1, -1), np.where(down.ravel(), node + W, -1)], axis=1)
    indices = both[both >= 0]                                  # (edges,) row-major: row i's edges in order
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(right.ravel().astype(np.int64) + down.ravel(), out=indptr[1:])
    graph = csr_matrix((np.ones(len(indices), np.int8), indices, indptr), shape=(n, n))
    _, label = graph_components(graph, directed=False)
    label = label.reshape(B, H * W)
    return torch.from_numpy((label - label[:, :1]).reshape(B, H, W).astype(np.int64))
