"""Render a split: scenes -> cameras -> ray-cast buffers -> every label of docs/bank-format.md.

Scene ``i`` of a split is drawn from its own generator, seeded by (split seed, i), and everything after
that is a pure function of the scene, so a split is a pure function of (render params, seed, split name);
scenes are rendered ``chunk_scenes`` at a time, each chunk in one vectorised pass, and chunks run in
``workers`` forked processes of one thread each (by default as many as the machine has free cores; the
bytes depend on neither). Within a chunk, the
per-pixel work runs a slice of views at a time, small enough to stay in cache.

A target ``domain`` (taskonomy.bank.render.domain) shows the same scenes with other appearance:
:func:`render_target_bank` writes the target domain's bank.
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.pool
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from taskonomy import bank
from taskonomy.config import AdaptParams, RenderParams, as_dict
from taskonomy.errors import TaskonomyError
from taskonomy.bank.render import labels, views
from taskonomy.bank.render.camera import (CANDIDATES, FIXATED_VIEWS, GROUP_GAP, Rig, cam_to_world, look_at,
                                     sample_rig)
from taskonomy.bank.render.domain import Domain
from taskonomy.bank.render.raycast import ROOM_FACES, Primitives, first_hit_t, pack, shadowed, view_hits
from taskonomy.bank.render.scene import (CEILING, CLASSES, FLOOR, OBJECT_CLASSES, ROOM_MATERIALS, SCENE_TYPES, WALL,
                                    Scene, sample_scene)
from taskonomy.bank.render.shading import Lighting, albedo, encode, pack_lighting, shade
from taskonomy.bank.render.vector import planar_dot, planar_matvec

log = logging.getLogger(__name__)

SPLITS = ("train", "transfer", "test")
# The target domain's splits (stage render_target): new scenes, and the test split's scenes re-rendered
TARGET_SPLITS = ("target_train", "target_test")
TARGET_SCENES_OF = {"target_train": "target_train", "target_test": "test"}     # whose seed draws the scenes
# Semantic class of the room faces 2 * axis + (ray goes + along the axis): x walls, floor / ceiling, z walls.
FACE_CLASS = (WALL, WALL, FLOOR, CEILING, WALL, WALL)
MIN_FIXATION_DISTANCE = 0.6     # m
DENSE_PIXELS = 1 << 17          # pixels shaded and labelled per pass: the buffers of a pass stay in cache

# What each array holds (the manifest's "encoding"); the full table is docs/bank-format.md.
ENCODINGS = {
    "rgb": "clean image, sRGB 0..255",
    "mask": "valid geometry",
    "rgb2depth": "z-buffer depth, m",
    "rgb2mist": "Euclidean distance to the camera centre, m",
    "rgb2sfnorm": "unit normal in the camera frame (x right, y down, z forward), facing the camera",
    "reshade": "Lambertian shading from a point light at the camera, no albedo, [0, 1]",
    "curvature": "principal curvatures k1 >= k2, 1/m, convex > 0",
    "edge3d": "occlusion edges, blurred, [0, 1]",
    "keypoint3d": "Harris response of the normal field, >= 0",
    "segment25d": "ids of connected regions of one surface and normal direction",
    "edge2d": "Sobel gradient magnitude of the grey image in [0, 1]",
    "keypoint2d": "Harris response of the grey image, >= 0",
    "segment2d": "ids of connected regions of one quantised colour",
    "segmentsemantic": "class id, manifest classes",
    "class_object": "visible-area distribution over object classes",
    "class_scene": "room type id, manifest scene_types",
    "room_layout": "room centre in the camera frame (3), camera pitch, roll, cos and sin of 2 yaw (4), "
                   "room extents (3)",
    "vanishing_point": "world x, y, z axes in the camera frame",
    "jigsaw": "index into jigsaw_permutations",
    "jigsaw_permutations": "fixed permutation set, row 0 identity",
    "scene_id": "scene index within the split",
    "cam_to_world": "camera pose, camera frame -> world",
    "fixation_point": "world point on the optical axis: the fixation point of the view's group of 3",
    "fix_pose_index": "view pairs (a, b) of one fixation group",
    "fix_pose": "pose of b w.r.t. a: sxyz angles of R_b^T R_a, R_b^T (c_a - c_b)",
    "non_fixated_pose_index": "view pairs (a, b) of two fixation groups",
    "non_fixated_pose": "pose of b w.r.t. a: sxyz angles of R_b^T R_a, R_b^T (c_a - c_b)",
    "ego_motion_index": "view triplets of one fixation group",
    "ego_motion": "poses of pairs (0, 1), (0, 2), (1, 2) of the triplet",
    "point_match_index": "view pairs",
    "point_match": "1 iff both views see the same 3D point at their centre",
}
# ... and where the target domain's arrays say more (taskonomy.bank.render.domain)
TARGET_ENCODINGS = {
    "rgb": "the target domain's image, every shift applied, sRGB 0..255",
    "edge2d": "Sobel gradient magnitude of the grey image in [0, 1], before the sensor's blur and noise",
    "keypoint2d": "Harris response of the grey image, >= 0, before the sensor's blur and noise",
    "segment2d": "ids of connected regions of one quantised colour, before the sensor's blur and noise",
}


def split_seed(seed: int, split: str) -> int:
    """The seed of one split: a stream of its own, derived from render.seed and the split's name."""
    return int(np.random.SeedSequence([seed, zlib.crc32(split.encode())]).generate_state(1)[0])


