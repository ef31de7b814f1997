"""Procedural rooms: the room box, its objects (built from analytic primitives), materials and lights.

A scene is sampled from one ``numpy.random.Generator`` (seeded from the split seed and the scene index),
so it is a pure function of those. World frame: y up, the floor is the plane y = 0; the room box spans
``[-w/2, w/2] x [0, h] x [-d/2, d/2]``. Every object stands on the floor in its own cell of a jittered
grid, so objects never overlap each other or the walls.

Scene types are data (:data:`SCENE_TYPES`): each has its own distribution of object classes, room sizes,
floor and wall patterns and colours. They overlap on purpose, so that ``class_scene`` is learnable from
the image but not trivial.
"""
from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass

import numpy as np

# Primitive kinds; an ellipsoid with equal axes is a sphere. Every primitive is a unit shape in its own
# frame, scaled per axis, rotated and translated into the world (see taskonomy.bank.render.raycast).
ELLIPSOID, BOX, CYLINDER, CONE = 0, 1, 2, 3
PRIMITIVE_KINDS = ("ellipsoid", "box", "cylinder", "cone")

# Semantic classes (segmentsemantic ids). Room surfaces first, then the object classes.
CLASSES = ("floor", "wall", "ceiling", "ball", "crate", "barrel", "cone", "egg", "table", "lamp", "chair")
FLOOR, WALL, CEILING = 0, 1, 2
FIRST_OBJECT_CLASS = 3
OBJECT_CLASSES = CLASSES[FIRST_OBJECT_CLASS:]

# Albedo patterns, evaluated on the 3D surface point (solid textures need no uv parameterisation).
PATTERNS = ("solid", "checker", "stripes", "noise")
SOLID, CHECKER, STRIPES, NOISE = 0, 1, 2, 3

# Materials of a scene: the three room surfaces, then one per object.
ROOM_MATERIALS = 3


@dataclass(frozen=True)
class SceneType:
    """One room type: weights are relative and aligned with OBJECT_CLASSES / PATTERNS."""
    name: str
    objects: tuple[float, ...]
    floor: tuple[float, ...]
    walls: tuple[float, ...]
    width: tuple[float, float]      # range of room width and depth, m
    height: tuple[float, float]     # range of room height, m
    wall_hue: tuple[float, float]   # hue range in [0, 1) of wall colours
    wall_saturation: tuple[float, float]
    floor_hue: tuple[float, float]


#                                   ball crate barrel cone  egg table lamp chair  solid checker stripes noise
SCENE_TYPES = (
    SceneType("living_room", objects=(0.5, 0.2, 0.1, 0.1, 1.5, 1.0, 1.5, 1.0), floor=(0.5, 0.2, 2.0, 1.0),
              walls=(2.0, 0.0, 0.5, 1.0), width=(3.5, 7.0), height=(2.4, 3.0),
              wall_hue=(0.05, 0.2), wall_saturation=(0.1, 0.4), floor_hue=(0.05, 0.12)),
    SceneType("office", objects=(0.2, 1.0, 0.2, 0.1, 0.2, 1.5, 1.0, 2.0), floor=(1.0, 0.3, 0.0, 2.0),
              walls=(3.0, 0.0, 0.5, 0.5), width=(3.0, 6.0), height=(2.5, 3.2),
              wall_hue=(0.5, 0.7), wall_saturation=(0.0, 0.2), floor_hue=(0.5, 0.75)),
    SceneType("storage", objects=(0.5, 2.0, 2.0, 1.0, 0.3, 0.2, 0.1, 0.2), floor=(2.0, 0.2, 0.3, 1.0),
              walls=(1.0, 0.0, 2.0, 0.5), width=(4.5, 8.0), height=(2.8, 3.5),
              wall_hue=(0.0, 1.0), wall_saturation=(0.0, 0.15), floor_hue=(0.0, 1.0)),
    SceneType("playroom", objects=(2.0, 0.5, 0.3, 1.5, 1.0, 0.5, 0.2, 0.5), floor=(0.5, 2.0, 0.5, 0.5),
              walls=(1.0, 1.0, 1.0, 0.5), width=(3.0, 6.0), height=(2.4, 3.0),
              wall_hue=(0.0, 1.0), wall_saturation=(0.3, 0.7), floor_hue=(0.0, 1.0)),
)


