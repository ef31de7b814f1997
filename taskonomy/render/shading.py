"""Materials and lighting: albedo from solid-texture patterns, point lights with cast shadows, tone mapping.

Radiance at a pixel: ``albedo * (ambient + sum_l vis_l * I_l * max(0, n.l) * f(r_l)) + specular``, with
``f(r) = 1 / (1 + (r / 3 m)^2)`` a soft distance falloff and ``vis_l`` the light's visibility from the
point (a shadow ray from the light towards the point, cast only for points that face the light). The
image is the radiance clipped to [0, 1], gamma-encoded (1/2.2) and quantised to uint8.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from taskonomy.render.raycast import Primitives, occluded
from taskonomy.render.scene import CHECKER, NOISE, STRIPES, Scene

FALLOFF = 3.0      # m
SHININESS = 32.0
LIT = 0.02         # n.l below this counts as unlit (no shadow ray at grazing light)


@dataclass(frozen=True)
class Lighting:
    """Materials (S scenes x M, flat ``s * M + m``) and lights (S x L) of a batch of scenes."""
    pattern: Tensor      # (S * M,)
    table: Tensor        # (S * M, 18): waves (9, row-major), phase (3), colour_a (3), colour_b (3)
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
    return Lighting(pattern=stack("pattern", np.int64), table=table, specular=stack("specular"), per_scene=m,
                    light_pos=torch.from_numpy(np.array([s.light_pos for s in scenes], np.float32)),
                    light_rgb=torch.from_numpy(np.array([s.light_rgb for s in scenes], np.float32)),
                    ambient=torch.tensor([s.ambient for s in scenes], dtype=torch.float32))


def albedo(lighting: Lighting, material: Tensor, point: Tensor) -> Tensor:
    """Albedo (k, 3) of flat materials ``material`` (k,) at texture-frame points ``point`` (k, 3)."""
    pattern = lighting.pattern[material]
    table = lighting.table.index_select(0, material)                                         # (k, 18)
    waves = table[:, :9].reshape(-1, 3, 3)
    wave = (waves * point[:, None, :]).sum(-1) + table[:, 9:12]                               # (k, 3)
    cell = wave.floor()
    checker = (cell.sum(-1) % 2).abs()
    stripes = cell[:, 0] % 2
    noise = (0.5 + 0.35 * wave.sin().sum(-1)).clamp(0, 1)
    mix = torch.where(pattern == CHECKER, checker,
                      torch.where(pattern == STRIPES, stripes, torch.where(pattern == NOISE, noise, 0.0)))
    a, b = table[:, 12:15], table[:, 15:18]
    return a + mix[:, None] * (b - a)


def tile_order(resolution: int) -> tuple[Tensor, int]:
    """Row-major pixel indices (R * R,) listed tile by tile (square tiles of up to 8 x 8 pixels, row-major
    within a tile), and the pixels per tile."""
    side = math.gcd(resolution, 8)
    n = resolution // side
    order = torch.arange(resolution * resolution).reshape(n, side, n, side).transpose(1, 2).reshape(-1)
    return order, side * side


def shade(prims: Primitives, lighting: Lighting, scene: Tensor, dirs: Tensor, point: Tensor, normal: Tensor,
          base: Tensor, gloss: Tensor, shadows: bool) -> Tensor:
    """Linear radiance (V, N, 3) of view pixels (row-major R x R images): rays ``dirs`` (V, N, 3) hit
    ``point`` with ``normal``, albedo ``base`` (V, N, 3) and specular weight ``gloss`` (V, N).

    Shadow rays are cast in tile order, so that each image tile is culled as one bundle."""
    V, N, _ = dirs.shape
    order, bundle = tile_order(math.isqrt(N))
    unorder = torch.empty_like(order)
    unorder[order] = torch.arange(N)
    diffuse = lighting.ambient[scene][:, None, None].expand(V, N, 1).clone()
    specular = torch.zeros(V, N, 1)
    for light in range(lighting.light_pos.shape[1]):
        pos = lighting.light_pos[scene, light]                         # (V, 3)
        rgb = lighting.light_rgb[scene, light][:, None, :]             # (V, 1, 3)
        to_light = pos[:, None] - point
        dist = to_light.norm(dim=-1)
        l = to_light / dist[..., None]
        cos = (normal * l).sum(-1)
        lit = (cos > LIT) & (rgb.sum(-1) > 0)
        if shadows and bool(lit.any()):
            # rays from the light towards the points; the margin keeps the point's own surface out
            blocked = occluded(prims, scene, pos, -l[:, order], (dist * (1 - 1e-4) - 1e-3)[:, order],
                               lit[:, order], bundle)
            lit &= blocked[:, unorder].logical_not_()
        weight = (lit * cos / (1 + (dist / FALLOFF) ** 2))[..., None]   # (V, N, 1)
        diffuse = diffuse + weight * rgb
        half = l - dirs
        half = half / half.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        highlight = (normal * half).sum(-1, keepdim=True).clamp_min(0) ** SHININESS
        specular = specular + (weight > 0) * highlight * rgb / (1 + (dist[..., None] / FALLOFF) ** 2)
    return diffuse * base + gloss[..., None] * specular