# Streams of a scene's generators: the scene and its rig, its view pairs, the target domain's sensor noise
SCENE_STREAM, PAIR_STREAM, NOISE_STREAM = 0, 1, 2


def scene_rng(seed: int, index: int, stream: int = SCENE_STREAM) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics shared by every view: square pixels, principal point at the image centre."""
    resolution: int
    fov_deg: float

    @property
    def focal(self) -> float:
        return self.resolution / 2 / np.tan(np.deg2rad(self.fov_deg) / 2)

    def rays(self) -> torch.Tensor:
        """Unit ray directions (R * R, 3) in the camera frame, row-major pixel order."""
        centres = (torch.arange(self.resolution, dtype=torch.float64) + 0.5 - self.resolution / 2) / self.focal
        v, u = torch.meshgrid(centres, centres, indexing="ij")
        d = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)
        return (d / d.norm(dim=-1, keepdim=True)).float()


# --------------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------------

def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def place_cameras(prims, scenes: list[Scene], rigs: list[Rig], views: int) -> tuple[np.ndarray, np.ndarray]:
    """cam_to_world poses (S, V, 4, 4) and each view's fixation point (S, V, 3) of a batch of scenes; the
    views come in G = V / 3 groups that share a point."""
    S, G = len(scenes), views // FIXATED_VIEWS
    every = torch.arange(S)
    # The first fixation point: the first surface along each scene's anchor ray.
    anchor = torch.tensor(np.array([r.anchor_origin for r in rigs]), dtype=torch.float32)
    aim = _unit(torch.tensor(np.array([r.anchor_target for r in rigs]), dtype=torch.float32) - anchor)
    first_point = anchor + first_hit_t(prims, every, anchor, aim.t()[..., None]) * aim            # (S, 3)

    # Further points: the first surface along rays from the anchor aimed beside the first point; the first
    # hit within GROUP_GAP of it, else the hit nearest to that range.
    if G > 1:
        offset = torch.tensor(np.array([r.group_offset for r in rigs]), dtype=torch.float32)  # (S, G-1, T, 3)
        aim = _unit(first_point[:, None, None] + offset - anchor[:, None, None]).reshape(S, -1, 3)
        t = first_hit_t(prims, every, anchor, aim.permute(2, 0, 1))
        tries = (anchor[:, None] + t[..., None] * aim).reshape(offset.shape)                 # (S, G-1, T, 3)
        gap = (tries - first_point[:, None, None]).norm(dim=-1)                              # (S, G-1, T)
        miss = (GROUP_GAP[0] - gap).clamp_min(0) + (gap - GROUP_GAP[1]).clamp_min(0)
        pick = torch.where(miss.eq(0).any(-1), miss.eq(0).long().argmax(-1), miss.argmin(-1))
        further = tries.take_along_dim(pick[..., None, None], dim=2)[:, :, 0]               # (S, G-1, 3)
        point = torch.cat([first_point[:, None], further], dim=1)                           # (S, G, 3)
    else:
        point = first_point[:, None]

    # Each view: the first candidate that sees its group's point unoccluded, from a sensible distance.
    cand = torch.tensor(np.array([r.candidates for r in rigs]), dtype=torch.float32)     # (S, V, K, 3)
    target = point.repeat_interleave(FIXATED_VIEWS, dim=1)                               # (S, V, 3)
    to_point = target[:, :, None] - cand
    dist = to_point.norm(dim=-1)
    look = to_point / dist[..., None]                                                   # (S, V, K, 3)
    view_scene = every.repeat_interleave(views * CANDIDATES)
    blocked = shadowed(prims, view_scene, cand.reshape(-1, 3), look.reshape(-1, 3).t()[..., None],
                       (dist - 1e-3).reshape(-1, 1), torch.ones(dist.numel(), 1, dtype=torch.bool), run=1)
    ok = ~blocked.reshape(dist.shape) & (dist > MIN_FIXATION_DISTANCE) & (look[..., 1].abs() < 0.9)
    first = torch.where(ok.any(-1), ok.long().argmax(-1), -1)                            # (S, V)

    target_np = target.double().numpy()
    first = first.numpy()
    candidates = np.array([r.candidates for r in rigs])                                   # (S, V, K, 3)
    centre = np.take_along_axis(candidates, first.clip(0)[..., None, None], axis=2)[:, :, 0]
    centre = np.where(first[..., None] >= 0, centre, np.array([r.anchor_origin for r in rigs])[:, None])
    rot = look_at(centre, target_np, np.array([r.roll for r in rigs]))
    return cam_to_world(rot, centre), target_np


# --------------------------------------------------------------------------------------------------
# One chunk of scenes
# --------------------------------------------------------------------------------------------------

def _lookup_tables(scenes: list[Scene], per_scene: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (scene, surface id): class and material index within the scene, (S, ROOM_FACES + P) each."""
    cls = np.zeros((len(scenes), ROOM_FACES + per_scene), np.int64)
    material = np.zeros_like(cls)
    cls[:, :ROOM_FACES] = FACE_CLASS
    material[:, :ROOM_FACES] = FACE_CLASS                  # room materials are floor, wall, ceiling
    for s, scene in enumerate(scenes):
        n = len(scene.prim_kind)
        cls[s, ROOM_FACES:ROOM_FACES + n] = scene.object_class[scene.prim_object]
        material[s, ROOM_FACES:ROOM_FACES + n] = ROOM_MATERIALS + scene.prim_object
    return torch.from_numpy(cls), torch.from_numpy(material)


