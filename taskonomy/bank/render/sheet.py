"""The sample sheets: for a few scenes, the input image and every task's label, as one PNG; and the same
scenes in the source and the target domain.

:func:`bank_sheet`, per scene two rows: the dense labels of fixated view 0, then the image-level and
pairwise labels (the fixated triplet with its relative poses, a non-fixated pair, a point-match pair, the
jigsaw tiles shuffled by the view's permutation, the object-class distribution, scene type, layout and
vanishing points). :func:`domain_sheet`, per scene one row: view 0 in the source domain, in the target
domain, and the labels both share.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torchvision.utils import make_grid

from taskonomy.bank import Split
from taskonomy.plotting import pyplot, save_figure

DENSE = ("rgb", "rgb2depth", "rgb2mist", "rgb2sfnorm", "reshade", "curvature", "edge3d", "keypoint3d",
         "segment25d", "edge2d", "keypoint2d", "segment2d", "segmentsemantic")


def _show(ax, name: str, value: np.ndarray) -> None:
    """Draw one dense label (C, R, R) in a way that reads: colour, normals as RGB, ids as a palette."""
    value = np.asarray(value, dtype=np.float32)
    if name == "rgb":
        ax.imshow(value.transpose(1, 2, 0) / 255)
    elif name == "rgb2sfnorm":
        ax.imshow((value.transpose(1, 2, 0) + 1) / 2)
    elif name.startswith("segment"):
        ax.imshow(value[0], cmap="tab20", interpolation="nearest")
    else:
        ax.imshow(value[0], cmap="viridis")
    ax.set_title(name if name != "curvature" else "curvature (k1)", fontsize=7)


def _pose(p: np.ndarray) -> str:
    return "rot " + " ".join(f"{x:+.2f}" for x in p[:3]) + "\nt " + " ".join(f"{x:+.2f}" for x in p[3:])


def _row_of(index: np.ndarray, a: int, b: int) -> int:
    return int(np.flatnonzero((index[:, 0] == a) & (index[:, 1] == b))[0])


def jigsaw_tiles(rgb: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """The image (3, R, R) cut into 3x3 tiles, placed in the order ``permutation``, with gaps; (3, H, W)."""
    image = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255)
    t = image.shape[-1] // 3
    tiles = image[:, :3 * t, :3 * t].reshape(3, 3, t, 3, t).permute(1, 3, 0, 2, 4).reshape(9, 3, t, t)
    return make_grid(tiles[torch.from_numpy(np.array(permutation))], nrow=3, padding=1, pad_value=1.0).numpy()


def bank_sheet(split: Split, scenes: int, path: str | Path) -> Path:
    """Write the sheet for the first ``scenes`` scenes of ``split`` to ``path``."""
    plt = pyplot()

    per = int(split.manifest["views_per_scene"])
    scene_types = split.manifest["scene_types"]
    object_classes = split.manifest["object_classes"]
    perms = np.asarray(split["jigsaw_permutations"])
    scenes = min(scenes, int(split.manifest["n_scenes"]))
    cols = len(DENSE)
    fig, axes = plt.subplots(2 * scenes, cols, figsize=(1.6 * cols, 3.6 * scenes), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for s in range(scenes):
        v0 = s * per
        top, bottom = axes[2 * s], axes[2 * s + 1]
        for ax, name in zip(top, DENSE):
            _show(ax, name, split[name][v0])
        top[0].set_ylabel(f"scene {s}")

        # the fixated triplet and its poses (fix_pose / ego_motion), a non-fixated pair, a point match
        fix_index, fix = np.asarray(split["fix_pose_index"]), np.asarray(split["fix_pose"])
        for k, v in enumerate((v0 + 1, v0 + 2)):
            _show(bottom[k], "rgb", split["rgb"][v])
            bottom[k].set_title(f"fix_pose 0->{k + 1}\n{_pose(fix[_row_of(fix_index, v0, v)])}", fontsize=5)
        free_index, free = np.asarray(split["non_fixated_pose_index"]), np.asarray(split["non_fixated_pose"])
        _show(bottom[2], "rgb", split["rgb"][v0 + 3])
        bottom[2].set_title(f"non_fixated_pose 0->3\n{_pose(free[_row_of(free_index, v0, v0 + 3)])}", fontsize=5)
        match_index, match = np.asarray(split["point_match_index"]), np.asarray(split["point_match"])
        negative = np.flatnonzero((match_index[:, 0] // per == s) & (match == 0))[0]
        a, b = match_index[negative]
        _show(bottom[3], "rgb", split["rgb"][a])
        _show(bottom[4], "rgb", split["rgb"][b])
        bottom[3].set_title(f"point_match ({a % per},{b % per})", fontsize=6)
        bottom[4].set_title(f"= {match[negative]}", fontsize=6)

        # jigsaw: the tiles of view 0 shuffled by its permutation
        jig = int(split["jigsaw"][v0])
        bottom[5].imshow(jigsaw_tiles(split["rgb"][v0], perms[jig]).transpose(1, 2, 0))
        bottom[5].set_title(f"jigsaw #{jig}", fontsize=6)

        # image-level labels
        dist = np.asarray(split["class_object"][v0])
        bottom[6].axis("on")
        bottom[6].barh(range(len(dist)), dist)
        bottom[6].set_yticks(range(len(dist)), object_classes, fontsize=5)
        bottom[6].tick_params(axis="x", labelsize=5)
        bottom[6].set_title("class_object", fontsize=6)
        layout = np.asarray(split["room_layout"][v0])
        vp = np.asarray(split["vanishing_point"][v0]).reshape(3, 3)
        text = (f"class_scene: {scene_types[int(split['class_scene'][v0])]}\n"
                f"room_layout:\n centre {np.array2string(layout[:3], precision=2)}\n"
                f" rotation {np.array2string(layout[3:7], precision=2)}\n"
                f" extents {np.array2string(layout[7:], precision=2)}\n"
                "vanishing_point:\n" + "\n".join(f" {ax} {np.array2string(row, precision=2)}"
                                                 for ax, row in zip("xyz", vp)))
        bottom[8].text(0, 0.5, text, fontsize=6, family="monospace", va="center")
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def views_sheet(split: Split, views: int, path: str | Path) -> Path:
    """Write, for the first ``views`` views of ``split``, a row of the image and every dense label the split
    has (a bank read from real data, whose views are not grouped in scenes of a fixed size)."""
    plt = pyplot()
    names = [name for name in DENSE if name in split]
    views = min(views, split.n_views)
    fig, axes = plt.subplots(views, len(names), figsize=(1.6 * len(names), 1.7 * views), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for v in range(views):
        for ax, name in zip(axes[v], names):
            _show(ax, name, split[name][v])
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


SHARED = ("rgb2depth", "segmentsemantic")       # labels of the domain sheet: the same in both domains


def domain_sheet(source: Mapping[str, np.ndarray], target: Mapping[str, np.ndarray], scenes: int, per: int,
                 title: str, path: str | Path) -> Path:
    """Write, for the first ``scenes`` scenes (``per`` views each) of a split and its target-domain twin,
    view 0's image in both domains and its :data:`SHARED` labels (drawn from the target's arrays), to
    ``path``. ``source`` and ``target`` are splits or arrays by name."""
    plt = pyplot()
    scenes = min(scenes, len(source["rgb"]) // per, len(target["rgb"]) // per)
    cols = 2 + len(SHARED)
    fig, axes = plt.subplots(scenes, cols, figsize=(1.8 * cols, 1.9 * scenes + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for s in range(scenes):
        v = s * per
        row = axes[s]
        _show(row[0], "rgb", source["rgb"][v])
        _show(row[1], "rgb", target["rgb"][v])
        for ax, name in zip(row[2:], SHARED):
            _show(ax, name, target[name][v])
        row[0].set_title("source rgb", fontsize=7)
        row[1].set_title("target rgb", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
