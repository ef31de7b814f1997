"""Decode one view of a real Taskonomy download into the bank's arrays at the bank's resolution.

Each domain is decoded as the release encodes it (reference section 6.3) and converted to the bank's
physical encoding (docs/bank-format.md; docs/real-data.md has the table):

- depth (``depth_zbuffer``, ``depth_euclidean``): 16-bit, 1/512 m; 65535 (>= 64500 in the original code) is
  no geometry. The validity mask comes from the z-buffer (or ``mask_valid``, or the Euclidean depth);
- ``normal``: 8-bit RGB, ``n = v / 127.5 - 1``, camera frame x right, y down, z forward; gray 128 invalid;
- ``principal_curvature``: the first two 8-bit channels, zero curvature at 127;
- ``reshading``: 8-bit (three equal channels), to [0, 1];
- edges and keypoints: 16-bit, to [0, 1] of full scale;
- unsupervised segmentations: 8-bit ids; ``segment_semantic``: 0 = uncertain (ignored by the loss),
  1 = background, 2..17 the 16 classes, stored as 0..16 with ``IGNORE`` for uncertain;
- ``class_object``: 1000 logits (``.npy``), stored as their softmax; ``class_scene``: the Places
  distribution (``.npy``), stored as its most likely class;
- ``point_info``: the camera (Blender convention: looks down -z, y up; ``camera_rotation_final`` static
  xyz Euler angles) turned into the bank's OpenCV camera (x right, y down, z forward); the room box of
  ``bounding_box_ranges`` (x and y ranges swapped in the files) and ``vanishing_points_gaussian_sphere``
  (the world axes in the camera frame, x and y as the original code made them "well defined": turned by
  a multiple of 90 degrees about the vertical) are the room layout's and vanishing points' labels.

Images are resized by block means (antialiased bilinear where the size does not divide), label maps
with the nearest pixel;
continuous maps are averaged over valid pixels only, and a bank pixel is valid where at least half of
the pixels it covers are. Every problem with a file is one DataError naming it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from taskonomy.bank.render.views import rotation_sxyz
from taskonomy.errors import DataError
from taskonomy.tasks import IGNORE_INDEX as IGNORE

DEPTH_UNITS = 512.0       # depth pngs count 1/512 m
DEPTH_INVALID = 64500     # and values from here up (65535 in the files) are holes, sky or no mesh
CURVATURE_ZERO = 127.0
SEMANTIC_CLASSES = ("background", "bottle", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
                    "tv", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase")
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0])   # camera axes: Blender (x right, y up, z back) -> OpenCV

SIXTEEN_BIT = ("depth_zbuffer", "depth_euclidean", "edge_texture", "edge_occlusion", "keypoints2d", "keypoints3d")
POINT_INFO_KEYS = ("camera_location", "camera_rotation_final", "point_location", "field_of_view_rads",
                   "bounding_box_ranges", "vanishing_points_gaussian_sphere")


def read_png(path: Path, domain: str) -> np.ndarray:
    """The image as (H, W) or (H, W, C) integers, checked for the domain's bit depth."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if domain in SIXTEEN_BIT:
                if not mode.startswith("I"):
                    raise DataError(f"{path}: an 8-bit {mode} image, but {domain} is stored as 16-bit")
                return np.array(im, dtype=np.int64)
            if mode.startswith("I") or mode == "F":
                raise DataError(f"{path}: a {mode} image, but {domain} is stored as 8-bit")
            if mode not in ("L", "RGB"):
                im = im.convert("RGB")
            return np.array(im, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: corrupt or truncated image ({err})") from None


def read_npy(path: Path) -> np.ndarray:
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: unreadable or truncated .npy ({err})") from None
    value = np.asarray(value, dtype=np.float64).ravel()
    if not value.size or not np.isfinite(value).all():
        raise DataError(f"{path}: empty or not finite")
    return value


def read_point_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path}: unreadable JSON ({err})") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: not a JSON object")
    missing = [key for key in POINT_INFO_KEYS if key not in info]
    if missing:
        raise DataError(f"{path}: no key {missing[0]!r} (point_info needs {', '.join(POINT_INFO_KEYS)})")
    try:
        camera = dict(location=_vector(info["camera_location"]), rotation=_vector(info["camera_rotation_final"]),
                      point=_vector(info["point_location"]), fov=float(info["field_of_view_rads"]),
                      # the files' box ranges have world x and y swapped ("x" is the world-y range; the real
                      # sample's camera x equals its "y" lower bound, and omnidata's loader swaps them back)
                      box=np.array([_vector(info["bounding_box_ranges"][k], 2) for k in "yxz"]),
                      axes=np.array([_vector(info["vanishing_points_gaussian_sphere"][k]) for k in "xyz"]),
                      visible=[int(p) for p in info.get("nonfixated_points_in_view", [])])
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: malformed point_info ({type(err).__name__}: {err})") from None
    return camera