def render_chunk(r: RenderParams, seed: int, indices: range, into: dict[str, np.ndarray] | None = None,
                 domain: Domain | None = None) -> dict[str, np.ndarray]:
    """Every per-view array of scenes ``indices`` (views scene-major), as stored in the bank; the dense ones
    (:func:`dense_layout`) are written into ``into`` (each array's rows of these views) where given, and
    left out of the result. With a ``domain``, the scenes as sampled are seen in that domain."""
    scenes, rigs = [], []
    for i in indices:
        rng = scene_rng(seed, i)
        scenes.append(sample_scene(rng, r.objects_min, r.objects_max, r.lights_max))
        rigs.append(sample_rig(rng, scenes[-1], r.views_per_scene, r.jigsaw_permutations))
    S, per = len(scenes), r.views_per_scene
    noise = None
    if domain is not None:     # after every draw: other colours and lights, the same rooms and cameras
        scenes = [domain.restyle(scene) for scene in scenes]
        streams = [scene_rng(seed, i, NOISE_STREAM) for i in indices]
        noise = [stream for stream in streams for _ in range(per)]          # view -> its scene's stream
    V = S * per
    prims, lighting = pack(scenes), pack_lighting(scenes)
    tables = _lookup_tables(scenes, prims.per_scene)
    poses, fixation = place_cameras(prims, scenes, rigs, per)
    pose = torch.from_numpy(poses.reshape(V, 4, 4)).float()                             # (V, 4, 4)
    scene_of_view = torch.arange(S).repeat_interleave(per)

    # The per-pixel work, a slice of views at a time (each view is independent of the others), each
    # writing its rows of the chunk's arrays.
    step = max(1, DENSE_PIXELS // (r.resolution * r.resolution))
    layout = dense_layout(r.resolution)
    dense: dict[str, np.ndarray] = {}
    if into is not None:
        dense = {name: into[name] for name in layout}           # a KeyError here is a bug: no silent copy
    for v in range(0, V, step):
        _render_views(r, prims, lighting, tables, scene_of_view[v:v + step], pose[v:v + step],
                      _Rows(dense, layout, V, v), domain, None if noise is None else noise[v:v + step])
    room = np.array([s.room for s in scenes])
    return {
        **({} if into is not None else dense),
        "class_scene": np.repeat([s.scene_type for s in scenes], per).astype(np.int64),
        "room_layout": views.room_layout(poses.reshape(V, 4, 4), np.repeat(room, per, axis=0)).astype(np.float32),
        "vanishing_point": views.vanishing_points(poses.reshape(V, 4, 4)).astype(np.float32),
        "jigsaw": np.concatenate([rig.jigsaw for rig in rigs]).astype(np.int64),
        "scene_id": np.repeat(np.asarray(indices, dtype=np.int32), per),
        "cam_to_world": poses.reshape(V, 4, 4).astype(np.float32),
        "fixation_point": fixation.reshape(V, 3).astype(np.float32),
    }


def dense_layout(resolution: int) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """The per-pixel arrays of the bank that :func:`_render_views` writes: dtype and shape per view."""
    image = lambda channels: (channels, resolution, resolution)                          # noqa: E731
    half = torch.float16
    return {"rgb": (torch.uint8, image(3)), "mask": (torch.bool, image(1)), "rgb2depth": (half, image(1)),
            "rgb2mist": (half, image(1)), "rgb2sfnorm": (half, image(3)), "reshade": (half, image(1)),
            "curvature": (half, image(2)), "edge3d": (half, image(1)), "keypoint3d": (half, image(1)),
            "segment25d": (torch.int16, image(1)), "edge2d": (half, image(1)), "keypoint2d": (half, image(1)),
            "segment2d": (torch.int16, image(1)), "segmentsemantic": (torch.uint8, image(1)),
            "class_object": (torch.float32, (len(OBJECT_CLASSES),))}


@dataclass(frozen=True)
class _Rows:
    """Rows ``start``.. of a chunk's dense arrays (``total`` views each; made on first use unless given):
    each label is converted to its stored dtype (:func:`dense_layout`) as it is copied in, with no array
    per slice of views to concatenate."""
    arrays: dict[str, np.ndarray]
    layout: dict[str, tuple[torch.dtype, tuple[int, ...]]]
    total: int
    start: int

    def __setitem__(self, name: str, x: torch.Tensor) -> None:
        dtype, shape = self.layout[name]
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"{name}: views of shape {tuple(x.shape[1:])}, the layout says {shape}")
        if name not in self.arrays:
            self.arrays[name] = torch.empty((self.total,) + shape, dtype=dtype).numpy()
        torch.from_numpy(self.arrays[name][self.start:self.start + len(x)]).copy_(x)


