"""Cameras: where the views of a scene stand and where they look.

Camera frame as OpenCV: x right, y down, z forward; ``cam_to_world`` maps camera-frame points to the world
(rotation columns are the camera axes in world coordinates). The views of a scene come in fixation groups
of ``FIXATED_VIEWS``: views 0-2 fixate one 3D point, views 3-5 a second one, and so on. A group's point lies
on each of its optical axes (so it projects to the exact image centre) and is unoccluded from each of them.

The first point is found by casting an "anchor" ray at an object; every further point is the first surface
along a ray from the same anchor position aimed ``GROUP_GAP`` metres beside the first point, the first of
``GROUP_TRIES`` such rays whose hit lies in that range (else the hit nearest to it). Pairs of views from two
groups are Taskonomy's non-fixated pairs: both images look like ordinary fixated views (so neither gives
its pair away on its own, as a view looking in a random direction did), they overlap partially, and they
centre on points at least the gap apart. The cameras of a group are chosen among random candidate positions
by casting visibility rays (see taskonomy.bank.render.split), with the anchor position (which sees every point
by construction) as the fallback.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taskonomy.config import FIXATED_VIEWS
from taskonomy.bank.render.scene import Scene

CANDIDATES = 12           # candidate positions per fixated view
CLEARANCE = 0.35          # m between a camera and an object's footprint disc
WALL_MARGIN = 0.4         # m between a camera and the walls
MAX_ROLL = np.deg2rad(8.0)
GROUP_GAP = (0.5, 1.5)    # m between the first fixation point and each further group's point
GROUP_TRIES = 8           # rays cast to find each further point


@dataclass(frozen=True)
class Rig:
    """The random choices of one scene's cameras, made before any ray is cast."""
    anchor_origin: np.ndarray     # (3,) a free position that looks at the fixation point
    anchor_target: np.ndarray     # (3,) where the anchor ray is aimed (an object, or the room)
    group_offset: np.ndarray      # (G - 1, GROUP_TRIES, 3) where rays for points 2.. aim, relative to point 1
    candidates: np.ndarray        # (V, CANDIDATES, 3) positions for each view (G groups of FIXATED_VIEWS)
    roll: np.ndarray              # (V,) roll of each view about its optical axis
    jigsaw: np.ndarray            # (V,) permutation index of each view's jigsaw label


def look_at(centre: np.ndarray, target: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Rotations (camera -> world) of cameras at ``centre`` looking at ``target``, rolled; (..., 3, 3)."""
    forward = target - centre
    forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    up = np.broadcast_to(np.array([0.0, 1.0, 0.0]), forward.shape)
    right = np.cross(forward, up)
    right = right / np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(forward, right)
    c, s = np.cos(roll)[..., None], np.sin(roll)[..., None]
    right, down = c * right + s * down, c * down - s * right
    return np.stack([right, down, forward], axis=-1)


def free_positions(rng: np.random.Generator, scene: Scene, n: int) -> np.ndarray:
    """``n`` camera centres inside the room, clear of the walls and of every object; (n, 3)."""
    w, h, d = scene.room
    lo = np.array([-w / 2 + WALL_MARGIN, 1.0, -d / 2 + WALL_MARGIN])
    hi = np.array([w / 2 - WALL_MARGIN, min(1.9, h - 0.4), d / 2 - WALL_MARGIN])
    tries = rng.uniform(lo, hi, size=(4 * n, 3))
    gap = np.hypot(tries[:, None, 0] - scene.footprint[:, 0], tries[:, None, 2] - scene.footprint[:, 1])
    clear = (gap > scene.footprint[:, 2] + CLEARANCE) | (tries[:, None, 1] > scene.object_top + 0.3)
    ok = clear.all(axis=1)
    # A crowded room may leave too few clear tries: lift the rest above every object instead.
    above = min(h - 0.25, float(scene.object_top.max(initial=0.0)) + 0.3)
    lifted = tries[~ok].copy()
    lifted[:, 1] = above
    return np.concatenate([tries[ok], lifted])[:n]


def sample_rig(rng: np.random.Generator, scene: Scene, views: int, permutations: int) -> Rig:
    """Every random choice of the cameras of one scene (``views`` views, jigsaw from ``permutations``)."""
    anchor_origin = free_positions(rng, scene, 1)[0]
    if len(scene.footprint):
        j = int(rng.integers(len(scene.footprint)))
        x, z, r = scene.footprint[j]
        anchor_target = np.array([x, scene.object_top[j] * rng.uniform(0.3, 0.8), z])
        anchor_target[[0, 2]] += rng.uniform(-0.3, 0.3, size=2) * r
    else:
        w, h, d = scene.room
        anchor_target = rng.uniform((-w / 2, 0.0, -d / 2), (w / 2, h, d / 2))
    # further points: mostly sideways from the first (objects stand on the floor, rooms are wider than high)
    groups = views // FIXATED_VIEWS
    direction = rng.normal(size=(groups - 1, GROUP_TRIES, 3)) * np.array([1.0, 0.5, 1.0])
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    group_offset = direction * rng.uniform(*GROUP_GAP, size=(groups - 1, GROUP_TRIES, 1))
    candidates = free_positions(rng, scene, views * CANDIDATES).reshape(views, CANDIDATES, 3)
    return Rig(anchor_origin=anchor_origin, anchor_target=anchor_target, group_offset=group_offset,
               candidates=candidates, roll=rng.uniform(-MAX_ROLL, MAX_ROLL, size=views),
               jigsaw=rng.integers(permutations, size=views))


def cam_to_world(rot: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """4x4 poses from rotations (..., 3, 3) and centres (..., 3)."""
    pose = np.zeros(rot.shape[:-2] + (4, 4))
    pose[..., :3, :3] = rot
    pose[..., :3, 3] = centre
    pose[..., 3, 3] = 1.0
    return pose