@dataclass(frozen=True)
class Scene:
    """One sampled room; P primitives, O objects, M = 3 + O materials, L lights."""
    scene_type: int
    room: np.ndarray            # (3,) width (x), height (y), depth (z)
    prim_kind: np.ndarray       # (P,) ELLIPSOID / BOX / CYLINDER / CONE
    prim_centre: np.ndarray     # (P, 3) world position of the unit shape's origin
    prim_rot: np.ndarray        # (P, 3, 3) local -> world rotation (columns are the local axes)
    prim_scale: np.ndarray      # (P, 3) half extents along the local axes
    prim_object: np.ndarray     # (P,) index of the object the primitive belongs to
    object_class: np.ndarray    # (O,) class id (>= FIRST_OBJECT_CLASS)
    footprint: np.ndarray       # (O, 3) x, z and radius of the object's footprint disc
    object_top: np.ndarray      # (O,) height of the object's top
    pattern: np.ndarray         # (M,) PATTERNS index
    colour_a: np.ndarray        # (M, 3) linear RGB
    colour_b: np.ndarray        # (M, 3) linear RGB
    waves: np.ndarray           # (M, 3, 3) pattern wave vectors (rows), 1/m
    phase: np.ndarray           # (M, 3) pattern phases
    specular: np.ndarray        # (M,) Blinn-Phong weight
    light_pos: np.ndarray       # (L, 3)
    light_rgb: np.ndarray       # (L, 3) intensity; all zero for an unused light slot
    ambient: float


# --------------------------------------------------------------------------------------------------
# Objects: a class is a builder returning its primitives in the object's frame (y up, base at y = 0)
# --------------------------------------------------------------------------------------------------

IDENTITY = np.eye(3)
IDENTITY.flags.writeable = False


def _part(kind: int, centre, scale) -> tuple:
    """A primitive of an object, axis-aligned in the object's frame."""
    return kind, np.asarray(centre, float), np.asarray(scale, float)


def _legs(half_x: float, half_z: float, height: float, radius: float) -> list[tuple]:
    return [_part(CYLINDER, (sx * half_x, height / 2, sz * half_z), (radius, height / 2, radius))
            for sx in (-1, 1) for sz in (-1, 1)]


def _ball(rng):
    r = rng.uniform(0.15, 0.45)
    return [_part(ELLIPSOID, (0, r, 0), (r, r, r))]


def _crate(rng):
    a, b, c = rng.uniform((0.15, 0.15, 0.15), (0.5, 0.55, 0.5))
    return [_part(BOX, (0, b, 0), (a, b, c))]


def _barrel(rng):
    r, h = rng.uniform((0.15, 0.25), (0.35, 0.6))
    return [_part(CYLINDER, (0, h, 0), (r, h, r))]


def _cone(rng):
    r, h = rng.uniform((0.15, 0.25), (0.35, 0.6))
    return [_part(CONE, (0, h, 0), (r, h, r))]


def _egg(rng):
    a, b, c = rng.uniform((0.15, 0.15, 0.15), (0.45, 0.45, 0.45))
    return [_part(ELLIPSOID, (0, b, 0), (a, b, c))]


def _table(rng):
    a, c, h = rng.uniform((0.35, 0.3, 0.6), (0.7, 0.6, 0.9))
    top = 0.03
    leg = rng.uniform(0.025, 0.05)
    return [_part(BOX, (0, h - top, 0), (a, top, c))] + _legs(a - 0.08, c - 0.08, h - 2 * top, leg)


def _lamp(rng):
    pole, shade = rng.uniform((1.0, 0.18), (1.5, 0.3))
    return [_part(ELLIPSOID, (0, 0.03, 0), (0.15, 0.03, 0.15)),
            _part(CYLINDER, (0, pole / 2, 0), (0.02, pole / 2, 0.02)),
            _part(CONE, (0, pole, 0), (shade, 0.15, shade))]


def _chair(rng):
    s, seat, back = rng.uniform((0.2, 0.4, 0.2), (0.3, 0.5, 0.35))
    return ([_part(BOX, (0, seat, 0), (s, 0.03, s)),
             _part(BOX, (0, seat + back, -s + 0.03), (s, back, 0.03))]
            + _legs(s - 0.04, s - 0.04, seat - 0.03, 0.025))