def _render_views(r: RenderParams, prims: Primitives, lighting: Lighting, tables: tuple[torch.Tensor, torch.Tensor],
                  scene_of_view: torch.Tensor, pose: torch.Tensor, out: _Rows, domain: Domain | None = None,
                  noise: list[np.random.Generator] | None = None) -> None:
    """The image and the dense labels of views ``pose`` (V, 4, 4) of scenes ``scene_of_view`` (V,), into
    ``out``; with a ``domain``, its fog before the 2D labels and its sensor (``noise``: each view's scene
    stream) after them."""
    V, R = len(pose), r.resolution
    rot, origin = pose[:, :3, :3], pose[:, :3, 3]

    # Primary rays: one per pixel, camera frame -> world. Per-pixel vectors are planar (3, V, N).
    camera = Camera(R, r.fov_deg)
    ray_cam = camera.rays().t().contiguous()[:, None]                                    # (3, 1, N)
    dirs = planar_matvec(rot.reshape(V, 9).t()[..., None], ray_cam)                      # (3, V, N)
    hits = view_hits(prims, scene_of_view, rot, origin, dirs, camera.focal, R)
    point = torch.addcmul(origin.t()[..., None], hits.t, dirs)                          # (3, V, N)

    # Surfaces: class, instance, material; then colour.
    cls_table, material_table = tables
    entry = scene_of_view[:, None] * cls_table.shape[1] + hits.surface                  # (V, N) into the tables
    cls = cls_table.take(entry)
    material = scene_of_view[:, None] * lighting.per_scene + material_table.take(entry)
    base = albedo(lighting, material.reshape(-1), hits.texture_point.reshape(3, -1)).reshape(3, V, -1)
    gloss = lighting.specular.take(material)
    radiance = shade(prims, lighting, scene_of_view, dirs, point, hits.normal, base, gloss, r.shadows)
    if domain is not None:
        radiance = domain.fog(radiance, hits.t)
    rgb = encode(radiance)                                                               # (3, V, N) uint8

    # Dense labels, images (V, C, R, R) from planes (C, V, N) or (V, N).
    image = lambda x: x.reshape(-1, V, R, R).transpose(0, 1).contiguous()               # noqa: E731
    # camera-frame normals R^T n; camera-frame points are t times the camera-frame rays (no rotation back)
    normal_img = image(planar_matvec(rot.transpose(1, 2).reshape(V, 9).t()[..., None], hits.normal))
    point_img = (hits.t[:, None] * ray_cam.transpose(0, 1)).reshape(V, 3, R, R)
    rgb_img = image(rgb)
    clean = rgb_img.float() / 255
    surface = hits.surface.reshape(V, R, R)
    is_room = surface < ROOM_FACES
    semantic = cls.reshape(V, R, R)

    objects = cls - len(CLASSES) + len(OBJECT_CLASSES)                                   # object class index
    visible = torch.zeros(V, len(OBJECT_CLASSES) + 1, dtype=torch.int64)
    visible.scatter_add_(1, torch.where(objects >= 0, objects, len(OBJECT_CLASSES)), torch.ones_like(objects))
    area = visible[:, :-1].double()
    total = area.sum(1, keepdim=True)
    class_object = torch.where(total > 0, area / total.clamp_min(1), 1.0 / len(OBJECT_CLASSES))

    edge2d, keypoint2d = labels.edge_and_keypoint2d(clean)
    if domain is not None and domain.has_sensor:    # the camera's blur and noise: the 2D labels are above
        rgb_img = image(encode(domain.sensor(radiance, R, noise)))
    out["rgb"] = rgb_img
    out["mask"] = torch.isfinite(hits.t).reshape(V, 1, R, R)
    out["rgb2depth"] = point_img[:, 2:]
    out["rgb2mist"] = hits.t.reshape(V, 1, R, R)
    out["rgb2sfnorm"] = normal_img
    out["reshade"] = planar_dot(hits.normal, dirs).neg_().clamp_(0, 1).reshape(V, 1, R, R)
    out["curvature"] = hits.curvature.reshape(2, V, R, R).transpose(0, 1)
    out["edge3d"] = labels.edge3d(point_img, normal_img, surface, is_room, camera.focal)
    out["keypoint3d"] = labels.keypoint3d(normal_img)
    out["segment25d"] = _ids(labels.segment25d(surface, normal_img))
    out["edge2d"] = edge2d
    out["keypoint2d"] = keypoint2d
    out["segment2d"] = _ids(labels.segment2d(clean))
    out["segmentsemantic"] = semantic[:, None]
    out["class_object"] = class_object