def _vector(value: Any, n: int = 3) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64)
    if v.shape != (n,) or not np.isfinite(v).all():
        raise ValueError(f"expected {n} finite numbers, got {value!r}")
    return v


def cam_to_world(location: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """4x4 camera -> world pose in the bank's (OpenCV) camera convention from point_info's Blender camera."""
    pose = np.eye(4)
    pose[:3, :3] = rotation_sxyz(rotation) @ BLENDER_TO_OPENCV
    pose[:3, 3] = location
    return pose


def room_layout(pose: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The bank's 10 room-layout numbers from point_info's room box (world ranges, z up): the box centre in
    the camera frame (3), camera pitch, roll, cos and sin of twice the yaw (4), the box extents (3)."""
    rot, centre = pose[:3, :3], pose[:3, 3]
    in_camera = rot.T @ (box.mean(1) - centre)
    right, forward = rot[:, 0], rot[:, 2]
    pitch = np.arcsin(np.clip(forward[2], -1, 1))
    roll = np.arcsin(np.clip(-right[2], -1, 1))
    yaw2 = 2 * np.arctan2(forward[0], forward[1])
    return np.concatenate([in_camera, [pitch, roll, np.cos(yaw2), np.sin(yaw2)], box[:, 1] - box[:, 0]])


def _resize(x: np.ndarray, size: int) -> torch.Tensor:
    """(C, H, W) float -> (C, size, size): the mean of each block of pixels where the size divides the
    image's (512 -> 256, 128, 64, 32 ...), antialiased bilinear otherwise."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
    h, w = t.shape[-2:]
    if (h, w) == (size, size):
        return t[0]
    if h % size == 0 and w % size == 0:
        return F.avg_pool2d(t, kernel_size=(h // size, w // size))[0]
    return F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def _resize_masked(x: np.ndarray, valid: np.ndarray, size: int, fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Average of the valid pixels only; a bank pixel is valid where at least half its source pixels are."""
    m = valid.astype(np.float32)[None]
    weight = _resize(m, size)
    value = _resize(x * m, size) / weight.clamp(min=1e-6)
    ok = weight >= 0.5
    return torch.where(ok, value, torch.full_like(value, fill)), ok[0]


def _nearest(x: np.ndarray, size: int) -> np.ndarray:
    """(H, W) integer map -> (size, size), the pixel nearest each bank pixel's centre."""
    h, w = x.shape
    rows = ((np.arange(size) + 0.5) * h / size).astype(np.int64)
    cols = ((np.arange(size) + 0.5) * w / size).astype(np.int64)
    return x[np.ix_(rows, cols)]


def _channels(x: np.ndarray) -> np.ndarray:
    return x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)


def decode_view(files: dict[str, Path], size: int) -> dict[str, Any]:
    """Every bank array of one view from its files (domain -> path), at ``size`` pixels, plus its camera
    (``"camera"``, from point_info) for the pairwise labels."""
    out: dict[str, Any] = {}
    raw = {d: read_png(p, d) for d, p in files.items() if d not in ("class_object", "class_scene", "point_info")}
    rgb = raw["rgb"]
    if rgb.ndim != 3:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    out["rgb"] = _resize(_channels(rgb), size).round().clamp(0, 255).to(torch.uint8).numpy()
    shape = rgb.shape[:2]
    for domain, value in raw.items():
        if value.shape[:2] != shape:
            raise DataError(f"{files[domain]}: {value.shape[1]}x{value.shape[0]} pixels, but the view's rgb has "
                            f"{shape[1]}x{shape[0]}")
    if "depth_zbuffer" in raw:
        valid = raw["depth_zbuffer"] < DEPTH_INVALID
    elif "mask_valid" in raw:
        valid = _channels(raw["mask_valid"])[0] > 0
    elif "depth_euclidean" in raw:
        valid = raw["depth_euclidean"] < DEPTH_INVALID
    else:
        valid = np.ones(shape, dtype=bool)
    mask = _resize(valid.astype(np.float32)[None], size)[0] >= 0.5
    out["mask"] = mask.numpy()[None]
    for domain, name in (("depth_zbuffer", "rgb2depth"), ("depth_euclidean", "rgb2mist")):
        if domain in raw:
            ok = valid & (raw[domain] < DEPTH_INVALID)
            metres, _ = _resize_masked(raw[domain][None] / DEPTH_UNITS, ok, size)
            # holes get the image's geometric-mean depth: masked out of the loss, and neutral for the
            # per-image mean that log-depth is centred on (taskonomy.tasks, LOG_CENTERED)
            inside = metres[0][mask & (metres[0] > 0)]
            fill = float(inside.log().mean().exp()) if inside.numel() else 1.0
            out[name] = torch.where(mask & (metres[0] > 0), metres[0], torch.tensor(fill))[None].numpy().astype(np.float16)
    if "normal" in raw:
        n = _channels(raw["normal"])[:3].astype(np.float32) / 127.5 - 1
        value, _ = _resize_masked(n, valid, size)
        norm = value.norm(dim=0, keepdim=True)
        out["rgb2sfnorm"] = torch.where(norm > 1e-6, value / norm.clamp(min=1e-6), torch.zeros_like(value)).numpy().astype(np.float16)
    if "reshading" in raw:
        value, _ = _resize_masked(_channels(raw["reshading"])[:1] / 255.0, valid, size)
        out["reshade"] = value.numpy().astype(np.float16)
    if "principal_curvature" in raw:
        k = (_channels(raw["principal_curvature"])[:2].astype(np.float32) - CURVATURE_ZERO) / CURVATURE_ZERO
        value, _ = _resize_masked(k, valid, size)
        out["curvature"] = value.numpy().astype(np.float16)
    for domain, name, masked in (("edge_occlusion", "edge3d", True), ("keypoints3d", "keypoint3d", True),
                                 ("edge_texture", "edge2d", False), ("keypoints2d", "keypoint2d", False)):
        if domain in raw:
            scaled = _channels(raw[domain])[:1] / 65535.0
            value = _resize_masked(scaled, valid, size)[0] if masked else _resize(scaled, size)
            out[name] = value.numpy().astype(np.float16)
    for domain, name in (("segment_unsup25d", "segment25d"), ("segment_unsup2d", "segment2d")):
        if domain in raw:
            out[name] = _nearest(_channels(raw[domain])[0], size).astype(np.int16)[None]
    if "segment_semantic" in raw:
        labels = _nearest(_channels(raw["segment_semantic"])[0], size).astype(np.int64)
        if labels.max() > len(SEMANTIC_CLASSES):
            raise DataError(f"{files['segment_semantic']}: label {labels.max()} (segment_semantic has 0 = uncertain, "
                            f"1 = background and {len(SEMANTIC_CLASSES) - 1} classes)")
        out["segmentsemantic"] = np.where(labels == 0, IGNORE, labels - 1).astype(np.uint8)[None]
    if "class_object" in files:
        logits = read_npy(files["class_object"])
        p = np.exp(logits - logits.max())
        out["class_object"] = (p / p.sum()).astype(np.float32)
    if "class_scene" in files:
        scene = read_npy(files["class_scene"])
        out["class_scene"] = np.int64(scene.argmax())
        out["class_scene_count"] = scene.size
    if "point_info" in files:
        camera = read_point_info(files["point_info"])
        pose = cam_to_world(camera["location"], camera["rotation"])
        out["cam_to_world"] = pose.astype(np.float32)
        out["fixation_point"] = camera["point"].astype(np.float32)
        out["room_layout"] = room_layout(pose, camera["box"]).astype(np.float32)
        out["vanishing_point"] = (camera["axes"] @ BLENDER_TO_OPENCV).reshape(9).astype(np.float32)
        out["camera"] = {"fov": camera["fov"], "visible": camera["visible"]}
    return out
