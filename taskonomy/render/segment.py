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
    node = np.arange(B * H * W).reshape(B, H, W)
    same_x = k[:, :, 1:] == k[:, :, :-1]                   # (B, H, W - 1)
    same_y = k[:, 1:, :] == k[:, :-1, :]                   # (B, H - 1, W)
    head = np.concatenate([node[:, :, 1:][same_x], node[:, 1:, :][same_y]])
    tail = np.concatenate([node[:, :, :-1][same_x], node[:, :-1, :][same_y]])
    graph = csr_matrix((np.ones(len(head), np.int8), (head, tail)), shape=(B * H * W, B * H * W))
    _, label = graph_components(graph, directed=False)
    label = label.reshape(B, H * W)
    return torch.from_numpy((label - label[:, :1]).reshape(B, H, W).astype(np.int64))