def _ids(segments: torch.Tensor) -> torch.Tensor:
    """Ids (V, 1, R, R) for int16; ids past its range (only in huge, noisy images) share the last one."""
    return segments.clamp_max(np.iinfo(np.int16).max)[:, None]


# --------------------------------------------------------------------------------------------------
# A whole split
# --------------------------------------------------------------------------------------------------

def _chunks(n_scenes: int, chunk_scenes: int, workers: int) -> list[range]:
    """Consecutive scene ranges of at most ``chunk_scenes``; their number is a multiple of ``workers`` (when
    there are enough scenes), sizes as equal as possible, so that parallel workers finish together."""
    n = -(-n_scenes // chunk_scenes)
    n = min(n_scenes, -(-n // workers) * workers)
    bounds = [n_scenes * i // n for i in range(n + 1)]
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def render_workers(workers: int) -> int:
    """The worker processes to use: ``workers``, or for 0 the cores that other work does not keep busy
    now (decided once, before rendering; at least 1). Processes only pay off on free cores: on a shared
    machine a second worker competes with the other jobs and loses more than it gains."""
    if workers:
        return workers
    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - busy_cores())))


def busy_cores(samples: int = 10, loadavg: str = "/proc/loadavg") -> float:
    """Cores that other processes keep busy now: the fewest runnable tasks in ``/proc/loadavg`` less this
    one over ``samples`` looks 10 ms apart (a busy job is runnable at every look; this process's own
    threads, just started, at some). Where that file is missing, the 1-minute load average, which lags:
    it still counts a job that ended a minute ago (after the test suite, say, it is 0.5-1 on an idle
    2-core machine, which would halve the render's workers)."""
    try:
        counts = []
        for i in range(samples):
            if i:
                time.sleep(0.01)
            runnable = Path(loadavg).read_text().split()[3].split("/")[0]   # "1.20 0.90 0.70 2/311 4242"
            counts.append(max(0, int(runnable) - 1))
        return float(min(counts))
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]


