"""The target domain of stage ``render_target``: the same kind of rooms, other appearance, identical geometry.

A :class:`Domain` is a list of shifts (``taskonomy.config.ADAPT_SHIFTS``) at one severity ``s`` in [0, 1];
every shift is systematic (the same change for every scene: that is what makes it a domain), and only the
sensor noise is random. They compose in this order:

- ``palette``: every material colour's hue turned by ``s / 2`` of a turn and its saturation scaled by
  ``1 + s`` (capped at 1), in HSV of the linear colour (Python floats: +, -, *, / only);
- ``lighting``: dimmer, bluish-poor lights, ``light_rgb * (1, 1 - 0.35 s, 1 - 0.7 s) * (1 - 0.4 s)``,
  and ``ambient * (1 - 0.5 s)``;
- ``fog``: ``radiance = T * radiance + (1 - T) * FOG_COLOUR`` with transmittance
  ``T = 1 / (1 + (s t / FOG_DISTANCE)^2)`` over the hit distance t (a ray that escapes: T = 0);
- ``blur``: a Gaussian of sigma ``s * BLUR_SIGMA * R / 32`` pixels on the linear radiance, separable,
  edge-replicated;
- ``noise``: additive Gaussian sensor noise of std ``NOISE_STD * s`` on the linear radiance, drawn with
  NumPy from each scene's own stream (:func:`sensor`'s ``noise``).

``palette`` and ``lighting`` change a sampled :class:`~taskonomy.bank.render.scene.Scene` (:meth:`Domain.restyle`,
no numbers drawn, so the scene's geometry and cameras are those of the source domain); ``fog`` acts on the
radiance of the scene (:meth:`Domain.fog`), and the 2D labels (edge2d, keypoint2d, segment2d) are made from
that image; ``blur`` and ``noise`` are the camera's (:meth:`Domain.sensor`) and reach only ``rgb``.

Bytes: like the rest of the renderer, the per-pixel work keeps to operations IEEE 754 rounds exactly (+, -,
*, / and comparisons, one torch kernel each, so no fused multiply-add decides a last bit): no torch
``exp``, ``log`` or ``pow``, whose AVX2 and AVX-512 kernels differ (see shading.encode). The blur weights
are Python floats computed once; the noise is NumPy's, never torch's, so it depends on the scene and not on
the chunk, the worker or the thread count.
"""
from __future__ import annotations

import colorsys
import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from taskonomy.bank.render.scene import Scene
from taskonomy.config import ADAPT_SHIFTS, AdaptParams

HUE_TURN = 0.5                          # turns of hue at severity 1
SATURATION_GAIN = 1.0                   # saturation * (1 + gain * s)
LIGHT_TINT = (0.0, 0.35, 0.7)           # light_rgb * (1 - tint * s), per channel ...
LIGHT_DIMMING = 0.4                     # ... * (1 - dimming * s)
AMBIENT_DIMMING = 0.5                   # ambient * (1 - dimming * s)
FOG_DISTANCE = 3.0                      # m: at severity 1, half the light of a surface this far gets through
FOG_COLOUR = (0.45, 0.5, 0.55)          # linear radiance of the fog
BLUR_SIGMA = 1.0                        # pixels of a 32-pixel image at severity 1 (scales with resolution)
NOISE_STD = 0.025                       # linear radiance at severity 1 (dark pixels gain most after gamma)


