"""A tiny task bank that follows docs/bank-format.md, for tests of the task networks.

Labels are simple functions of a blocky random image (so every task is learnable in a few steps) with
the exact array names, dtypes and shapes of the contract. ``fake_split`` returns an in-memory object
with the attributes of ``taskonomy.bank.Split`` (``arrays``, ``manifest``, ``n_views``, ``[name]``);
``write_fake_bank`` writes the same arrays in the on-disk layout (split folders with ``manifest.json``
written last, then the top-level manifest).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ["floor", "wall", "ceiling", "box", "ball"]
SCENE_TYPES = ["office", "kitchen", "bedroom"]
N_OBJECT_CLASSES = 4
PERMUTATIONS = 6
SPLIT_SEEDS = {"train": 11, "transfer": 12, "test": 13}


@dataclass
class FakeSplit:
    arrays: dict[str, np.ndarray]
    manifest: dict
    path: str

    @property
    def n_views(self) -> int:
        return int(self.manifest["n_views"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


def _grad(gray: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(gray, axis=(-2, -1))
    return np.hypot(gx, gy)


def fake_arrays(n_scenes: int, resolution: int, seed: int, views_per_scene: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, r = n_scenes * views_per_scene, resolution
    blocks = rng.integers(0, 4, size=(n, r // 4, r // 4))                       # (N, r/4, r/4) block classes
    palette = rng.uniform(0, 1, size=(n, 4, 3))
    ids = np.kron(blocks, np.ones((4, 4), dtype=np.int64))                       # (N, R, R)
    img = np.take_along_axis(palette, ids.reshape(n, -1)[..., None], axis=1).reshape(n, r, r, 3)
    img = img.transpose(0, 3, 1, 2)                                              # (N, 3, R, R)
    gray = img.mean(1, keepdims=True)                                            # (N, 1, R, R)
    depth = 1.0 + 3.0 * gray + rng.uniform(0, 0.5, size=(n, 1, 1, 1))
    normal = img - img.mean(1, keepdims=True) + np.array([0, 0, -1.0]).reshape(1, 3, 1, 1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    edges = _grad(gray)
    seg_ids = (blocks * 7 + np.arange(blocks.shape[1])[None, :, None] // 2) % 11
    seg = np.kron(seg_ids, np.ones((4, 4), dtype=np.int64))[:, None]
    f16 = np.float16
    means = img.mean((2, 3))                                                     # (N, 3)
    scene_id = np.repeat(np.arange(n_scenes), views_per_scene).astype(np.int32)
    cam = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    cam[:, :3, 3] = rng.normal(size=(n, 3))

    def pairs(first: list[int], second: list[int]) -> np.ndarray:
        return np.array([(s * views_per_scene + a, s * views_per_scene + b) for s in range(n_scenes)
                         for a, b in zip(first, second)], dtype=np.int64)

    fix_idx = pairs([0, 0, 1], [1, 2, 2])
    non_idx = pairs([0, 1, 2], [3, 3, 3])
    ego_idx = np.array([[s * views_per_scene + k for k in range(3)] for s in range(n_scenes)], dtype=np.int64)
    match_idx = np.concatenate([fix_idx, non_idx])

    def rel(idx: np.ndarray) -> np.ndarray:
        return np.concatenate([means[idx[:, 0]] - means[idx[:, 1]], means[idx[:, 0]] * means[idx[:, 1]]], 1)

    perms = np.array([np.arange(9)] + [rng.permutation(9) for _ in range(PERMUTATIONS - 1)], dtype=np.int64)
    obj = np.exp(3 * np.concatenate([means, means[:, :1]], 1)[:, :N_OBJECT_CLASSES])
    return {
        "rgb": np.clip(img * 255, 0, 255).astype(np.uint8),
        "mask": np.ones((n, 1, r, r), dtype=bool),
        "rgb2depth": depth.astype(f16),
        "rgb2mist": (depth * 1.1).astype(f16),
        "rgb2sfnorm": normal.astype(f16),
        "reshade": np.clip(-normal[:, 2:3], 0, 1).astype(f16),
        "curvature": np.concatenate([edges, -edges], 1).astype(f16),
        "edge3d": edges.astype(f16),
        "keypoint3d": (edges ** 2).astype(f16),
        "segment25d": seg.astype(np.int16),
        "edge2d": edges.astype(f16),
        "keypoint2d": _grad(edges).astype(f16),
        "segment2d": seg.astype(np.int16),
        "segmentsemantic": np.minimum(ids, len(CLASSES) - 1)[:, None].astype(np.uint8),
        "class_object": (obj / obj.sum(1, keepdims=True)).astype(np.float32),
        "class_scene": means.argmax(1).astype(np.int64),
        "room_layout": np.concatenate([means, means ** 2, means[:, :1], 1 - means], 1).astype(np.float32),
        "vanishing_point": np.concatenate([means, -means, means[:, ::-1]], 1).astype(np.float32),
        "jigsaw": rng.integers(0, PERMUTATIONS, size=n).astype(np.int64),
        "jigsaw_permutations": perms,
        "scene_id": scene_id,
        "cam_to_world": cam,
        "fix_pose_index": fix_idx,
        "fix_pose": rel(fix_idx).astype(np.float32),
        "non_fixated_pose_index": non_idx,
        "non_fixated_pose": rel(non_idx).astype(np.float32),
        "ego_motion_index": ego_idx,
        "ego_motion": np.concatenate([rel(ego_idx[:, [0, 1]]), rel(ego_idx[:, [0, 2]]), rel(ego_idx[:, [1, 2]])],
                                     1).astype(np.float32),
        "point_match_index": match_idx,
        "point_match": (means[match_idx[:, 0], 0] > means[match_idx[:, 1], 0]).astype(np.int64),
    }


def split_manifest(split: str, arrays: dict[str, np.ndarray], n_scenes: int, resolution: int) -> dict:
    return {"format": 1, "split": split, "seed": SPLIT_SEEDS[split], "n_views": int(arrays["rgb"].shape[0]),
            "n_scenes": n_scenes, "resolution": resolution, "classes": CLASSES, "scene_types": SCENE_TYPES,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype), "encoding": "fake"}
                       for k, v in arrays.items()},
            "params": {"resolution": resolution}}


def fake_split(split: str = "train", n_scenes: int = 8, resolution: int = 16) -> FakeSplit:
    arrays = fake_arrays(n_scenes, resolution, SPLIT_SEEDS[split])
    return FakeSplit(arrays, split_manifest(split, arrays, n_scenes, resolution), f"fake/{split}")


def write_fake_bank(root: Path, scenes: dict[str, int] | None = None, resolution: int = 16,
                    drop: tuple[str, ...] = ()) -> Path:
    """The fake bank on disk at ``root`` (arrays named in ``drop`` left out of every split)."""
    scenes = scenes or {"train": 8, "transfer": 4, "test": 4}
    root = Path(root)
    for split, n_scenes in scenes.items():
        arrays = {k: v for k, v in fake_arrays(n_scenes, resolution, SPLIT_SEEDS[split]).items() if k not in drop}
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in arrays.items():
            np.save(folder / f"{name}.npy", arr)
        (folder / "manifest.json").write_text(json.dumps(split_manifest(split, arrays, n_scenes, resolution)))
    (root / "manifest.json").write_text(json.dumps({"format": 1, "splits": list(scenes), "params": {}}))
    return root