OBJECT_BUILDERS = dict(ball=_ball, crate=_crate, barrel=_barrel, cone=_cone, egg=_egg, table=_table,
                       lamp=_lamp, chair=_chair)
assert tuple(OBJECT_BUILDERS) == OBJECT_CLASSES


def _yaw(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _place(parts: list[tuple], x: float, z: float, yaw: float, max_radius: float) -> tuple[list[tuple], float, float]:
    """Shrink the object to fit its cell, turn it about y and move it to (x, 0, z)."""
    radius = max(float(np.hypot(c[0], c[2]) + np.hypot(s[0], s[2])) for _, c, s in parts)
    shrink = min(1.0, max_radius / radius)
    rot = _yaw(yaw)
    turned = rot @ IDENTITY                  # every part's rotation (the parts are axis-aligned)
    placed = [(kind, rot @ (c * shrink) + (x, 0.0, z), s * shrink, turned) for kind, c, s in parts]
    top = max(float(c[1] + s[1]) for _, c, s, _ in placed)
    return placed, radius * shrink, top


# --------------------------------------------------------------------------------------------------
# Materials
# --------------------------------------------------------------------------------------------------

def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV (all in [0, 1]) to linear RGB (the sRGB values squared, close enough for albedo). Python floats:
    NumPy's per-call overhead on three values was most of a material's cost."""
    rgb = []
    for offset in (5.0, 3.0, 1.0):
        k = (offset + h * 6.0) % 6.0
        rgb.append((v - v * s * max(min(k, 4.0 - k, 1.0), 0.0)) ** 2.2)
    return np.array(rgb)


def _cumulative(p) -> np.ndarray:
    """The normalised cumulative sum of probabilities ``p`` that a draw is looked up in."""
    cdf = np.cumsum(p, dtype=float)
    cdf /= cdf[-1]
    return cdf


def draw(rng: np.random.Generator, p, size=None):
    """``rng.choice(len(p), size, p=p)`` without its checks of ``p`` (most of its cost on a few items): the
    same draws from the same stream (one uniform each, looked up in the normalised cumulative sum)."""
    return _cumulative(p).searchsorted(rng.random(size), side="right")


@functools.lru_cache(maxsize=None)
def _cdf(weights: tuple[float, ...]) -> tuple[float, ...]:
    """:func:`draw`'s table for relative ``weights`` (normalised first), as Python floats."""
    w = np.asarray(weights, float)
    return tuple(_cumulative(w / w.sum()).tolist())


def draw_one(rng: np.random.Generator, weights: tuple[float, ...]) -> int:
    """``int(draw(rng, w / w.sum()))`` for constant relative weights, the table looked up once."""
    return bisect.bisect_right(_cdf(weights), rng.random())


SIGNS = np.array([-1.0, 1.0])


def _material(rng, weights, hue, saturation, value, scale) -> tuple:
    """(pattern, colour_a, colour_b, waves, phase, specular) for one surface."""
    pattern = draw_one(rng, weights)
    h = rng.uniform(*hue)
    a = _hsv(h % 1.0, rng.uniform(*saturation), rng.uniform(*value))
    b = _hsv((h + rng.uniform(-0.15, 0.15)) % 1.0, rng.uniform(*saturation), rng.uniform(*value) * 0.6)
    period = rng.uniform(*scale)
    if pattern == NOISE:
        # three smooth waves in random directions, a few periods per metre
        directions = rng.normal(size=(3, 3))
        waves = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        waves *= 2 * np.pi / (period * rng.uniform(2.0, 5.0, size=(3, 1)))
    elif pattern == STRIPES:
        # stripes whose normal is oblique to every axis, so they show on floors, walls and boxes
        direction = rng.uniform(0.3, 1.0, size=3) * SIGNS[rng.integers(0, 2, size=3)]   # rng.choice's draws
        waves = np.zeros((3, 3))
        waves[0] = direction / np.linalg.norm(direction) / period
    else:
        waves = np.eye(3) / period
    specular = 0.0 if rng.random() < 0.5 else rng.uniform(0.1, 0.4)
    return pattern, a, b, waves, rng.uniform(0.1, 0.9, size=3), specular


# --------------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------------

def sample_scene(rng: np.random.Generator, objects_min: int, objects_max: int, lights_max: int) -> Scene:
    """Sample one room with its objects, materials and lights."""
    scene_type = int(rng.integers(len(SCENE_TYPES)))
    kind = SCENE_TYPES[scene_type]
    w, d = rng.uniform(*kind.width, size=2)
    h = rng.uniform(*kind.height)
    room = np.array([w, h, d])

    # Objects: one per cell of a jittered grid over the floor, 0.4 m clear of the walls.
    n_objects = int(rng.integers(objects_min, objects_max + 1))
    grid = max(1, math.ceil(math.sqrt(n_objects)))
    cell_w, cell_d = (w - 0.8) / grid, (d - 0.8) / grid
    cells = rng.permutation(grid * grid)[:n_objects]
    weights = np.asarray(kind.objects) / sum(kind.objects)
    classes = draw(rng, weights, n_objects)
    parts, footprint, top = [], [], []
    for j, (cell, cls) in enumerate(zip(cells, classes)):
        max_radius = 0.5 * min(cell_w, cell_d) - 0.05
        radius = rng.uniform(0.6, 1.0) * max_radius
        x = -w / 2 + 0.4 + (cell % grid + 0.5) * cell_w + rng.uniform(-1, 1) * (0.5 * cell_w - radius - 0.05)
        z = -d / 2 + 0.4 + (cell // grid + 0.5) * cell_d + rng.uniform(-1, 1) * (0.5 * cell_d - radius - 0.05)
        built = OBJECT_BUILDERS[OBJECT_CLASSES[cls]](rng)
        placed, r, t = _place(built, x, z, rng.uniform(0, 2 * np.pi), radius)
        parts += [(j,) + p for p in placed]
        footprint.append((x, z, r))
        top.append(t)

    # Materials: floor, walls, ceiling, then one per object.
    v = (0.55, 0.9)
    materials = [
        _material(rng, kind.floor, kind.floor_hue, (0.2, 0.7), (0.35, 0.8), (0.3, 1.0)),
        _material(rng, kind.walls, kind.wall_hue, kind.wall_saturation, v, (0.3, 1.2)),
        _material(rng, (1.0, 0.0, 0.0, 0.2), (0.0, 1.0), (0.0, 0.1), (0.8, 0.95), (1.0, 2.0)),
    ] + [_material(rng, (2.0, 1.0, 1.0, 1.0), (0.0, 1.0), (0.3, 0.9), (0.4, 0.95), (0.05, 0.25))
         for _ in range(n_objects)]
    pattern, colour_a, colour_b, waves, phase, specular = (np.array(x) for x in zip(*materials))

    # Lights: one or more points below the ceiling; unused slots have zero intensity.
    n_lights = int(rng.integers(1, lights_max + 1))
    light_pos = np.zeros((lights_max, 3))
    light_rgb = np.zeros((lights_max, 3))
    for i in range(n_lights):
        light_pos[i] = (rng.uniform(-w / 2 + 0.5, w / 2 - 0.5), h - rng.uniform(0.2, 0.5),
                        rng.uniform(-d / 2 + 0.5, d / 2 - 0.5))
        warmth = rng.uniform(-0.15, 0.15)
        light_rgb[i] = rng.uniform(1.4, 2.2) / n_lights * np.array([1 + warmth, 1.0, 1 - warmth])

    return Scene(
        scene_type=scene_type, room=room,
        prim_kind=np.array([p[1] for p in parts], dtype=np.int64),
        prim_centre=np.array([p[2] for p in parts]).reshape(-1, 3),
        prim_scale=np.array([p[3] for p in parts]).reshape(-1, 3),
        prim_rot=np.array([p[4] for p in parts]).reshape(-1, 3, 3),
        prim_object=np.array([p[0] for p in parts], dtype=np.int64),
        object_class=classes.astype(np.int64) + FIRST_OBJECT_CLASS,
        footprint=np.array(footprint).reshape(-1, 3), object_top=np.array(top),
        pattern=pattern.astype(np.int64), colour_a=colour_a, colour_b=colour_b, waves=waves,
        phase=phase, specular=specular, light_pos=light_pos, light_rgb=light_rgb,
        ambient=float(rng.uniform(0.12, 0.25)),
    )
