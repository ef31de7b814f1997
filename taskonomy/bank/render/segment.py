"""Connected-component labelling of per-pixel keys, for segment2d / segment25d.

Two 4-neighbours are connected when their keys are equal. Each row splits into horizontal runs of equal
key (numbered in raster order); two runs of equal key in adjacent rows of one image are joined when they
overlap, and an overlap always begins where one of the two runs begins, so only the columns where a run
starts in either row need testing. ``scipy.sparse.csgraph.connected_components`` then labels the run
graph in one C pass (a run graph is several times smaller than the pixel grid). It numbers components in
order of their lowest node, and runs are numbered in raster order, so regions are numbered in raster
order of their first pixel; no edge joins two images and the images are consecutive blocks, so
subtracting each image's first label numbers its regions 0..K-1.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as graph_components
from torch import Tensor


def connected_components(key: Tensor) -> Tensor:
    """Region ids (B, H, W) int32, 0..K-1 per image, of the 4-connected regions of equal ``key`` (B, H, W)."""
    k = key.numpy()
    B, H, W = k.shape
    start = np.ones(k.shape, bool)                                # a run starts here
    start[:, :, 1:] = k[:, :, 1:] != k[:, :, :-1]
    run = np.cumsum(start.reshape(-1), dtype=np.int32) - 1     # (B * H * W,) run of each pixel
    n_runs = int(run[-1]) + 1
    run = run.reshape(B, H, W)
    joined = (k[:, 1:] == k[:, :-1]) & (start[:, 1:] | start[:, :-1])   # (B, H - 1, W) vertical joins
    upper, lower = run[:, :-1][joined], run[:, 1:][joined]
    graph = coo_matrix((np.ones(len(upper), bool), (upper, lower)), shape=(n_runs, n_runs))
    _, component = graph_components(graph, directed=False)
    label = component.astype(np.int32)[run].reshape(B, H * W)
    return torch.from_numpy((label - label[:, :1]).reshape(B, H, W))
