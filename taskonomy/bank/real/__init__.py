"""Real Taskonomy data read into the bank format, so that every later stage runs unchanged (docs/real-data.md).

:func:`read_taskonomy_bank` lists the download (:mod:`.layout`), assigns its buildings to the bank's
splits (an official split CSV: train -> train, val -> transfer, test -> test; or the params' lists),
checks that every domain read has every view of every building used, decodes the views in worker
processes (:mod:`.decode`) and builds the pairwise labels from the views that share a point, as the
original did: fix_pose and ego_motion from the views of one point, non_fixated_pose from a view and a
view of another point that it sees (point_info's ``nonfixated_points_in_view``), point_match from
both. The whole bank is written into a temporary sibling folder and renamed into place at the end, so a
bad file found half-way leaves an earlier bank as it was.
"""
from __future__ import annotations

import csv
import itertools
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from taskonomy import bank
from taskonomy.bank.real.decode import IGNORE, SEMANTIC_CLASSES, decode_view
from taskonomy.bank.real.layout import (DOMAIN_OF_ARRAY, PATTERNS, Download, View, check_complete, detect_layout,
                                        domain_folder, list_download, present_domains)
from taskonomy.bank.render.split import render_workers, split_seed, worker_pool
from taskonomy.bank.render.views import jigsaw_permutations, pair_poses, triplet_poses
from taskonomy.config import RenderParams, as_dict
from taskonomy.errors import DataError

log = logging.getLogger("taskonomy.bank.real")

SPLITS = ("train", "transfer", "test")
CSV_COLUMN = {"train": "train", "transfer": "val", "test": "test"}
POSE_ARRAYS = ("cam_to_world", "fixation_point", "room_layout", "vanishing_point")

ENCODINGS = {
    "rgb": "Taskonomy rgb, resized, sRGB 0..255",
    "mask": "valid geometry: depth_zbuffer < 64500 (or mask_valid), at least half of the pixels covered",
    "rgb2depth": "depth_zbuffer / 512, m (holes: the image's geometric-mean depth, masked)",
    "rgb2mist": "depth_euclidean / 512, m (holes: the image's geometric-mean depth, masked)",
    "rgb2sfnorm": "normal png / 127.5 - 1, unit, camera frame (x right, y down, z forward)",
    "reshade": "reshading / 255, [0, 1]",
    "curvature": "principal_curvature channels 1-2, (v - 127) / 127 (the release's units)",
    "edge3d": "edge_occlusion / 65535", "keypoint3d": "keypoints3d / 65535",
    "segment25d": "segment_unsup25d ids", "edge2d": "edge_texture / 65535", "keypoint2d": "keypoints2d / 65535",
    "segment2d": "segment_unsup2d ids",
    "segmentsemantic": f"class id, manifest classes; {IGNORE} = uncertain (no loss)",
    "class_object": "softmax of the class_object logits", "class_scene": "most likely class_scene (Places) class",
    "room_layout": "point_info box centre in the camera frame (3), camera pitch, roll, cos and sin of 2 yaw (4), "
                   "box extents (3)",
    "vanishing_point": "point_info vanishing_points_gaussian_sphere x, y, z in the camera frame (sign-free)",
    "jigsaw": "index into jigsaw_permutations", "jigsaw_permutations": "fixed permutation set, row 0 identity",
    "scene_id": "building index within the split", "point_id": "point number within its building",
    "cam_to_world": "camera pose, camera frame (x right, y down, z forward) -> world (z up)",
    "fixation_point": "point_info point_location: the point the view fixates",
    "fix_pose_index": "view pairs (a, b) of one point", "ego_motion_index": "view triplets of one point",
    "non_fixated_pose_index": "view pairs (a, b) of two points, b's point visible in a",
    "fix_pose": "pose of b w.r.t. a: sxyz angles of R_b^T R_a, R_b^T (c_a - c_b)",
    "non_fixated_pose": "pose of b w.r.t. a: sxyz angles of R_b^T R_a, R_b^T (c_a - c_b)",
    "ego_motion": "poses of pairs (0, 1), (0, 2), (1, 2) of the triplet",
    "point_match_index": "view pairs", "point_match": "1 iff both views fixate the same point",
}