_SHARED_MEMORY = "/dev/shm"     # a RAM-backed folder, where the system has one
_HANDOVER: list[str] = []       # this process's folder for the files workers write into, made on first use


def _handover_folder() -> str:
    """A private folder (in shared memory where there is one) for the split's dense arrays that workers
    write into; removed at exit, so a split abandoned half-way leaves nothing behind."""
    if not _HANDOVER:
        _HANDOVER.append(tempfile.mkdtemp(prefix="taskonomy-render-",
                                          dir=_SHARED_MEMORY if os.path.isdir(_SHARED_MEMORY) else None))
        atexit.register(shutil.rmtree, _HANDOVER[0], ignore_errors=True)
    return _HANDOVER[0]


Files = dict[str, tuple[str, np.dtype, tuple[int, ...]]]      # dense array -> (path, dtype, full shape)


def _shared_files(r: RenderParams, n_views: int) -> Files | None:
    """One file per dense array of a split (:func:`dense_layout`), for worker processes to write their
    chunks' rows into: a split's dense arrays are large (~35 MB per 256 views at 64x64), and handing them
    over through the pool's pipe, or even a file per chunk, cost the two processes several percent of the
    rendering in copies. The files are sized here and each worker reserves its own rows' pages before it
    writes them (:func:`_reserve`, in parallel). None where the folder has no room for them."""
    layout = {name: (torch.empty(0, dtype=dtype).numpy().dtype, (n_views,) + shape)
              for name, (dtype, shape) in dense_layout(r.resolution).items()}
    folder = _handover_folder()
    need = sum(int(np.prod(shape)) * dtype.itemsize for dtype, shape in layout.values())
    files: Files = {}
    try:
        room = os.statvfs(folder)
        if room.f_bavail * room.f_frsize < need:
            return None
        for name, (dtype, shape) in layout.items():
            fd, path = tempfile.mkstemp(dir=folder, prefix=f"{name}-")
            files[name] = (path, dtype, shape)
            try:
                os.ftruncate(fd, max(1, int(np.prod(shape)) * dtype.itemsize))
            finally:
                os.close(fd)
    except OSError:                                    # the pipe after all
        _remove(files)
        return None
    return files


