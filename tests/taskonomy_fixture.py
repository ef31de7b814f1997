"""A tiny fake Taskonomy dataset in the real on-disk format, for tests of the real-data reader.

``write_taskonomy_fixture(root, ...)`` renders a few views of a few "buildings" and writes them the way the
released data is laid out (docs: /work/shared/design/taskonomy-reference.md section 6):

- Layouts: ``"omnidata"`` -> ``<root>/<domain>/taskonomy/<building>/<file>`` (what ``omnitools.download``
  extracts), ``"flat"`` -> ``<root>/<domain>/<building>/<file>`` (what the omnidata dataloaders expect),
  ``"legacy"`` -> ``<root>/<building>/<domain>/<file>`` (the sample building, old code).
- File names: ``point_<P>_view_<V>_domain_<token>.<ext>``; the token is the folder name except
  ``segment_semantic`` -> ``segmentsemantic`` and ``class_scene`` -> ``class_places``.
- Encodings: ``rgb`` 8-bit RGB; ``depth_zbuffer`` / ``depth_euclidean`` 16-bit, 1/512 m, 65535 = invalid;
  ``normal`` 8-bit RGB, ``n = v / 127.5 - 1`` in the camera frame x right, y down, z forward, gray 128 where
  invalid; ``principal_curvature`` 8-bit RGB, zero curvature = 127, 0 where invalid; ``reshading`` 8-bit RGB
  with three equal channels; ``edge_texture``, ``edge_occlusion``, ``keypoints2d``, ``keypoints3d`` 16-bit
  (small values, sparse peaks); ``segment_unsup2d`` / ``segment_unsup25d`` 8-bit "L" segment ids;
  ``segment_semantic`` 8-bit "L", 0 = uncertain, 1 = background, 2..17 = the 16 classes; ``class_object``
  ``.npy`` float32 [1000] logits; ``class_scene`` ``.npy`` float32 [365] probabilities; ``point_info``
  ``.json`` with exactly the keys (and key order) of the real files; ``mask_valid`` 8-bit "L", 0 / 255.
- ``<root>/train_val_test_fixture.csv``: the official split-CSV format ``id,train,val,test`` (1/0 flags):
  all buildings but the last two are train, then one val, one test.

The scene is real geometry, ray-cast with numpy: each building is one box-shaped room (its walls, floor and
ceiling) holding one box of furniture on the floor. A "point" is a spot on a room surface or the furniture;
each of its views is a camera 1.5-4 m away, inside the room, with roll 0, whose optical axis passes exactly
through the point (so the point sits at the image centre and the z-buffer there equals camera_distance).
A small random patch of every image is a "hole" (missing geometry): depth 65535, normal gray, mask 0, ...

point_info follows the real generator (omnidata_annotator ``generate_points.py`` / ``io_utils.py`` /
``create_vanishing_points.py``), and reproduces the real sample point_202_view_5 (see the tests):

- ``camera_rotation_final`` = Euler angles [a, b, c], static 'sxyz': R = Rz(c) @ Ry(b) @ Rx(a) maps the
  BLENDER camera frame (x right, y up, looking down -z) to the world; in OpenCV convention
  cam_to_world = [[R @ diag(1, -1, -1), camera_location], [0, 0, 0, 1]].
- R_final = D @ R_original with D = sxyz(``camera_rotation_from_original_to_final``), R_original =
  sxyz(``camera_rotation_original``) (the scan camera's own orientation).
- ``point_pitch`` = pi/2 - angle((0, 1, 0), R_original^T (point - camera)); ``obliqueness_angle`` = the
  angle between the line of sight and the surface normal (folded to [0, pi/2]); ``camera_distance`` =
  |point_location - camera_location|.
- ``vanishing_points_gaussian_sphere`` = R^T W e_k (k = x, y, z), where W is the rotation by a multiple of
  90 degrees about world z that the real code picks (``rotation_to_make_axes_well_defined``); so "x" and
  "y" are +-R^T e_x or +-R^T e_y (swapped when W is +-90 degrees) and "z" is R^T e_z.
  ``vanishing_points_image`` are those projected with the real code's formula.
- ``bounding_box_ranges`` is the room box with the world x and y ranges SWAPPED, as in the real files:
  its "x" is the world-y range and its "y" the world-x range (the real sample's camera x equals its
  ``bounding_box_ranges["y"][0]``; omnidata's room-layout loader un-swaps it with the ``flip_xy`` camera
  matrix). The returned dict gives the room box in the plain world frame too.

Pixel convention for the returned intrinsics: pixel (row i, column j) has its centre at
(u, v) = (j + 0.5, i + 0.5); the principal point is (size / 2, size / 2), f = size / 2 / tan(fov / 2).
"""
from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