def split_buildings(r: RenderParams, download: Download) -> dict[str, list[str]]:
    """Each bank split's buildings: the params' lists where given, else the split CSV's columns. A building
    that is not downloaded is left out (logged); a split left with none is a DataError."""
    t = r.taskonomy
    lists = {split: list(getattr(t.buildings, split)) for split in SPLITS}
    if t.split_file:
        from_csv = read_split_csv(t.split_file)
        lists = {split: lists[split] or from_csv[split] for split in SPLITS}
    have = set(download.buildings)
    chosen = {}
    for split in SPLITS:
        if not lists[split]:
            raise DataError(f"render.taskonomy: no buildings for the {split} split (give split_file, an official "
                            f"split CSV, or buildings.{split})")
        missing = [b for b in lists[split] if b not in have]
        if missing:
            log.info("%s split: %d of %d listed buildings are not in %s (e.g. %s); using the rest", split,
                     len(missing), len(lists[split]), download.root, missing[0])
        chosen[split] = [b for b in lists[split] if b in have]
        if not chosen[split]:
            raise DataError(f"{download.root}: none of the {split} split's buildings is there (listed: "
                            f"{', '.join(lists[split][:5])}{', ...' if len(lists[split]) > 5 else ''}; found: "
                            f"{', '.join(download.buildings[:5])})")
    seen: dict[str, str] = {}
    for split, names in chosen.items():
        for name in names:
            if name in seen:
                raise DataError(f"render.taskonomy: building {name} is in both the {seen[name]} and the {split} split")
            seen[name] = split
    return chosen


def read_split_csv(path: str | Path) -> dict[str, list[str]]:
    """An official split file (``id,train,val,test``, a row per building, 1 marks its split) by bank split."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise DataError(f"{path}: cannot read the split file ({err.strerror}) (render.taskonomy.split_file)") from None
    columns = {"id", "train", "val", "test"}
    if not rows or not columns <= set(rows[0]):
        raise DataError(f"{path}: not a split CSV (needs the columns id, train, val, test)")
    out: dict[str, list[str]] = {split: [] for split in SPLITS}
    for row in rows:
        for split, column in CSV_COLUMN.items():
            if str(row[column]).strip() in ("1", "1.0", "True", "true"):
                out[split].append(row["id"].strip())
    return out


def choose_points(views: list[tuple[str, View]], cap: int, seed: int) -> list[tuple[str, View]]:
    """At most ``cap`` points (every view of each kept), drawn with ``seed``; all of them for 0."""
    points = sorted({(b, v[0]) for b, v in views})
    if cap and cap < len(points):
        keep = {points[i] for i in np.random.default_rng(seed).choice(len(points), cap, replace=False)}
        views = [(b, v) for b, v in views if (b, v[0]) in keep]
    return views


def _decode(job: tuple[dict[str, Path], int]) -> dict[str, Any]:
    files, size = job
    return decode_view(files, size)


def decode_views(download: Download, views: list[tuple[str, View]], size: int, workers: int,
                 progress: bool = False) -> list[dict[str, Any]]:
    """Every view decoded, in order; ``workers`` processes of one thread each (the renderer's kept pool,
    :func:`~taskonomy.bank.render.split.worker_pool`; 1: in this process)."""
    jobs = [({d: download.files[d][b][v] for d in download.domains}, size) for b, v in views]
    pool = worker_pool(workers) if len(jobs) > 1 else None
    out = []
    for i, decoded in enumerate(pool.imap(_decode, jobs, chunksize=16) if pool else map(_decode, jobs)):
        out.append(decoded)
        if progress and (i + 1) % 1000 == 0:
            log.info("decoded %d / %d views", i + 1, len(jobs))
    return out


def pairs(views: list[tuple[str, View]], visible: list[list[int]], cap: int, seed: int) -> dict[str, np.ndarray]:
    """The pairwise index arrays over ``views`` (bank order), point by point: fix_pose every ordered pair of
    views of one point; ego_motion the ordered triplets of one point; non_fixated_pose ordered pairs (a, b)
    of one building whose b fixates a point that a sees (any other point of the building where point_info
    lists none); point_match the fixated pairs (1) and as many non-fixated ones (0). At most ``cap`` of each
    kind but fix_pose per point, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (b, (point, _)) in enumerate(views):
        groups.setdefault((b, point), []).append(i)
    by_building: dict[str, list[tuple[int, list[int]]]] = {}
    for (b, point), members in groups.items():
        by_building.setdefault(b, []).append((point, members))

    def capped(items: list, n: int) -> list:
        if len(items) <= n:
            return items
        return [items[i] for i in sorted(rng.choice(len(items), n, replace=False))]

    fixed, triplets, free, negatives = [], [], [], []
    for (b, point), members in groups.items():
        fixed += list(itertools.permutations(members, 2))
        triplets += capped(list(itertools.permutations(members, 3)), cap)
        others = [(q, m) for q, m in by_building[b] if q != point]
        candidates = []
        for a in members:
            seen = set(visible[a])
            near = [m for q, m in others if q in seen] or ([m for _, m in others] if not visible[a] else [])
            candidates += [(a, c) for m in near for c in m]
        chosen = capped(candidates, cap)
        free += chosen
        negatives += capped(candidates, min(cap, len(members) * (len(members) - 1)))   # as many as positives
    arr = lambda x, k: np.array(x, dtype=np.int64).reshape(-1, k)          # noqa: E731
    match = arr(fixed, 2), arr(negatives, 2)
    return dict(fix_pose_index=arr(fixed, 2), ego_motion_index=arr(triplets, 3), non_fixated_pose_index=arr(free, 2),
                point_match_index=np.concatenate(match), point_match=np.concatenate(
                    [np.ones(len(match[0]), np.int64), np.zeros(len(match[1]), np.int64)]))


