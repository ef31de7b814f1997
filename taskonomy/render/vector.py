"""3-vector arithmetic on (..., 3) tensors, written component by component.

A reduction over a last dimension of 3 (``(a * b).sum(-1)``, ``norm(dim=-1)``) or a batch of tiny
matrix products runs far slower on the CPU than three fused multiply-adds over the components, and the
renderer does little else per pixel; these helpers are the fast forms.
"""
from __future__ import annotations

import torch
from torch import Tensor


def dot(a: Tensor, b: Tensor) -> Tensor:
    """Dot products (...) of (..., 3) vectors (broadcasting)."""
    a0, a1, a2 = a.unbind(-1)
    b0, b1, b2 = b.unbind(-1)
    return torch.addcmul(torch.addcmul(a0 * b0, a1, b1), a2, b2)


def norm(a: Tensor) -> Tensor:
    """Lengths (...) of (..., 3) vectors."""
    return dot(a, a).sqrt()


def rotate(rot: Tensor, v: Tensor) -> Tensor:
    """``R v`` (..., 3) for rotations (..., 3, 3) and vectors (..., 3): the columns weighted by v."""
    v0, v1, v2 = v[..., None].unbind(-2)
    return torch.addcmul(torch.addcmul(rot[..., 0] * v0, rot[..., 1], v1), rot[..., 2], v2)


def rotate_back(rot: Tensor, v: Tensor) -> Tensor:
    """``R^T v`` (..., 3): the rows of R weighted by v."""
    v0, v1, v2 = v[..., None].unbind(-2)
    return torch.addcmul(torch.addcmul(rot[..., 0, :] * v0, rot[..., 1, :], v1), rot[..., 2, :], v2)