def _reserve(files: Files, views: range) -> None:
    """Allocate the pages of rows ``views`` of every shared file before writing them: a page of a full
    shared-memory folder would kill the process that first touches it, where this raises an error."""
    for path, dtype, shape in files.values():
        row = int(np.prod(shape[1:])) * dtype.itemsize
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, views.start * row, max(1, len(views) * row))
        except OSError as e:
            raise TaskonomyError(f"render: no room in {os.path.dirname(path)} for the rendered views ({e})") from e
        finally:
            os.close(fd)


def _remove(files: Files) -> None:
    for path, _, _ in files.values():
        with contextlib.suppress(OSError):
            os.unlink(path)


def _map(files: Files) -> dict[str, np.ndarray]:
    return {name: np.memmap(path, dtype=dtype, mode="r+", shape=shape) for name, (path, dtype, shape) in files.items()}


def _rows(arrays: dict[str, np.ndarray], indices: range, per: int) -> dict[str, np.ndarray]:
    return {name: a[indices.start * per:indices.stop * per] for name, a in arrays.items()}


def _render_job(job: tuple[RenderParams, int, range, Files | None, Domain | None]) -> dict[str, np.ndarray]:
    """``render_chunk`` in a worker: the dense arrays into the split's shared files where there are some
    (the result then holds only the small per-view arrays), else all of them back through the pipe."""
    r, seed, indices, files, domain = job
    if files is None:
        return render_chunk(r, seed, indices, domain=domain)
    per = r.views_per_scene
    _reserve(files, range(indices.start * per, indices.stop * per))
    return render_chunk(r, seed, indices, into=_rows(_map(files), indices, per), domain=domain)


def _one_thread() -> None:
    torch.set_num_threads(1)


_POOLS: dict[int, multiprocessing.pool.Pool] = {}     # forked worker pools by size, kept for later splits


def _close_pools() -> None:
    """Stop the kept pools before interpreter shutdown (a pool left to the garbage collector then
    fails noisily in ``Pool.__del__``)."""
    while _POOLS:
        _POOLS.popitem()[1].terminate()


def worker_pool(workers: int) -> multiprocessing.pool.Pool | None:
    """``workers`` forked processes of one thread each, started on first use and kept (so later splits find
    them warm); None for one worker or where processes cannot be forked."""
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    if workers not in _POOLS:
        if not _POOLS:
            atexit.register(_close_pools)
        _POOLS[workers] = multiprocessing.get_context("fork").Pool(workers, _one_thread)
    return _POOLS[workers]


