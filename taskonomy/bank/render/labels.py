"""Dense labels derived from the image and the geometry buffers of rendered views.

All filters are 3 x 3 stencils on replicate-padded images, each output pixel computed alone (compiled
loops, no convolution kernels): the bytes do not depend on the batch size or the number of threads.
Images are (V, C, R, R) float32.

- 2D (from the clean image): ``edge2d`` Sobel gradient magnitude of the grey image; ``keypoint2d``
  Harris response ``det(M) - 0.05 tr(M)^2`` (clipped at 0) of the structure tensor M of the grey image;
  ``segment2d`` connected regions of equal quantised colour (4 levels per channel, after a small blur).
- 3D (from the geometry): ``edge3d`` occlusion edges, blurred; ``keypoint3d`` Harris response of the
  normal field (corners and tips, where normals vary in two directions); ``segment25d`` connected
  regions of one surface and one normal direction (dominant axis and sign).
"""
from __future__ import annotations

import torch
from torch import Tensor

from taskonomy.bank.render import kernels
from taskonomy.bank.render.segment import connected_components
from taskonomy.bank.render.vector import sqrt_

HARRIS_K = 0.05
COLOUR_LEVELS = 4
OCCLUSION_GAP = 4.0      # pixel footprints between the two sides of an occlusion edge


# The filters below leave out their normalisation (powers of 2) and the callers apply it once at the end:
# scaling by a power of 2 is exact, so the floats are the same as normalising each pass, in fewer passes.
# The stencils run as compiled loops (taskonomy.bank.render.kernels), one pass over the pixels each.

def _blur_sum(x: Tensor) -> Tensor:
    """16 x the separable [1, 2, 1] / 4 smoothing of (V, C, R, R)."""
    out = torch.empty(x.shape)
    kernels.blur_sum(x.contiguous().numpy(), out.numpy())
    return out


def _sobel_8(x: Tensor) -> tuple[Tensor, Tensor]:
    """8 x the horizontal and vertical Sobel derivatives of (V, C, R, R), per pixel."""
    gx, gy = torch.empty(x.shape), torch.empty(x.shape)
    kernels.sobel_8(x.contiguous().numpy(), gx.numpy(), gy.numpy())
    return gx, gy


def harris(x: Tensor) -> Tensor:
    """Harris corner response (V, 1, R, R) of a multi-channel image (V, C, R, R), >= 0 (the derivatives and
    the structure tensor in one pass, kernels.sobel_structure_8)."""
    V, C, H, W = x.shape
    m = torch.empty(V, 3, H, W)
    kernels.sobel_structure_8(x.contiguous().numpy(), m.numpy())
    return _response(m)


def _harris_8(gx: Tensor, gy: Tensor) -> Tensor:
    """Harris response from 8 x the Sobel derivatives (V, C, R, R)."""
    V, C, H, W = gx.shape
    m = torch.empty(V, 3, H, W)
    kernels.structure_8(gx.numpy(), gy.numpy(), m.numpy())
    return _response(m)


def _response(m: Tensor) -> Tensor:
    """The response of the structure tensor (V, 3, R, R) of 8 x the derivatives, summed over channels:
    blurred as one stack, then ``det - HARRIS_K tr^2`` clipped at 0. The response is degree 2 in the
    blurred tensor, which is 16 * 64 times too large, hence the final 2^-20 (kernels.harris_response)."""
    out = torch.empty(m.shape[0], 1, *m.shape[2:])
    kernels.harris_response(_blur_sum(m).numpy(), HARRIS_K, 2.0 ** -20, out.numpy())
    return out


def grey(rgb: Tensor) -> Tensor:
    """Luma (V, 1, R, R) in [0, 1] of an sRGB image (V, 3, R, R) in [0, 1]."""
    return (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]


def edge_and_keypoint2d(rgb: Tensor) -> tuple[Tensor, Tensor]:
    """``edge2d`` and ``keypoint2d`` from one Sobel pass over the grey image (both start from it)."""
    gx, gy = _sobel_8(grey(rgb))
    return sqrt_(gx * gx + gy * gy).mul_(0.125), _harris_8(gx, gy)


def segment2d(rgb: Tensor) -> Tensor:
    """Ids (V, R, R) of connected regions of one quantised colour."""
    level = _blur_sum(rgb).mul_(COLOUR_LEVELS / 16).floor_().clamp_(0, COLOUR_LEVELS - 1)   # (V, 3, R, R)
    key = (level[:, 0] * COLOUR_LEVELS + level[:, 1]).mul_(COLOUR_LEVELS).add_(level[:, 2])  # exact in float
    return connected_components(key)


def segment25d(surface: Tensor, normal: Tensor) -> Tensor:
    """Ids (V, R, R) of connected regions of one surface (V, R, R) and one normal direction: the dominant
    axis (the first of ties) and its sign (kernels.normal_keys)."""
    key = torch.empty(surface.shape, dtype=torch.int32)
    kernels.normal_keys(surface.contiguous().numpy(), normal.contiguous().numpy(), key.numpy())
    return connected_components(key)


def keypoint3d(normal: Tensor) -> Tensor:
    return harris(normal)


def edge3d(point: Tensor, normal: Tensor, surface: Tensor, is_room: Tensor, focal: float) -> Tensor:
    """Occlusion edges (V, 1, R, R) in [0, 1], blurred twice.

    Neighbours on different surfaces form an occlusion edge when one lies off the other's tangent plane
    by more than OCCLUSION_GAP pixel footprints (depth / focal); at a crease both stay close. Room faces
    never occlude each other (the room is a convex box seen from inside). One compiled pass over the
    neighbour pairs (kernels.occlusion_edges).
    """
    V, _, H, W = point.shape
    edge = torch.zeros(V, H, W, dtype=torch.bool)
    kernels.occlusion_edges(point.contiguous().numpy(), normal.contiguous().numpy(), surface.contiguous().numpy(),
                            is_room.contiguous().numpy(), OCCLUSION_GAP, focal, edge.numpy())
    return _blur_sum(_blur_sum(edge.reshape(V, 1, H, W).float())).mul_(1 / 256)