def build_split(r: RenderParams, download: Download, split: str, buildings: list[str], workers: int,
                progress: bool = False) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One split's arrays and manifest fields."""
    t = r.taskonomy
    seed = split_seed(r.seed, split)
    views = [(b, v) for b in buildings for v in download.files["rgb"][b]]
    views = choose_points(views, getattr(t.max_points, split), seed)
    if not views:
        raise DataError(f"{download.root}: the {split} split has no views")
    log.info("%s: decoding %d views of %d buildings (%s)", split, len(views), len(buildings), ", ".join(download.domains))
    decoded = decode_views(download, views, r.resolution, workers, progress)
    arrays: dict[str, np.ndarray] = {}
    # every class file of a split has the same number of classes (the first that differs is named)
    for domain, length in (("class_object", lambda d: d["class_object"].size),
                           ("class_scene", lambda d: d["class_scene_count"])):
        if domain in download.domains:
            first = length(decoded[0])
            for (b, v), d in zip(views, decoded):
                if length(d) != first:
                    raise DataError(f"{download.files[domain][b][v]}: {length(d)} classes, but "
                                    f"{download.files[domain][views[0][0]][views[0][1]]} has {first}")
    names = [k for k in decoded[0] if k not in ("camera", "class_scene_count")]
    for name in names:
        arrays[name] = np.stack([d[name] for d in decoded])
    scene_counts = {d["class_scene_count"] for d in decoded if "class_scene_count" in d}
    arrays["scene_id"] = np.array([buildings.index(b) for b, _ in views], dtype=np.int32)
    arrays["point_id"] = np.array([v[0] for _, v in views], dtype=np.int64)
    perms = jigsaw_permutations(r.jigsaw_permutations)
    arrays["jigsaw_permutations"] = perms
    arrays["jigsaw"] = np.random.default_rng([seed, 1]).integers(len(perms), size=len(views)).astype(np.int64)
    fov = None
    if "point_info" in download.domains:
        visible = [d["camera"]["visible"] for d in decoded]
        index = pairs(views, visible, t.pairs_per_point, seed)
        pose = arrays["cam_to_world"].astype(np.float64)
        arrays.update(index)
        arrays["fix_pose"] = pair_poses(pose, index["fix_pose_index"])
        arrays["non_fixated_pose"] = pair_poses(pose, index["non_fixated_pose_index"])
        arrays["ego_motion"] = triplet_poses(pose, index["ego_motion_index"])
        fov = float(np.degrees(np.median([d["camera"]["fov"] for d in decoded])))
    meta = {"split": split, "seed": seed, "n_views": len(views), "n_scenes": len(buildings),
            "resolution": r.resolution, "views_per_scene": None, "fov_deg": fov, "buildings": buildings,
            "source": "taskonomy", "encodings": {k: ENCODINGS.get(k, "") for k in arrays}}
    if "segmentsemantic" in arrays:
        meta["classes"] = list(SEMANTIC_CLASSES)
        meta["ignore_index"] = IGNORE
    if "class_object" in arrays:
        meta["object_classes"] = [f"imagenet_{i}" for i in range(arrays["class_object"].shape[1])]
    if scene_counts:
        meta["scene_types"] = [f"places_{i}" for i in range(scene_counts.pop())]
    return arrays, meta


