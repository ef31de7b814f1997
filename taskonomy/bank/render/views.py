"""Labels of whole views and of view pairs: room layout, vanishing points, relative poses, point matches,
and the jigsaw permutation set. Plain NumPy on camera poses (``cam_to_world``, (N, 4, 4)).

Relative pose of view b w.r.t. view a (fix_pose, non_fixated_pose, ego_motion): the transform taking
camera-a coordinates to camera-b coordinates, ``inv(C_b) C_a = [R_b^T R_a | R_b^T (c_a - c_b)]``,
encoded as 6 numbers: the static-axes xyz Euler angles of ``R_b^T R_a`` (``R = Rz(az) Ry(ay) Rx(ax)``,
"sxyz") and the translation ``R_b^T (c_a - c_b)``.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np

from taskonomy.bank.render.camera import FIXATED_VIEWS

JIGSAW_SEED = 20180618    # the permutation set is fixed: the same in every split and every run


def euler_sxyz(rot: np.ndarray) -> np.ndarray:
    """Static-axes xyz Euler angles (..., 3) = (ax, ay, az) of rotations (..., 3, 3)."""
    ax = np.arctan2(rot[..., 2, 1], rot[..., 2, 2])
    ay = np.arctan2(-rot[..., 2, 0], np.hypot(rot[..., 0, 0], rot[..., 1, 0]))
    az = np.arctan2(rot[..., 1, 0], rot[..., 0, 0])
    return np.stack([ax, ay, az], axis=-1)


def rotation_sxyz(angles: np.ndarray) -> np.ndarray:
    """Rotations (..., 3, 3) from static-axes xyz Euler angles (..., 3): Rz(az) Ry(ay) Rx(ax)."""
    cx, cy, cz = np.moveaxis(np.cos(angles), -1, 0)
    sx, sy, sz = np.moveaxis(np.sin(angles), -1, 0)
    rot = np.array([[cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx],
                    [sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx],
                    [-sy, cy * sx, cy * cx]])                                   # (3, 3, ...)
    return np.moveaxis(rot, (0, 1), (-2, -1))


def relative_pose(pose_a: np.ndarray, pose_b: np.ndarray) -> np.ndarray:
    """6-d pose (..., 6) of view b w.r.t. view a from cam_to_world poses (..., 4, 4)."""
    rot_a, rot_b = pose_a[..., :3, :3], pose_b[..., :3, :3]
    rot = np.swapaxes(rot_b, -1, -2) @ rot_a
    shift = (np.swapaxes(rot_b, -1, -2) @ (pose_a[..., :3, 3] - pose_b[..., :3, 3])[..., None])[..., 0]
    return np.concatenate([euler_sxyz(rot), shift], axis=-1)


def pose_matrix(pose: np.ndarray) -> np.ndarray:
    """4x4 transforms (..., 4, 4) from 6-d poses (..., 6), the inverse of the encoding above."""
    out = np.zeros(pose.shape[:-1] + (4, 4))
    out[..., :3, :3] = rotation_sxyz(pose[..., :3])
    out[..., :3, 3] = pose[..., 3:]
    out[..., 3, 3] = 1.0
    return out


def room_layout(pose: np.ndarray, room: np.ndarray) -> np.ndarray:
    """(N, 10): room box centre in the camera frame (3), camera rotation in the room (4), room extents (3).

    The rotation is (pitch, roll, cos 2*yaw, sin 2*yaw): pitch and roll of the optical axis and of the
    image's x axis against the horizontal, yaw of the optical axis about the vertical (from world +z
    towards +x). A box room with one wall material looks the same turned by 180 degrees about its vertical
    axis, so the yaw is defined only modulo 180 degrees; its doubled angle is the continuous encoding of
    that (Taskonomy made its labels "well defined" the same way). The box centre in the camera frame and
    the extents do not change under that turn. Taskonomy's 3 Euler angles would encode an undefined yaw
    and, with world y up, flip by 180 degrees in two angles when a camera turns past sideways.
    """
    rot, centre = pose[:, :3, :3], pose[:, :3, 3]
    box_centre = np.stack([np.zeros(len(room)), room[:, 1] / 2, np.zeros(len(room))], axis=1)
    in_camera = (np.swapaxes(rot, 1, 2) @ (box_centre - centre)[..., None])[..., 0]
    right, forward = rot[:, :, 0], rot[:, :, 2]                 # camera x and z axes in the world (y up)
    pitch = np.arcsin(np.clip(forward[:, 1], -1.0, 1.0))
    roll = np.arcsin(np.clip(-right[:, 1], -1.0, 1.0))
    yaw2 = 2 * np.arctan2(forward[:, 0], forward[:, 2])
    rotation = np.stack([pitch, roll, np.cos(yaw2), np.sin(yaw2)], axis=1)
    return np.concatenate([in_camera, rotation, room], axis=1)


def vanishing_points(pose: np.ndarray) -> np.ndarray:
    """(N, 9): the world x, y, z axes in the camera frame (the rows of the camera -> world rotation)."""
    return pose[:, :3, :3].reshape(len(pose), 9)


def scene_pairs(n_scenes: int, views: int, rng_of_scene) -> dict[str, np.ndarray]:
    """Index arrays of the pairwise tasks: view indices within the split, scene by scene.

    The views of a scene form groups of ``FIXATED_VIEWS`` that fixate one point each (views 0-2, 3-5, ...).
    fix_pose: ordered pairs of distinct views of one group; non_fixated_pose: ordered pairs of views of two
    groups; ego_motion: the orderings of each group's triplet; point_match: the pairs of one group (label 1)
    and as many pairs of two groups (label 0), drawn with the scene's generator.
    """
    group = lambda v: v // FIXATED_VIEWS                                             # noqa: E731
    ordered = list(itertools.permutations(range(views), 2))
    fixated = np.array([p for p in ordered if group(p[0]) == group(p[1])], dtype=np.int64).reshape(-1, 2)
    free = np.array([p for p in ordered if group(p[0]) != group(p[1])], dtype=np.int64).reshape(-1, 2)
    triplets = np.array([t for t in itertools.permutations(range(views), 3)
                         if group(t[0]) == group(t[1]) == group(t[2])], dtype=np.int64).reshape(-1, 3)
    first = np.arange(n_scenes, dtype=np.int64)[:, None, None] * views               # (S, 1, 1)
    per_scene = lambda pairs: (first + pairs).reshape(-1, pairs.shape[1])            # noqa: E731
    n_negative = min(len(fixated), len(free))
    negatives = np.array([np.sort(rng_of_scene(s).choice(len(free), size=n_negative, replace=False))
                          for s in range(n_scenes)], dtype=np.int64).reshape(n_scenes, n_negative)
    match = np.concatenate([np.broadcast_to(fixated, (n_scenes,) + fixated.shape), free[negatives]], axis=1)
    label = np.concatenate([np.ones(len(fixated), np.int64), np.zeros(n_negative, np.int64)])
    return dict(fix_pose_index=per_scene(fixated), non_fixated_pose_index=per_scene(free),
                ego_motion_index=per_scene(triplets), point_match_index=(first + match).reshape(-1, 2),
                point_match=np.tile(label, n_scenes))


def pair_poses(pose: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Relative poses (M, 6) of view pairs ``index`` (M, 2)."""
    return relative_pose(pose[index[:, 0]], pose[index[:, 1]]).astype(np.float32)


def triplet_poses(pose: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(T, 18): poses of the pairs (0, 1), (0, 2), (1, 2) of each triplet ``index`` (T, 3)."""
    return np.concatenate([pair_poses(pose, index[:, [a, b]]) for a, b in ((0, 1), (0, 2), (1, 2))], axis=1)


def jigsaw_permutations(n: int) -> np.ndarray:
    """A fixed set (n, 9) of permutations of the 3x3 tiles, row 0 the identity, the others chosen greedily
    to be far apart in Hamming distance (as in Noroozi & Favaro 2016), from a fixed seed. Chosen once per
    process (every split stores the same set)."""
    return _jigsaw_permutations(n).copy()


@functools.lru_cache(maxsize=4)
def _jigsaw_permutations(n: int) -> np.ndarray:
    rng = np.random.default_rng(JIGSAW_SEED)
    pool = np.array([rng.permutation(9) for _ in range(max(2000, 4 * n))])
    chosen = [np.arange(9)]
    nearest = (pool != chosen[0]).sum(1)
    for _ in range(n - 1):
        best = int(nearest.argmax())
        chosen.append(pool[best])
        nearest = np.minimum(nearest, (pool != pool[best]).sum(1))
    return np.array(chosen, dtype=np.int64)