DOMAINS = (
    "rgb",
    "depth_zbuffer",
    "depth_euclidean",
    "normal",
    "principal_curvature",
    "reshading",
    "edge_texture",
    "edge_occlusion",
    "keypoints2d",
    "keypoints3d",
    "segment_unsup2d",
    "segment_unsup25d",
    "segment_semantic",
    "class_object",
    "class_scene",
    "point_info",
    "mask_valid",
)
FILE_TOKENS = {"segment_semantic": "segmentsemantic", "class_scene": "class_places"}
EXTENSIONS = {"class_object": "npy", "class_scene": "npy", "point_info": "json"}
LAYOUTS = ("omnidata", "flat", "legacy")
SPLIT_CSV_NAME = "train_val_test_fixture.csv"

FIELD_OF_VIEW_RADS = 1.3089969  # 75 degrees, the taskbank training set's fixed FoV
DEPTH_UNITS_PER_METRE = 512
DEPTH_INVALID = 65535
N_OBJECT_CLASSES = 1000
N_SCENE_CLASSES = 365
SEMANTIC_UNCERTAIN, SEMANTIC_BACKGROUND = 0, 1
SEMANTIC_CLASSES = tuple(range(2, 18))  # the 16 COCO classes
CURVATURE_ZERO = 127
CAMERA_DISTANCE_RANGE = (1.5, 4.0)
ROOM_FACES, FURNITURE_FACES = range(0, 6), range(6, 12)  # face id = 2 * axis + (0: low side, 1: high side)


# ---------------------------------------------------------------------------------------------- names & paths

def file_token(domain: str) -> str:
    return FILE_TOKENS.get(domain, domain)


def file_name(point: int, view: int, domain: str) -> str:
    return f"point_{point}_view_{view}_domain_{file_token(domain)}.{EXTENSIONS.get(domain, 'png')}"


def domain_dir(root: Path, layout: str, domain: str, building: str) -> Path:
    if layout == "omnidata":
        return Path(root) / domain / "taskonomy" / building
    if layout == "flat":
        return Path(root) / domain / building
    if layout == "legacy":
        return Path(root) / building / domain
    raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")


def file_path(root: Path, layout: str, domain: str, building: str, point: int, view: int) -> Path:
    return domain_dir(root, layout, domain, building) / file_name(point, view, domain)


# ------------------------------------------------------------------------------------------------- rotations