def render_split(r: RenderParams, split: str, n_scenes: int | None = None, progress: bool = False,
                 domain: Domain | None = None, scenes_of: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """All arrays of one split and its manifest metadata (see taskonomy.bank.write_split).

    The scenes are those of split ``scenes_of`` (its seed and, by default, its number of scenes; default:
    ``split`` itself), seen in ``domain`` where one is given and not off (else the bytes are exactly those
    of the source domain, down to the code path).

    Chunks render here, or in worker processes; a chunk's bytes depend only on its scenes, so where it
    runs does not matter. Either way the dense arrays are written in place, into the split's arrays
    (files in shared memory that the workers map), with no copy per chunk."""
    scenes_of = scenes_of or split
    n_scenes = getattr(r.scenes, scenes_of) if n_scenes is None else n_scenes
    seed = split_seed(r.seed, scenes_of)
    domain = None if domain is None or domain.off else domain
    per = r.views_per_scene
    n_views = n_scenes * per
    log.info("rendering %s: %d scenes x %d views at %dx%d (seed %d)%s", split, n_scenes, per, r.resolution,
             r.resolution, seed, f", {domain}" if domain is not None else "")
    workers = render_workers(r.workers)
    chunks = _chunks(n_scenes, r.chunk_scenes, workers)
    pool = worker_pool(min(workers, len(chunks)))
    files = _shared_files(r, n_views) if pool is not None else None
    try:
        if pool is None:
            arrays = {name: torch.empty((n_views,) + shape, dtype=dtype).numpy()
                      for name, (dtype, shape) in dense_layout(r.resolution).items()}
            results = (render_chunk(r, seed, indices, into=_rows(arrays, indices, per), domain=domain)
                       for indices in chunks)
        else:
            arrays = _map(files) if files is not None else {}
            results = pool.imap(_render_job, [(r, seed, indices, files, domain) for indices in chunks], chunksize=1)
        # the labels that need no rendering, while the workers render
        pairs = views.scene_pairs(n_scenes, per, lambda s: scene_rng(seed, s, PAIR_STREAM))
        permutations = views.jigsaw_permutations(r.jigsaw_permutations)
        for indices, out in zip(chunks, tqdm(results, total=len(chunks), desc=f"render {split}", unit="chunk",
                                             disable=not progress)):
            for name, value in out.items():
                if name not in arrays:
                    arrays[name] = np.empty((n_views,) + value.shape[1:], value.dtype)
                arrays[name][indices.start * per:indices.start * per + len(value)] = value
    finally:
        if files is not None:
            _remove(files)                              # the mappings keep the data until dropped

    pose = arrays["cam_to_world"].astype(np.float64)
    arrays.update(pairs)
    arrays["fix_pose"] = views.pair_poses(pose, pairs["fix_pose_index"])
    arrays["non_fixated_pose"] = views.pair_poses(pose, pairs["non_fixated_pose_index"])
    arrays["ego_motion"] = views.triplet_poses(pose, pairs["ego_motion_index"])
    arrays["jigsaw_permutations"] = permutations
    meta = {"seed": seed, "n_views": n_scenes * per, "n_scenes": n_scenes, "resolution": r.resolution,
            "views_per_scene": per, "fov_deg": r.fov_deg, "classes": list(CLASSES),
            "object_classes": list(OBJECT_CLASSES), "scene_types": [t.name for t in SCENE_TYPES],
            "encodings": {name: ENCODINGS[name] for name in arrays}}
    if domain is not None:
        meta["encodings"].update(TARGET_ENCODINGS)
    return arrays, meta


# Settings of ``render`` that cannot change a rendered split's bytes (tests/test_render.py; ``source`` and
# ``taskonomy`` choose and describe a bank read from real data instead): the manifests leave them out,
# so that changing one leaves data/bank's hash, and every later stage, as they were.
NOT_IN_BYTES = ("chunk_scenes", "workers", "sample_scenes", "source", "taskonomy")


def bank_params(r: RenderParams) -> dict:
    """The render params a bank's manifests record: those its bytes depend on."""
    return {k: v for k, v in as_dict(r).items() if k not in NOT_IN_BYTES}


def render_bank(r: RenderParams, out: str | Path, progress: bool = False) -> None:
    """Render every split into ``out`` (one atomic folder each), then the top-level manifest."""
    # decide the workers once, before our own work raises the load average
    run = dataclasses.replace(r, workers=render_workers(r.workers))
    for split in SPLITS:
        arrays, meta = render_split(run, split, progress=progress)
        path = bank.write_split(out, split, arrays, {**meta, "params": bank_params(r)})
        log.info("wrote %s (%d views)", path, meta["n_views"])
    bank.write_manifest(out, list(SPLITS), bank_params(r))


def render_target_bank(r: RenderParams, a: AdaptParams, out: str | Path, progress: bool = False) -> None:
    """Render the target domain's splits into ``out`` (docs/bank-format.md, "Target domain"): target_train,
    ``a.scenes.target_train`` new scenes, and target_test, the test split's scenes (item i of target_test
    is item i of test, seen in the target domain); the manifests' params also record the domain."""
    run = dataclasses.replace(r, workers=render_workers(r.workers))
    domain = Domain.from_params(a)
    params = {**bank_params(r), "domain": domain.describe()}
    sizes = {"target_train": a.scenes.target_train, "target_test": r.scenes.test}
    for split in TARGET_SPLITS:
        scenes_of = TARGET_SCENES_OF[split]
        arrays, meta = render_split(run, split, sizes[split], progress=progress, domain=domain, scenes_of=scenes_of)
        path = bank.write_split(out, split, arrays, {**meta, "scenes_of": scenes_of, "params": params})
        log.info("wrote %s (%d views, %s)", path, meta["n_views"], domain)
    bank.write_manifest(out, list(TARGET_SPLITS), params)