@dataclass(frozen=True)
class Domain:
    """The shifts (in :data:`ADAPT_SHIFTS` order) and their severity; ``off`` is the source domain."""
    shift: tuple[str, ...]
    severity: float

    def __post_init__(self):
        unknown = [name for name in self.shift if name not in ADAPT_SHIFTS]
        if unknown:
            raise ValueError(f"unknown shift {unknown[0]!r} (known: {', '.join(ADAPT_SHIFTS)})")
        if not 0 <= self.severity <= 1:
            raise ValueError(f"severity must be in [0, 1], got {self.severity!r}")
        object.__setattr__(self, "shift", tuple(name for name in ADAPT_SHIFTS if name in self.shift))

    @classmethod
    def from_params(cls, a: AdaptParams) -> Domain:
        return cls(tuple(a.shift), float(a.severity))

    @property
    def off(self) -> bool:
        """Renders the source domain exactly (severity 0 or no shift)."""
        return self.severity == 0 or not self.shift

    @property
    def has_sensor(self) -> bool:
        """Blurs or adds noise: the image differs from the one the 2D labels are made from."""
        return not self.off and bool({"blur", "noise"} & set(self.shift))

    def describe(self) -> dict:
        """What a manifest records."""
        return {"shift": list(self.shift), "severity": self.severity}

    def __str__(self) -> str:
        return f"{' + '.join(self.shift) or 'no shift'} at severity {self.severity:g}"

    # ----------------------------------------------------------------------------------------------
    # The scene: materials and lights
    # ----------------------------------------------------------------------------------------------

    def restyle(self, scene: Scene) -> Scene:
        """``scene`` with the domain's material colours and lights; its geometry untouched."""
        if self.off:
            return scene
        s, changes = self.severity, {}
        if "palette" in self.shift:
            changes.update(colour_a=_recolour(scene.colour_a, s), colour_b=_recolour(scene.colour_b, s))
        if "lighting" in self.shift:
            tint = np.array([(1 - t * s) * (1 - LIGHT_DIMMING * s) for t in LIGHT_TINT])
            changes.update(light_rgb=scene.light_rgb * tint, ambient=scene.ambient * (1 - AMBIENT_DIMMING * s))
        return dataclasses.replace(scene, **changes)

    # ----------------------------------------------------------------------------------------------
    # The image: fog, then the sensor's blur and noise
    # ----------------------------------------------------------------------------------------------

    def fog(self, radiance: Tensor, t: Tensor) -> Tensor:
        """Radiance (3, V, N) seen through fog over hit distances ``t`` (V, N); unchanged without fog."""
        if self.off or "fog" not in self.shift:
            return radiance
        q = t * (self.severity / FOG_DISTANCE)
        transmit = q.mul_(q).add_(1).reciprocal_()                                       # (V, N), 0 at t = inf
        colour = torch.tensor(FOG_COLOUR, dtype=radiance.dtype)[:, None, None]           # (3, 1, 1)
        fogged = (radiance - colour).mul_(transmit).add_(colour)
        return torch.where(transmit > 0, fogged, colour)          # an escaped ray: fog only, whatever it shaded

    def sensor(self, radiance: Tensor, resolution: int, noise: Sequence[np.random.Generator]) -> Tensor:
        """What the camera records of radiance (3, V, N) of R x R views: blurred, then noisy. ``noise[v]`` is
        the generator of view v's scene, drawn in view order (3 N normals per view)."""
        if not self.has_sensor:
            return radiance
        if "blur" in self.shift:
            radiance = blur(radiance, resolution, self.severity * BLUR_SIGMA * resolution / 32)
        if "noise" in self.shift:
            _, V, N = radiance.shape
            std = NOISE_STD * self.severity
            draws = np.stack([(std * noise[v].standard_normal((3, N))).astype(np.float32) for v in range(V)],
                             axis=1)                                                     # (3, V, N)
            radiance = radiance + torch.from_numpy(draws)
        return radiance


def _recolour(colours: np.ndarray, s: float) -> np.ndarray:
    """Linear RGB colours (M, 3) with hue turned by ``HUE_TURN * s`` and saturation scaled, per colour."""
    out = []
    for r, g, b in colours.tolist():
        h, sat, v = colorsys.rgb_to_hsv(r, g, b)
        out.append(colorsys.hsv_to_rgb((h + HUE_TURN * s) % 1.0, min(1.0, sat * (1 + SATURATION_GAIN * s)), v))
    return np.array(out).reshape(colours.shape)


def gaussian_weights(sigma: float) -> list[float]:
    """Normalised Gaussian taps at offsets -r..r, r = ceil(3 sigma), as float32 values (Python floats)."""
    radius = math.ceil(3 * sigma)
    taps = [math.exp(-k * k / (2 * sigma * sigma)) for k in range(-radius, radius + 1)]
    return torch.tensor([w / sum(taps) for w in taps], dtype=torch.float32).tolist()


def blur(x: Tensor, resolution: int, sigma: float) -> Tensor:
    """Gaussian blur of planar images (C, V, R * R): along x, then y, each a sum of edge-replicated shifted
    copies times :func:`gaussian_weights`, in a fixed order (no convolution kernel: the bytes do not depend
    on threads or instruction set)."""
    if sigma <= 0:
        return x
    weights = gaussian_weights(sigma)
    radius = len(weights) // 2
    image = x.reshape(x.shape[0], x.shape[1], resolution, resolution)                    # (C, V, R, R)
    padded = torch.arange(-radius, resolution + radius).clamp_(0, resolution - 1)        # edges replicated
    for dim in (3, 2):
        wide = image.index_select(dim, padded)                                           # R + 2 radius along dim
        total = wide.narrow(dim, 0, resolution) * weights[0]
        for k, w in enumerate(weights[1:], start=1):
            total.add_(wide.narrow(dim, k, resolution) * w)
        image = total
    return image.reshape(x.shape)
