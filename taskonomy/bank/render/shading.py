"""Materials and lighting: albedo from solid-texture patterns, point lights with cast shadows, tone mapping.

Radiance at a pixel: ``albedo * (ambient + sum_l vis_l * I_l * max(0, n.l) * f(r_l)) + specular``, with
``f(r) = 1 / (1 + (r / 3 m)^2)`` a soft distance falloff and ``vis_l`` the light's visibility from the
point (a shadow ray from the light towards the point, cast only for points that face the light). The
image is the radiance gamma-encoded (1/2.2) and quantised to uint8 (:func:`encode`), by comparisons only,
so its bytes do not depend on which vector-math kernels a machine dispatches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from taskonomy.bank.render import kernels
from taskonomy.bank.render.raycast import Primitives, shadowed
from taskonomy.bank.render.scene import Scene
from taskonomy.bank.render.vector import planar_dot

FALLOFF = 3.0      # m
SHININESS_LOG2 = 5   # Blinn-Phong exponent 2^5 = 32
LIT = 0.02         # n.l below this counts as unlit (no shadow ray at grazing light)
GAMMA = 2.2

# The radiances at which the 8-bit code steps up: round(255 * x ** (1 / GAMMA)) reaches k at
# x = ((k - 0.5) / 255) ** GAMMA, k = 1..255. Python floats (libm's pow), then rounded to float32 once.
ENCODE_STEPS = torch.tensor([((k - 0.5) / 255) ** GAMMA for k in range(1, 256)], dtype=torch.float32)


@dataclass(frozen=True)
class Lighting:
    """Materials (S scenes x M, flat ``s * M + m``) and lights (S x L) of a batch of scenes."""
    pattern: Tensor      # (S * M,)
    table: Tensor        # (18, S * M): waves (9, row-major), phase (3), colour_a (3), colour_b (3)
    specular: Tensor     # (S * M,)
    per_scene: int       # M
    light_pos: Tensor    # (S, L, 3)
    light_rgb: Tensor    # (S, L, 3)
    ambient: Tensor      # (S,)


def pack_lighting(scenes: list[Scene]) -> Lighting:
    m = max(len(s.pattern) for s in scenes)

    def stack(name: str, dtype=np.float32) -> Tensor:
        first = getattr(scenes[0], name)
        out = np.zeros((len(scenes), m) + first.shape[1:], dtype)
        for i, s in enumerate(scenes):
            value = getattr(s, name)
            out[i, :len(value)] = value
        return torch.from_numpy(out.reshape((len(scenes) * m,) + first.shape[1:]))

    table = torch.cat([stack("waves").flatten(1), stack("phase"), stack("colour_a"), stack("colour_b")], dim=1)
    table = table.t().contiguous()                     # a material's entries in one column: rows gather fast
    return Lighting(pattern=stack("pattern", np.int64), table=table, specular=stack("specular"), per_scene=m,
                    light_pos=torch.from_numpy(np.array([s.light_pos for s in scenes], np.float32)),
                    light_rgb=torch.from_numpy(np.array([s.light_rgb for s in scenes], np.float32)),
                    ambient=torch.tensor([s.ambient for s in scenes], dtype=torch.float32))


def albedo(lighting: Lighting, material: Tensor, point: Tensor) -> Tensor:
    """Albedo (3, k) of flat materials ``material`` (k,) at texture-frame points ``point`` (3, k), planar:
    colour_a + mix * (colour_b - colour_a), mix from the material's pattern of waves ``W p + phase``
    (solid: 0; checker: parity of the sum of the three cells; stripes: parity of the first; noise: the
    sum of the waves' sines, squashed into [0, 1]). kernels.albedo, one pass over the points."""
    out = torch.empty(3, len(material))
    kernels.albedo(lighting.pattern.numpy(), lighting.table.numpy(), material.contiguous().numpy(),
                   point.contiguous().numpy(), out.numpy())
    return out


def encode(radiance: Tensor) -> Tensor:
    """8-bit gamma-encoded image (uint8, same shape) of linear ``radiance``: the number of
    :data:`ENCODE_STEPS` at or below each value, i.e. ``round(255 * clip(x, 0, 1) ** (1 / GAMMA))``.

    Comparisons, not ``exp(log(x) / GAMMA)``: torch's exp and log come from MKL's vector math, whose
    AVX2 and AVX-512 kernels differ in the last bit for about 8% of pixels, and that moved one pixel in
    two million across the rounding boundary (tests/test_render.py)."""
    return torch.bucketize(radiance.contiguous(), ENCODE_STEPS, right=True).to(torch.uint8)


def shade(prims: Primitives, lighting: Lighting, scene: Tensor, dirs: Tensor, point: Tensor, normal: Tensor,
          base: Tensor, gloss: Tensor, shadows: bool) -> Tensor:
    """Linear radiance (3, V, N) of view pixels (row-major R x R images): rays ``dirs`` hit ``point`` with
    ``normal``, albedo ``base`` and specular weight ``gloss`` (V, N); vectors planar (3, V, N)."""
    _, V, N = dirs.shape
    L = lighting.light_pos.shape[1]
    weights, highlights = torch.zeros(L, V, N), torch.zeros(L, V, N)
    normal_dot_ray = planar_dot(normal, dirs)                                        # n.d, (V, N)
    for light in range(L):
        # only the views whose scene uses this light slot
        views = (lighting.light_rgb[scene, light].sum(-1) > 0).nonzero().squeeze(1)
        if views.numel() == 0:
            continue
        every = views.numel() == V
        pick = (lambda x, dim=1: x) if every else (lambda x, dim=1: x.index_select(dim, views))   # noqa: E731
        p, n, d = pick(point), pick(normal), pick(dirs)                              # (3, v, N)
        pos = lighting.light_pos[scene[views], light]                                # (v, 3)
        to_light = pos.t()[..., None] - p                                            # (3, v, N)
        inverse = planar_dot(to_light, to_light).rsqrt_()                            # 1 / distance
        cos = planar_dot(n, to_light).mul_(inverse)                                  # n.l
        falloff = (inverse * FALLOFF).reciprocal_().pow_(2).add_(1).reciprocal_()  # 1 / (1 + (r / FALLOFF)^2)
        lit = cos > LIT
        if shadows and bool(lit.any()):
            # rays from the light towards the points; the margin keeps the point's own surface out
            l = to_light * -inverse
            t_max = inverse.reciprocal().mul_(1 - 1e-4).sub_(1e-3)
            lit &= shadowed(prims, scene[views], pos, l, t_max, lit).logical_not_()
        # Blinn-Phong: n.h with h = (l - d) / |l - d|, |l - d|^2 = 2 - 2 l.d
        half_length = (2 * planar_dot(to_light, d)).mul_(inverse).neg_().add_(2).clamp_min_(1e-18).rsqrt_()
        highlight = (cos - pick(normal_dot_ray, 0)).mul_(half_length).clamp_min_(0)
        for _ in range(SHININESS_LOG2):
            highlight.mul_(highlight)                                                # ** SHININESS
        unlit = lit.logical_not_()
        weight = cos.mul_(falloff).masked_fill_(unlit, 0.0)                          # (v, N)
        highlight = highlight.mul_(falloff).masked_fill_(unlit, 0.0)
        if every:
            weights[light], highlights[light] = weight, highlight
        else:
            weights[light].index_copy_(0, views, weight)
            highlights[light].index_copy_(0, views, highlight)
    rgb = lighting.light_rgb[scene].permute(1, 2, 0)[..., None]                       # (L, 3, V, 1)
    diffuse, specular = weights[0] * rgb[0], highlights[0] * rgb[0]                  # (3, V, N)
    for light in range(1, L):
        diffuse += weights[light] * rgb[light]
        specular += highlights[light] * rgb[light]
    diffuse += lighting.ambient[scene][:, None]
    return torch.addcmul(diffuse.mul_(base), gloss, specular)