def rot_x(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def rot_z(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def euler_sxyz_to_matrix(angles) -> np.ndarray:
    """transforms3d.euler.euler2mat(a, b, c, axes='sxyz') = Rz(c) @ Ry(b) @ Rx(a)."""
    a, b, c = (float(x) for x in angles)
    return rot_z(c) @ rot_y(b) @ rot_x(a)


def matrix_to_euler_sxyz(R: np.ndarray) -> list[float]:
    """Inverse of ``euler_sxyz_to_matrix`` (away from gimbal lock, |b| < pi/2)."""
    b = math.atan2(-R[2, 0], math.hypot(R[0, 0], R[1, 0]))
    a = math.atan2(R[2, 1], R[2, 2])
    c = math.atan2(R[1, 0], R[0, 0])
    return [a, b, c]


def look_at_euler(camera: np.ndarray, target: np.ndarray) -> list[float]:
    """sxyz angles of a roll-0 Blender camera at ``camera`` whose -z axis points exactly at ``target``."""
    d = (target - camera) / np.linalg.norm(target - camera)
    # R @ (0, 0, -1) = Rz(c) @ (0, sin a, -cos a) = (-sin c sin a, cos c sin a, -cos a); b = 0 keeps x horizontal
    return [math.acos(-d[2]), 0.0, math.atan2(-d[0], d[1])]


BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


def cam_to_world_opencv(camera_location, camera_rotation_final) -> np.ndarray:
    """4x4 camera-to-world matrix, camera frame x right, y down, z forward."""
    T = np.eye(4)
    T[:3, :3] = euler_sxyz_to_matrix(camera_rotation_final) @ BLENDER_TO_OPENCV
    T[:3, 3] = np.asarray(camera_location, dtype=float)
    return T


def angle_between(u: np.ndarray, v: np.ndarray) -> float:
    cos = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return math.acos(max(-1.0, min(1.0, cos)))


# ------------------------------------------------------------------------- point_info fields (real generator)

def point_pitch(camera_location, camera_rotation_original, point_location) -> float:
    """io_utils.get_pitch_of_point: elevation of the point above the ORIGINAL camera's x-z plane."""
    local = euler_sxyz_to_matrix(camera_rotation_original).T @ (np.asarray(point_location, float)
                                                                 - np.asarray(camera_location, float))
    return math.pi / 2 - angle_between(np.array([0.0, 1.0, 0.0]), local)


def obliqueness_angle(camera_location, point_location, point_normal) -> float:
    """generate_points.try_get_line_of_sight_obliqueness: min(angle(ray, n), angle(ray, -n))."""
    ray = np.asarray(point_location, float) - np.asarray(camera_location, float)
    n = np.asarray(point_normal, float)
    return min(angle_between(ray, n), angle_between(ray, -n))


def _axis_rotation_z(k: int) -> np.ndarray:
    """transforms3d.axangles.axangle2mat([0, 0, 1], k * pi / 2), with its rounding."""
    return rot_z(k * math.pi / 2)


def vanishing_points(camera_rotation_final, field_of_view_rads: float, resolution: int):
    """create_vanishing_points.get_vanishing_points: (image_vps, gaussian_sphere_vps), each {"x","y","z"}."""
    R = euler_sxyz_to_matrix(camera_rotation_final)
    flipped = R.copy()  # get_camera_matrix(flip_xy=True): row0 <- row1, row1 <- -row0
    flipped[0, :], flipped[1, :] = R[1, :], -R[0, :]
    best_degrees, world_transformation = 180.0, None
    for k in range(4):
        W = _axis_rotation_z(k)
        global_y_in_cam = flipped.T @ (W @ np.array([0.0, 1.0, 0.0]))
        degrees = abs(math.degrees(math.acos(max(-1.0, min(1.0, float(-global_y_in_cam[2]))))))
        if degrees < best_degrees:
            best_degrees, world_transformation = degrees, np.linalg.inv(W)
    if world_transformation is None:
        world_transformation = np.eye(3)
    inv_R = np.linalg.inv(world_transformation @ R)
    sphere = [inv_R @ e for e in np.eye(3)]
    sphere = [v / np.linalg.norm(v) for v in sphere]
    focal = resolution / (2 * math.tan(field_of_view_rads / 2.0))
    offset = resolution / 2.0
    K = np.array([[focal, 0, -offset], [0, -focal, -offset], [0, 0, -1.0]])  # get_K, "adjust for blender axes"
    image = []
    for v in sphere:
        pix = K @ (0.1 * v - np.array([0, 0, 0.2]))
        image.append([float(pix[0] / pix[2]), float(pix[1] / pix[2])])
    names = ("x", "y", "z")
    return dict(zip(names, image)), {n: [float(x) for x in v] for n, v in zip(names, sphere)}


# ------------------------------------------------------------------------------------------------ the scene

def _building_rng(seed: int, building: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(building.encode())])


def make_room(rng: np.random.Generator) -> dict:
    """A room box (world frame, metres) and a furniture box standing on its floor."""
    origin = np.array([rng.uniform(-6, 6), rng.uniform(-6, 6), rng.uniform(-0.1, 0.1)])
    dims = np.array([rng.uniform(5.5, 8.0), rng.uniform(5.0, 7.0), rng.uniform(2.6, 3.2)])
    room_lo, room_hi = origin, origin + dims
    fdims = np.array([rng.uniform(0.6, 1.2), rng.uniform(0.6, 1.2), rng.uniform(0.5, 1.0)])
    flo = np.array([rng.uniform(room_lo[0] + 1.0, room_hi[0] - 1.0 - fdims[0]),
                    rng.uniform(room_lo[1] + 1.0, room_hi[1] - 1.0 - fdims[1]), room_lo[2]])
    return {"lo": room_lo, "hi": room_hi, "furniture_lo": flo, "furniture_hi": flo + fdims}


def _face_normal(face: int) -> np.ndarray:
    """Room faces 0..5 point into the room; furniture faces 6..11 point out of the box."""
    axis, high = (face % 6) // 2, face % 2
    n = np.zeros(3)
    inward = -1.0 if high else 1.0
    n[axis] = inward if face < 6 else -inward
    return n


def _sample_point(rng: np.random.Generator, room: dict) -> tuple[np.ndarray, np.ndarray]:
    """A random spot on the floor, a wall or the furniture (its top or sides), and its surface normal."""
    margin = 0.4
    while True:
        face = int(rng.choice([0, 1, 2, 3, 4, 6, 7, 8, 9, 11]))  # no ceiling, no furniture bottom
        lo, hi = (room["lo"], room["hi"]) if face < 6 else (room["furniture_lo"], room["furniture_hi"])
        axis, high = (face % 6) // 2, face % 2
        inset = margin if face < 6 else 0.1
        p = rng.uniform(lo + inset, hi - inset)
        p[axis] = hi[axis] if high else lo[axis]
        if face == 4 and _inside(p + [0, 0, 0.01], room["furniture_lo"] - 0.2, room["furniture_hi"] + 0.2):
            continue  # a floor spot under or right beside the furniture
        return p, _face_normal(face)


def _inside(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    return bool(np.all(p > lo) and np.all(p < hi))


def _furniture_hit_distance(origin: np.ndarray, direction: np.ndarray, room: dict) -> float:
    """Distance along a unit ray to the furniture box (inf when missed)."""
    d = np.where(direction == 0, 1e-12, direction)
    t1, t2 = (room["furniture_lo"] - origin) / d, (room["furniture_hi"] - origin) / d
    t_near, t_far = np.minimum(t1, t2).max(), np.maximum(t1, t2).min()
    return float(t_near) if t_near <= t_far and t_near > 0 else math.inf


def _sample_camera(rng: np.random.Generator, room: dict, point: np.ndarray, normal: np.ndarray,
                   azimuth_hint: float) -> np.ndarray:
    """A camera 1.5-4 m from the point, inside the room, with a clear line of sight to it."""
    helper = np.array([0.0, 0, 1]) if abs(normal[2]) < 0.9 else np.array([1.0, 0, 0])
    t1 = np.cross(normal, helper)
    t1 /= np.linalg.norm(t1)
    t2 = np.cross(normal, t1)
    for attempt in range(5000):
        tilt = rng.uniform(0.15, 1.05)  # angle from the normal: at most 60 degrees oblique
        azimuth = azimuth_hint + rng.normal(0, 0.4 + attempt / 200)
        direction = math.cos(tilt) * normal + math.sin(tilt) * (math.cos(azimuth) * t1 + math.sin(azimuth) * t2)
        distance = rng.uniform(*CAMERA_DISTANCE_RANGE)
        camera = point + distance * direction
        if not _inside(camera, room["lo"] + 0.25, room["hi"] - 0.25):
            continue
        if _inside(camera, room["furniture_lo"] - 0.15, room["furniture_hi"] + 0.15):
            continue
        if abs(direction[2]) > 0.9:  # keep away from looking straight up/down (Euler gimbal lock)
            continue
        if _furniture_hit_distance(camera, -direction, room) < distance - 1e-6:
            continue  # occluded by the furniture
        return camera
    raise RuntimeError("could not place a camera; the room is too small")


def pixel_rays(size: int, fov: float) -> np.ndarray:
    """(size, size, 3) rays in the OpenCV camera frame with z = 1: depth_zbuffer = t, euclidean = t * |ray|."""
    f = focal_length_px(size, fov)
    centres = (np.arange(size) + 0.5 - size / 2.0) / f
    x, y = np.meshgrid(centres, centres)  # x varies along columns, y along rows
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def focal_length_px(size: int, fov: float) -> float:
    return size / 2.0 / math.tan(fov / 2.0)


def ray_cast(room: dict, camera: np.ndarray, R_cv: np.ndarray, size: int, fov: float) -> dict:
    """Per pixel: z-buffer depth (m), Euclidean depth (m), face id, world hit point."""
    rays_cam = pixel_rays(size, fov)
    rays = rays_cam @ R_cv.T
    d = np.where(rays == 0, 1e-12, rays)
    with np.errstate(divide="ignore"):
        t_exit = np.where(d > 0, (room["hi"] - camera) / d, (room["lo"] - camera) / d)
    room_axis = t_exit.argmin(-1)
    t = t_exit.min(-1)
    face = 2 * room_axis + (np.take_along_axis(d, room_axis[..., None], -1)[..., 0] > 0)
    t1, t2 = (room["furniture_lo"] - camera) / d, (room["furniture_hi"] - camera) / d
    t_near_axes = np.minimum(t1, t2)
    t_near, t_far = t_near_axes.max(-1), np.maximum(t1, t2).min(-1)
    hit = (t_near <= t_far) & (t_near > 0) & (t_near < t)
    near_axis = t_near_axes.argmax(-1)
    furniture_face = 6 + 2 * near_axis + (np.take_along_axis(d, near_axis[..., None], -1)[..., 0] < 0)
    t = np.where(hit, t_near, t)
    face = np.where(hit, furniture_face, face)
    return {"z": t, "euclidean": t * np.linalg.norm(rays_cam, axis=-1), "face": face.astype(np.int64),
            "world": camera + t[..., None] * rays, "rays_cam": rays_cam}


# ------------------------------------------------------------------------------------------------- encodings

def _hole_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A small random patch of missing geometry, away from the image centre."""
    h, w = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    while True:
        r0, c0 = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
        centre = size / 2.0
        if r0 + h < centre - 3 or r0 > centre + 3 or c0 + w < centre - 3 or c0 > centre + 3:
            break
    mask = np.zeros((size, size), dtype=bool)
    mask[r0:r0 + h, c0:c0 + w] = True
    return mask


def encode_depth(metres: np.ndarray, valid: np.ndarray) -> np.ndarray:
    values = np.clip(np.round(metres * DEPTH_UNITS_PER_METRE), 0, DEPTH_INVALID - 1)
    return np.where(valid, values, DEPTH_INVALID).astype(np.uint16)


def encode_normal(normals_cam: np.ndarray, valid: np.ndarray) -> np.ndarray:
    values = np.clip(np.round((normals_cam + 1.0) * 127.5), 0, 255)
    return np.where(valid[..., None], values, 128).astype(np.uint8)


def _neighbour_differs(labels: np.ndarray) -> np.ndarray:
    out = np.zeros(labels.shape, dtype=bool)
    out[1:] |= labels[1:] != labels[:-1]
    out[:-1] |= labels[:-1] != labels[1:]
    out[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    out[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return out


def _depth_jump(z: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Largest |z difference| (m) to a valid 4-neighbour."""
    jump = np.zeros_like(z)
    for axis in (0, 1):
        diff = np.abs(np.diff(z, axis=axis))
        ok = np.logical_and(np.delete(valid, 0, axis), np.delete(valid, -1, axis))
        diff = np.where(ok, diff, 0.0)
        pad_before = [(1, 0) if a == axis else (0, 0) for a in (0, 1)]
        pad_after = [(0, 1) if a == axis else (0, 0) for a in (0, 1)]
        jump = np.maximum(jump, np.maximum(np.pad(diff, pad_before), np.pad(diff, pad_after)))
    return jump


def _gaussian_blobs(size: int, centres, peak: float, sigma: float = 1.2) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    out = np.zeros((size, size))
    for u, v in centres:
        out = np.maximum(out, peak * np.exp(-((cols - u) ** 2 + (rows - v) ** 2) / (2 * sigma ** 2)))
    return out


def _project(points_world: np.ndarray, camera: np.ndarray, R_cv: np.ndarray, f: float, size: int):
    cam = (points_world - camera) @ R_cv  # = R_cv^T (p - c), row-wise
    front = cam[:, 2] > 0.1
    uv = f * cam[front, :2] / cam[front, 2:3] + size / 2.0
    inside = np.all((uv >= 0) & (uv < size), axis=1)
    return [tuple(x) for x in uv[inside]]


def _furniture_corners(room: dict) -> np.ndarray:
    lo, hi = room["furniture_lo"], room["furniture_hi"]
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def render_view(rng: np.random.Generator, building_style: dict, room: dict, camera: np.ndarray,
                rotation_final, size: int, fov: float) -> tuple[dict, dict]:
    """Encoded images of every image domain (as written) and the ground truth they encode."""
    R_cv = euler_sxyz_to_matrix(rotation_final) @ BLENDER_TO_OPENCV
    cast = ray_cast(room, camera, R_cv, size, fov)
    z, face, world = cast["z"], cast["face"], cast["world"]
    hole = _hole_mask(rng, size)
    valid = ~hole

    depth_zbuffer = encode_depth(z, valid)
    depth_euclidean = encode_depth(cast["euclidean"], valid)

    normals_world = np.stack([_face_normal(k) for k in range(12)])[face]
    normals_cam = normals_world @ R_cv  # R_cv^T n
    normals_cam = np.where(valid[..., None], normals_cam, 0.0)
    view_dirs = cast["rays_cam"] / np.linalg.norm(cast["rays_cam"], axis=-1, keepdims=True)
    shade = np.clip(-(normals_cam * view_dirs).sum(-1), 0.0, 1.0)

    # rgb: a colour per face, a 0.5 m checkerboard on every surface, shading by the view angle
    checker = (np.floor(world * 2.0 + 1e-6).astype(np.int64).sum(-1) % 2).astype(np.int64)
    colour = building_style["face_colours"][face] * (0.8 + 0.2 * checker[..., None]) * (0.55 + 0.45 * shade[..., None])
    colour += rng.normal(0, 0.01, size=colour.shape)
    rgb = np.clip(np.round(colour * 255), 0, 255).astype(np.uint8)
    rgb[hole] = 0

    reshading_gray = np.where(valid, np.round(shade * 255), 0).astype(np.uint8)
    reshading = np.repeat(reshading_gray[..., None], 3, axis=-1)

    # the room is convex, so the only occluding contours are the furniture's silhouette
    jump = _depth_jump(z, valid)
    object_edge = _neighbour_differs(face >= 6)
    occluding = object_edge & (jump > 0.05)
    crease = _neighbour_differs(face) & ~occluding & valid
    curvature = np.full((size, size, 3), CURVATURE_ZERO, dtype=np.uint8)
    convex = crease & (face >= 6)
    concave = crease & (face < 6)
    curvature[convex, 0] = CURVATURE_ZERO + 60
    curvature[concave, 1] = CURVATURE_ZERO - 60
    curvature[hole] = 0

    gray = rgb.astype(np.float64).mean(-1) / 255.0
    gy, gx = np.gradient(gray)
    edge_texture = np.clip(np.round(np.hypot(gx, gy) * 20000), 0, 5243)  # TF keeps [0, 0.08] of full scale
    edge_texture = np.where(valid, edge_texture, 0).astype(np.uint16)
    edge_occlusion = np.where(occluding & valid, np.clip(np.round(jump * 300), 1, 400), 0).astype(np.uint16)

    f = focal_length_px(size, fov)
    corners = _project(_furniture_corners(room), camera, R_cv, f, size)
    extra = [tuple(x) for x in rng.uniform(2, size - 2, size=(3, 2))]
    keypoints3d = np.round(_gaussian_blobs(size, corners, 30000.0)).astype(np.uint16)
    keypoints2d = np.round(_gaussian_blobs(size, corners + extra, 300.0)).astype(np.uint16)

    segment_unsup25d = np.where(valid, 1 + face, 0).astype(np.uint8)
    segment_unsup2d = np.where(valid, 1 + 2 * face + checker, 0).astype(np.uint8)

    semantic = np.where(face >= 6, building_style["furniture_class"], SEMANTIC_BACKGROUND)
    semantic = np.where(hole | object_edge, SEMANTIC_UNCERTAIN, semantic).astype(np.uint8)

    mask_valid = np.where(valid, 255, 0).astype(np.uint8)

    object_logits = rng.normal(0, 2.0, size=N_OBJECT_CLASSES).astype(np.float32)
    object_logits[building_style["object_class"]] += 8.0
    scene_logits = rng.normal(0, 1.0, size=N_SCENE_CLASSES)
    scene_logits[building_style["scene_class"]] += 5.0
    scene_probs = np.exp(scene_logits - scene_logits.max())
    scene_probs = (scene_probs / scene_probs.sum()).astype(np.float32)

    encoded = {
        "rgb": rgb, "depth_zbuffer": depth_zbuffer, "depth_euclidean": depth_euclidean,
        "normal": encode_normal(normals_cam, valid), "principal_curvature": curvature, "reshading": reshading,
        "edge_texture": edge_texture, "edge_occlusion": edge_occlusion, "keypoints2d": keypoints2d,
        "keypoints3d": keypoints3d, "segment_unsup2d": segment_unsup2d, "segment_unsup25d": segment_unsup25d,
        "segment_semantic": semantic, "class_object": object_logits, "class_scene": scene_probs,
        "mask_valid": mask_valid,
    }
    truth = {
        "valid": valid,
        "depth_zbuffer_m": depth_zbuffer.astype(np.float32) / DEPTH_UNITS_PER_METRE,
        "depth_euclidean_m": depth_euclidean.astype(np.float32) / DEPTH_UNITS_PER_METRE,
        "normal_cam": normals_cam.astype(np.float32),
        "segment_semantic": semantic,
        "class_object_logits": object_logits,
        "class_scene_probs": scene_probs,
    }
    return encoded, truth


# ----------------------------------------------------------------------------------------------- writing

def save_png(path: Path, array: np.ndarray) -> None:
    """uint8 (H, W) -> "L", uint8 (H, W, 3) -> "RGB", uint16 (H, W) -> "I;16"."""
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"{path}: PNGs are uint8 or uint16, got {array.dtype}")
    image = Image.fromarray(array)
    expected = {(np.dtype(np.uint8), 2): "L", (np.dtype(np.uint8), 3): "RGB", (np.dtype(np.uint16), 2): "I;16"}
    if image.mode != expected[(array.dtype, array.ndim)]:
        raise AssertionError(f"{path}: PIL made mode {image.mode} from {array.dtype} {array.shape}")
    image.save(path, format="PNG")


def write_domain_file(path: Path, domain: str, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if domain == "point_info":
        path.write_text(json.dumps(value))
    elif EXTENSIONS.get(domain) == "npy":
        np.save(path, value)
    else:
        save_png(path, value)


def split_assignment(buildings) -> dict[str, list[str]]:
    """All but the last two buildings train, then one val, one test (fewer buildings: train, then val)."""
    buildings = list(buildings)
    n = len(buildings)
    n_train = max(n - 2, min(n, 1))
    n_val = min(1, n - n_train)
    return {"train": buildings[:n_train], "val": buildings[n_train:n_train + n_val],
            "test": buildings[n_train + n_val:]}


def write_split_csv(path: Path, splits: dict[str, list[str]]) -> None:
    lines = ["id,train,val,test"]
    for split in ("train", "val", "test"):
        for building in splits[split]:
            flags = [int(split == s) for s in ("train", "val", "test")]
            lines.append(f"{building},{flags[0]},{flags[1]},{flags[2]}")
    path.write_text("\n".join(lines) + "\n")


def make_point_info(rng: np.random.Generator, *, room: dict, room_id: str, point_id: int, view_id: int,
                    point: np.ndarray, normal: np.ndarray, camera: np.ndarray, n_points: int,
                    size: int, fov: float) -> dict:
    """One point_info JSON, keys in the order of the real file point_202_view_5."""
    rotation_final = look_at_euler(camera, point)
    rotation_original = [math.pi / 2 + rng.normal(0, 0.03), rng.normal(0, 0.01), rng.uniform(-math.pi, math.pi)]
    R_final, R_original = euler_sxyz_to_matrix(rotation_final), euler_sxyz_to_matrix(rotation_original)
    rotation_delta = matrix_to_euler_sxyz(R_final @ R_original.T)
    image_vps, sphere_vps = vanishing_points(rotation_final, fov, size)
    # the real files swap world x and y in the room box (see the module docstring)
    bbox = {"x": [float(room["lo"][1]), float(room["hi"][1])], "y": [float(room["lo"][0]), float(room["hi"][0])],
            "z": [float(room["lo"][2]), float(room["hi"][2])]}
    return {
        "vanishing_points_gaussian_sphere": sphere_vps,
        "nonfixated_points_in_view": [p for p in range(n_points) if p != point_id],
        "point_pitch": point_pitch(camera, rotation_original, point),
        "camera_rotation_from_original_to_final": rotation_delta,
        "camera_location": [float(x) for x in camera],
        "camera_rotation_original": [float(x) for x in rotation_original],
        "view_id": int(view_id),
        "point_location": [float(x) for x in point],
        "camera_distance": float(np.linalg.norm(point - camera)),
        "bounding_box_ranges": bbox,
        "obliqueness_angle": obliqueness_angle(camera, point, normal),
        "resolution": int(size),
        "point_uuid": str(point_id),
        "point_normal": [float(x) for x in normal],
        "camera_rotation_final": [float(x) for x in rotation_final],
        "vanishing_points_image": image_vps,
        "camera_uuid": rng.bytes(16).hex(),
        "field_of_view_rads": float(fov),
        "room": room_id,
    }


def write_taskonomy_fixture(root, *, layout="omnidata", buildings=("allensville", "beechwood", "cosmos", "darden"),
                            points=3, views=3, size=64, domains=DOMAINS, seed=0) -> dict:
    """Write the fixture under ``root`` and return what a reader test compares against.

    Returns a dict with
      buildings, points, views, size, layout, domains (written), seed;
      root (Path), split_csv (Path), splits {"train"/"val"/"test": [buildings]};
      intrinsics {"field_of_view_rads", "focal_px", "cx", "cy"} (pixel centres at j + 0.5, i + 0.5);
      rooms {building: {"x", "y", "z": [lo, hi]}} the room box in the plain world frame (point_info's
        bounding_box_ranges has x and y swapped, as the real files do);
      cameras {(building, point, view): {"cam_to_world": 4x4 list, OpenCV frame, "camera_location": [3]}};
      point_info {(building, point, view): the JSON dict written (also when point_info is not written)};
      files {(building, point, view): {domain: Path}} for the domains written;
      encoded {(building, point, view): {domain: the array exactly as written}} (not point_info);
      truth {(building, point, view): {"valid" bool HxW, "depth_zbuffer_m" / "depth_euclidean_m" float32 HxW
        (= png value / 512; invalid pixels hold 65535 / 512), "normal_cam" float32 HxWx3 unit normals
        (x right, y down, z forward; 0 where invalid), "segment_semantic" uint8 labels,
        "class_object_logits" float32 [1000], "class_scene_probs" float32 [365]}}.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    domains = list(domains)
    unknown = sorted(set(domains) - set(DOMAINS))
    if unknown:
        raise ValueError(f"unknown domains {unknown}; expected a subset of {DOMAINS}")
    if points < 1 or views < 1:
        raise ValueError("points and views must be >= 1")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fov = FIELD_OF_VIEW_RADS
    buildings = list(buildings)
    result = {
        "buildings": buildings, "points": points, "views": views, "size": size, "layout": layout,
        "domains": domains, "seed": seed, "root": root,
        "intrinsics": {"field_of_view_rads": fov, "focal_px": focal_length_px(size, fov),
                       "cx": size / 2.0, "cy": size / 2.0},
        "rooms": {}, "cameras": {}, "point_info": {}, "files": {}, "encoded": {}, "truth": {},
    }
    for building in buildings:
        rng = _building_rng(seed, building)
        room = make_room(rng)
        room_id = rng.bytes(16).hex()
        style = {"face_colours": rng.uniform(0.25, 0.95, size=(12, 3)),
                 "furniture_class": int(rng.choice(SEMANTIC_CLASSES)),
                 "object_class": int(rng.integers(N_OBJECT_CLASSES)),
                 "scene_class": int(rng.integers(N_SCENE_CLASSES))}
        result["rooms"][building] = {axis: [float(room["lo"][i]), float(room["hi"][i])]
                                     for i, axis in enumerate("xyz")}
        for point_id in range(points):
            point, normal = _sample_point(rng, room)
            azimuth0 = rng.uniform(0, 2 * math.pi)
            for view_id in range(views):
                key = (building, point_id, view_id)
                camera = _sample_camera(rng, room, point, normal, azimuth0 + 2 * math.pi * view_id / views)
                info = make_point_info(rng, room=room, room_id=room_id, point_id=point_id, view_id=view_id,
                                       point=point, normal=normal, camera=camera, n_points=points,
                                       size=size, fov=fov)
                encoded, truth = render_view(rng, style, room, camera, info["camera_rotation_final"], size, fov)
                result["point_info"][key] = info
                result["cameras"][key] = {
                    "cam_to_world": cam_to_world_opencv(info["camera_location"],
                                                        info["camera_rotation_final"]).tolist(),
                    "camera_location": info["camera_location"],
                }
                result["encoded"][key] = encoded
                result["truth"][key] = truth
                result["files"][key] = {}
                for domain in domains:
                    path = file_path(root, layout, domain, building, point_id, view_id)
                    write_domain_file(path, domain, info if domain == "point_info" else encoded[domain])
                    result["files"][key][domain] = path
    splits = split_assignment(buildings)
    result["splits"] = splits
    result["split_csv"] = root / SPLIT_CSV_NAME
    write_split_csv(result["split_csv"], splits)
    return result