def real_params(r: RenderParams) -> dict[str, Any]:
    """The params a real bank's bytes depend on (its manifests record them)."""
    t = as_dict(r.taskonomy)
    return {"source": "taskonomy", "taskonomy": t, "seed": r.seed, "resolution": r.resolution,
            "jigsaw_permutations": r.jigsaw_permutations}


def tasks_served(domains: list[str]) -> list[str]:
    """The bank arrays (task labels) that ``domains`` provide; the RGB-only tasks are always served."""
    return [a for a, d in DOMAIN_OF_ARRAY.items() if d in domains]


def check_tasks_present(r: RenderParams, tasks: list[str]) -> None:
    """Every listed task's domain is in the download, or a DataError naming the folder looked for. Folder
    names only, no file listing: ``taskonomy check-params`` (the pipeline's first stage) runs it too."""
    from taskonomy.tasks import get_task
    t = r.taskonomy
    layout = detect_layout(t.root, t.layout)
    found, buildings = present_domains(t.root, layout)
    if not buildings:
        raise DataError(f"{t.root}: no rgb folder of any building ({PATTERNS[layout].replace('<domain>', 'rgb')})")
    read = [d for d in found if not t.domains or d in t.domains or d == "rgb"]
    for name in tasks:
        task = get_task(name)
        domain = DOMAIN_OF_ARRAY.get(task.label or "rgb", "rgb")
        if domain not in read:
            example = domain_folder(Path(t.root), layout, domain, buildings[0])
            skipped = " (not in render.taskonomy.domains)" if domain in found else ""
            raise DataError(f"{example}: missing{skipped}: task {name} needs the {domain} domain (found: "
                            f"{', '.join(read)}); remove {name} from the task list or download {domain}")


def read_taskonomy_bank(r: RenderParams, out: str | Path, tasks: list[str], progress: bool = False) -> None:
    """Read the download that ``r.taskonomy`` names into a bank at ``out`` (atomically, as a whole)."""
    check_tasks_present(r, tasks)
    download = list_download(r.taskonomy.root, r.taskonomy.layout, r.taskonomy.domains or None)
    log.info("%s: %s layout, %d buildings, domains %s; serves %s", download.root, download.layout,
             len(download.buildings), ", ".join(download.domains), ", ".join(tasks_served(download.domains)))
    buildings = split_buildings(r, download)
    check_complete(download, [b for names in buildings.values() for b in names])
    workers = render_workers(r.workers)
    out = Path(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split in SPLITS:
            arrays, meta = build_split(r, download, split, buildings[split], workers, progress)
            path = bank.write_split(tmp, split, arrays, {**meta, "params": real_params(r)})
            log.info("wrote %s (%d views)", path, meta["n_views"])
        bank.write_manifest(tmp, list(SPLITS), real_params(r))
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
