"""The renderer: determinism, and the invariants that make its labels trustworthy."""
from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pytest
import torch

from taskonomy.config import RenderParams, SplitSizes
from taskonomy.bank.render import SPLITS, render_split, split_seed
from taskonomy.bank.render.camera import FIXATED_VIEWS, GROUP_GAP, look_at
from taskonomy.bank.render.scene import CLASSES, FLOOR, OBJECT_CLASSES
from taskonomy.bank.render.segment import connected_components
from taskonomy.bank.render.split import ENCODINGS, Camera
from taskonomy.bank.render.views import pose_matrix, room_layout

PARAMS = RenderParams(resolution=24, scenes=SplitSizes(train=5, transfer=2, test=2), views_per_scene=9,
                      chunk_scenes=3, objects_min=2, objects_max=5)


@pytest.fixture(scope="module")
def bank():
    arrays, meta = render_split(PARAMS, "train")
    return arrays, meta


def _group(index, per=PARAMS.views_per_scene):
    """(scene, fixation group) of views ``index``, as one number."""
    return index // per * per + index % per // FIXATED_VIEWS


def test_every_array_is_named_and_shaped(bank):
    arrays, meta = bank
    n, r = meta["n_views"], PARAMS.resolution
    assert n == PARAMS.scenes.train * PARAMS.views_per_scene
    assert set(arrays) == set(ENCODINGS)
    for name, channels in dict(rgb=3, mask=1, rgb2depth=1, rgb2mist=1, rgb2sfnorm=3, reshade=1, curvature=2,
                               edge3d=1, keypoint3d=1, segment25d=1, edge2d=1, keypoint2d=1, segment2d=1,
                               segmentsemantic=1).items():
        assert arrays[name].shape == (n, channels, r, r), name
    assert arrays["class_object"].shape == (n, len(OBJECT_CLASSES))
    for name, width in (("room_layout", 10), ("vanishing_point", 9)):
        assert arrays[name].shape == (n, width) and arrays[name].dtype == np.float32
    for name, value in arrays.items():
        if value.dtype.kind == "f":
            assert np.isfinite(value).all(), name


def test_same_params_same_bytes_and_splits_differ(tiny_render):
    first, _ = render_split(dataclasses.replace(tiny_render, workers=1), "train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)        # the bytes depend on neither threads, chunks, workers
    try:
        again, _ = render_split(dataclasses.replace(tiny_render, chunk_scenes=3, workers=2), "train")
    finally:
        torch.set_num_threads(threads)
    for name in first:
        assert first[name].tobytes() == again[name].tobytes(), name
    other, _ = render_split(tiny_render, "test")
    assert first["rgb"][: len(other["rgb"])].tobytes() != other["rgb"].tobytes()
    assert len({split_seed(0, s) for s in SPLITS}) == len(SPLITS)


def test_distance_is_at_least_depth(bank):
    arrays, _ = bank
    depth = arrays["rgb2depth"].astype(np.float32)
    mist = arrays["rgb2mist"].astype(np.float32)
    assert (depth > 0).all()
    assert (mist >= depth * (1 - 2e-3)).all()          # float16 rounding
    assert arrays["mask"].all()                          # closed rooms: every ray hits


def test_normals_are_unit_and_face_the_camera(bank):
    arrays, _ = bank
    normal = arrays["rgb2sfnorm"].astype(np.float32)
    assert np.allclose(np.linalg.norm(normal, axis=1), 1, atol=3e-3)
    rays = Camera(PARAMS.resolution, PARAMS.fov_deg).rays().numpy()                      # (R * R, 3)
    rays = rays.T.reshape(1, 3, PARAMS.resolution, PARAMS.resolution)
    assert ((normal * rays).sum(1) < 1e-3).all()


def test_reshade_is_normal_dot_view(bank):
    arrays, _ = bank
    rays = Camera(PARAMS.resolution, PARAMS.fov_deg).rays().numpy().T.reshape(1, 3, PARAMS.resolution, -1)
    expected = np.clip(-(arrays["rgb2sfnorm"].astype(np.float32) * rays).sum(1, keepdims=True), 0, 1)
    assert np.allclose(arrays["reshade"].astype(np.float32), expected, atol=5e-3)


def test_floor_has_one_normal_per_view_the_world_up_axis(bank):
    arrays, _ = bank
    seen = 0
    for v in range(len(arrays["rgb"])):
        floor = arrays["segmentsemantic"][v, 0] == FLOOR
        if floor.sum() < 3:
            continue
        seen += 1
        normals = arrays["rgb2sfnorm"][v][:, floor].astype(np.float32)                  # (3, pixels)
        up_in_camera = arrays["vanishing_point"][v, 3:6]                                  # world y axis
        assert np.allclose(normals, up_in_camera[:, None], atol=3e-3)
        assert np.allclose(arrays["curvature"][v][:, floor], 0)
    assert seen > 0


def test_semantic_classes_cover_the_image(bank):
    arrays, meta = bank
    semantic = arrays["segmentsemantic"]
    assert semantic.max() < len(CLASSES) and meta["classes"] == list(CLASSES)
    objects = semantic >= len(CLASSES) - len(OBJECT_CLASSES)
    assert objects.any() and (~objects).any()


def test_class_object_is_the_visible_area_distribution(bank):
    arrays, _ = bank
    dist = arrays["class_object"]
    assert np.allclose(dist.sum(1), 1, atol=1e-6) and (dist >= 0).all()
    first_object = len(CLASSES) - len(OBJECT_CLASSES)
    for v in range(len(dist)):
        counts = np.bincount(arrays["segmentsemantic"][v].ravel(), minlength=len(CLASSES))[first_object:]
        if counts.sum():
            assert np.allclose(dist[v], counts / counts.sum(), atol=1e-6)


def test_each_group_sees_its_point_at_the_image_centre(bank):
    arrays, _ = bank
    camera = Camera(PARAMS.resolution, PARAMS.fov_deg)
    near = 0
    views = np.arange(len(arrays["rgb"]))
    for v in views:
        pose = arrays["cam_to_world"][v].astype(np.float64)
        point = arrays["fixation_point"][v].astype(np.float64)
        assert np.array_equal(point, arrays["fixation_point"][v - v % FIXATED_VIEWS])     # one point per group
        x, y, z = pose[:3, :3].T @ (point - pose[:3, 3])
        assert z > 0
        centre = PARAMS.resolution / 2
        assert abs(camera.focal * x / z + centre - centre) < 1e-3 and abs(camera.focal * y / z) < 1e-3
        # unoccluded: one of the four central pixels sees (about) the point's distance
        c = PARAMS.resolution // 2
        mist = arrays["rgb2mist"][v, 0, c - 1:c + 1, c - 1:c + 1].astype(np.float32)
        near += np.abs(mist - np.linalg.norm(point - pose[:3, 3])).min() < 0.1 * z
    assert near >= 0.8 * len(views)


def test_groups_fixate_points_a_gap_apart(bank):
    arrays, _ = bank
    per, groups = PARAMS.views_per_scene, PARAMS.views_per_scene // FIXATED_VIEWS
    point = arrays["fixation_point"][::FIXATED_VIEWS].astype(np.float64).reshape(-1, groups, 3)   # (S, G, 3)
    gap = np.linalg.norm(point[:, 1:] - point[:, :1], axis=-1)                  # further points to the first
    assert ((gap >= GROUP_GAP[0] - 1e-3) & (gap <= GROUP_GAP[1] + 1e-3)).mean() >= 0.8
    assert (gap > 0.2).all()                                    # cross-group pairs centre on different points
    # the cameras of a scene are distinct: no group collapsed onto the anchor fallback
    centre = arrays["cam_to_world"][:, :3, 3].reshape(-1, per, 3)
    assert all(len(np.unique(c, axis=0)) == per for c in centre)


def test_relative_poses_match_cameras_compose_and_invert(bank):
    arrays, _ = bank
    pose = arrays["cam_to_world"].astype(np.float64)
    for name in ("fix_pose", "non_fixated_pose"):
        index, value = arrays[f"{name}_index"], arrays[name].astype(np.float64)
        assert len(index) == len(value) > 0
        assert (index[:, 0] // PARAMS.views_per_scene == index[:, 1] // PARAMS.views_per_scene).all()
        same_group = _group(index[:, 0]) == _group(index[:, 1])
        assert same_group.all() if name == "fix_pose" else not same_group.any()
        expected = np.linalg.inv(pose[index[:, 1]]) @ pose[index[:, 0]]                 # a -> b coordinates
        assert np.allclose(pose_matrix(value), expected, atol=1e-4)
    index, value = arrays["fix_pose_index"], arrays["fix_pose"].astype(np.float64)
    row = {tuple(p): pose_matrix(v) for p, v in zip(index, value)}
    for (a, b), m in row.items():
        assert np.allclose(row[b, a] @ m, np.eye(4), atol=1e-4)                            # inverse
    # ego_motion: pose(0, 2) = pose(1, 2) o pose(0, 1) for every triplet
    triplets, ego = arrays["ego_motion_index"], pose_matrix(arrays["ego_motion"].astype(np.float64).reshape(-1, 3, 6))
    assert np.allclose(ego[:, 2] @ ego[:, 0], ego[:, 1], atol=1e-4)
    assert (_group(triplets) == _group(triplets[:, :1])).all()
    for t, e in zip(triplets, ego):
        assert np.allclose(e[0], row[t[0], t[1]], atol=1e-5)


def test_pair_and_triplet_counts(bank):
    arrays, _ = bank
    S, G, k = PARAMS.scenes.train, PARAMS.views_per_scene // FIXATED_VIEWS, FIXATED_VIEWS
    assert len(arrays["fix_pose_index"]) == S * G * k * (k - 1)                 # ordered pairs within a group
    assert len(arrays["non_fixated_pose_index"]) == S * G * (G - 1) * k * k     # ordered pairs across groups
    assert len(arrays["ego_motion_index"]) == S * G * k * (k - 1) * (k - 2)     # ordered triplets in a group
    assert len(arrays["point_match_index"]) == 2 * len(arrays["fix_pose_index"])
    for name in ("fix_pose_index", "non_fixated_pose_index", "ego_motion_index", "point_match_index"):
        assert len(np.unique(arrays[name], axis=0)) == len(arrays[name]), name


def test_point_match_is_balanced_and_true_within_a_group(bank):
    arrays, _ = bank
    index, label = arrays["point_match_index"], arrays["point_match"]
    assert label.sum() * 2 == len(label)
    same_group = _group(index[:, 0]) == _group(index[:, 1])
    assert np.array_equal(label == 1, same_group)
    # and the label is what the geometry says: the views centre on one point, or on points apart
    point = arrays["fixation_point"].astype(np.float64)
    apart = np.linalg.norm(point[index[:, 0]] - point[index[:, 1]], axis=1)
    assert (apart[label == 1] == 0).all() and (apart[label == 0] > 0.2).all()


def test_jigsaw_indexes_one_fixed_permutation_set(bank, tiny_render):
    arrays, _ = bank
    perms = arrays["jigsaw_permutations"]
    assert perms.shape == (PARAMS.jigsaw_permutations, 9)
    assert np.array_equal(perms[0], np.arange(9))
    assert (np.sort(perms, axis=1) == np.arange(9)).all()
    assert len(np.unique(perms, axis=0)) == len(perms)
    assert ((0 <= arrays["jigsaw"]) & (arrays["jigsaw"] < len(perms))).all()
    other, _ = render_split(dataclasses.replace(PARAMS, seed=7), "test", n_scenes=1)
    assert np.array_equal(other["jigsaw_permutations"], perms)


def test_layout_and_vanishing_points(bank):
    arrays, _ = bank
    axes = arrays["vanishing_point"].reshape(-1, 3, 3).astype(np.float64)
    assert np.allclose(axes @ axes.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    layout = arrays["room_layout"]
    assert layout.shape[1] == 10 and (layout[:, 7:] > 2).all()
    assert np.allclose(layout[:, 5] ** 2 + layout[:, 6] ** 2, 1, atol=1e-5)          # cos, sin of 2 yaw
    assert (arrays["class_scene"] == np.repeat(arrays["class_scene"][::PARAMS.views_per_scene],
                                               PARAMS.views_per_scene)).all()


def test_room_layout_is_the_same_for_the_room_turned_by_180_degrees():
    """A box room with one wall material looks the same turned about its vertical axis by 180 degrees,
    so its layout label must not change: the yaw enters only as its doubled angle."""
    room = np.array([[5.0, 2.8, 4.0]])
    pose = np.eye(4)[None].repeat(2, 0)
    pose[:, :3, :3] = look_at(np.array([[1.0, 1.5, -0.5]]), np.array([[-2.0, 0.5, 1.5]]), np.array([0.1]))
    pose[:, :3, 3] = [1.0, 1.5, -0.5]
    turn = np.diag([-1.0, 1.0, -1.0, 1.0])                    # 180 degrees about the vertical through (0, 0)
    pose[1] = turn @ pose[1]
    layout = room_layout(pose, room.repeat(2, 0))
    assert np.allclose(layout[0], layout[1])
    forward = pose[0, :3, 2]
    assert np.isclose(layout[0, 3], np.arcsin(forward[1]))                              # pitch
    yaw = np.arctan2(forward[0], forward[2])
    assert np.allclose(layout[0, 5:7], [np.cos(2 * yaw), np.sin(2 * yaw)])
    assert np.allclose(layout[0, 7:], room[0])
    level = np.eye(4)[None]
    level[0, :3, :3] = look_at(np.zeros((1, 3)), np.array([[1.0, 0.0, 0.0]]), np.zeros(1))      # along +x, level
    assert np.allclose(room_layout(level, room)[0, 3:7], [0, 0, -1, 0], atol=1e-12)


def test_segments_are_numbered_per_image(bank):
    arrays, _ = bank
    for name in ("segment2d", "segment25d"):
        for v in range(len(arrays[name])):
            ids = np.unique(arrays[name][v])
            assert np.array_equal(ids, np.arange(len(ids))), name


def test_connected_components_split_equal_keys_that_do_not_touch():
    key = torch.tensor([[[0, 0, 1, 1],
                         [1, 0, 1, 0],
                         [1, 1, 1, 0],
                         [0, 0, 0, 0]]])
    expected = torch.tensor([[[0, 0, 1, 1],
                              [1, 0, 1, 2],
                              [1, 1, 1, 2],
                              [2, 2, 2, 2]]], dtype=torch.int32)
    assert torch.equal(connected_components(key), expected)


def test_dense_labels_are_in_range(bank):
    arrays, _ = bank
    for name in ("reshade", "edge3d"):
        x = arrays[name].astype(np.float32)
        assert (x >= 0).all() and (x <= 1).all(), name
    for name in ("keypoint3d", "edge2d", "keypoint2d"):
        assert (arrays[name] >= 0).all() and arrays[name].max() > 0, name
    k = arrays["curvature"].astype(np.float32)
    assert (k[:, 0] >= k[:, 1]).all() and k.max() > 0
    assert arrays["edge3d"].max() > 0.3


@pytest.fixture(scope="module")
def compiled_and_reference():
    """The compiled casts and albedo of a few scenes' views (taskonomy.bank.render.kernels) next to the torch
    forms they replace, on the same inputs: (primary, shadow, albedo) lists of (compiled, reference, ...)."""
    from taskonomy.bank.render import raycast, shading, split
    r = dataclasses.replace(PARAMS, resolution=32, objects_max=8)
    primary, shadow, colour = [], [], []
    view_hits, shadowed, albedo = split.view_hits, shading.shadowed, split.albedo

    def spy_hits(prims, scene, rot, origin, dirs, focal, resolution):
        hits = view_hits(prims, scene, rot, origin, dirs, focal, resolution)
        primary.append((hits, raycast.nearest_hit(prims, scene, origin, dirs), prims, scene))
        return hits

    def spy_shadowed(prims, scene, origin, dirs, t_max, active):
        blocked = shadowed(prims, scene, origin, dirs, t_max, active)
        shadow.append((blocked.clone(), raycast.occluded(prims, scene, origin, dirs, t_max, active), active.clone()))
        return blocked

    def spy_albedo(lighting, material, point):
        out = albedo(lighting, material, point)
        colour.append((out, _torch_albedo(lighting, material, point)))
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(split, "view_hits", spy_hits)
        patch.setattr(shading, "shadowed", spy_shadowed)
        patch.setattr(split, "albedo", spy_albedo)
        split.render_chunk(r, 3, range(6))
    return primary, shadow, colour


def _torch_albedo(lighting, material, point):
    """shading.albedo as vectorised torch (the renderer's earlier form), the reference for the compiled loop."""
    from taskonomy.bank.render.scene import CHECKER, SOLID, STRIPES
    table = lighting.table.index_select(1, material)
    pattern = lighting.pattern.index_select(0, material)
    waves, a, b = table[:12], table[12:15], table[15:18]
    wave = [waves[9 + i] + waves[3 * i] * point[0] + waves[3 * i + 1] * point[1] + waves[3 * i + 2] * point[2]
            for i in range(3)]
    cell = [w.floor() for w in wave]
    mix = torch.where(pattern == CHECKER, (cell[0] + cell[1] + cell[2]).remainder(2),
                      torch.where(pattern == STRIPES, cell[0].remainder(2),
                                  (wave[0].sin() + wave[1].sin() + wave[2].sin()).mul(0.35).add(0.5).clamp(0, 1)))
    return a + torch.where(pattern == SOLID, 0.0, mix) * (b - a)


def test_compiled_primary_hits_match_the_torch_cast(compiled_and_reference):
    """Image-space boxes miss no hit, and the compiled loop finds what the per-ray cone-culled torch cast
    finds: the same surface (but at exact grazing ties), the same distances and normals (the torch cast
    rounds in float32: ~1e-4 m, ~1e-2 at grazing angles)."""
    primary, _, _ = compiled_and_reference
    pixels = differ = 0
    for hits, ref, _, _ in primary:
        same = hits.surface == ref.surface
        pixels, differ = pixels + same.numel(), differ + int((~same).sum())
        assert torch.equal(torch.isfinite(hits.t), torch.isfinite(ref.t))
        assert (hits.t - ref.t)[same].abs().max() < 1e-3
        assert (hits.normal - ref.normal)[:, same].abs().max() < 0.05
        assert (hits.texture_point - ref.texture_point)[:, same].abs().max() < 1e-3
        close = torch.isclose(hits.curvature, ref.curvature, rtol=0.02, atol=0.01).all(0)
        assert close[same].float().mean() > 0.999
    assert differ / pixels < 2e-4


def test_compiled_hits_on_spheres_have_curvature_one_over_radius(compiled_and_reference):
    """Both principal curvatures of a sphere are 1 / radius: the compiled loop computes the surface in
    float64 and gets them to float32 precision (the torch cast was off by up to 0.5%)."""
    from taskonomy.bank.render.raycast import ROOM_FACES
    from taskonomy.bank.render.scene import ELLIPSOID
    primary, _, _ = compiled_and_reference
    checked = 0
    for hits, _, prims, scene in primary:
        on_object = hits.surface >= ROOM_FACES
        flat = (scene[:, None] * prims.per_scene + hits.surface - ROOM_FACES)[on_object]
        scale = prims.scale[flat]
        sphere = (prims.kind[flat] == ELLIPSOID) & (scale.max(1).values - scale.min(1).values < 1e-7)
        for k in hits.curvature[:, on_object]:
            assert torch.allclose(k[sphere], 1.0 / scale[sphere, 0], rtol=1e-5)
        checked += int(sphere.sum())
    assert checked > 0


def test_compiled_shadow_rays_match_the_torch_cast(compiled_and_reference):
    """The shadow rays' per-run culling loses no blocker: the compiled loop blocks the rays the torch cast
    blocks (but at exact grazing ties), and only active rays."""
    _, shadow, _ = compiled_and_reference
    rays = differ = blocked = 0
    for compiled, reference, active in shadow:
        assert not compiled[~active].any()
        rays, differ = rays + int(active.sum()), differ + int((compiled != reference).sum())
        blocked += int(reference.sum())
    assert blocked > 0.01 * rays and differ < 1e-4 * rays


def test_compiled_albedo_matches_torch(compiled_and_reference):
    _, _, colour = compiled_and_reference
    for compiled, reference in colour:
        assert torch.allclose(compiled, reference, atol=1e-5)
        assert (compiled >= 0).all() and (compiled <= 1).all()


def test_camera_casts_match_the_torch_casts():
    """The compiled casts that place the cameras (a few rays per origin) find what the torch casts find:
    the distance to the first surface, and whether a segment is blocked (but at exact grazing ties)."""
    from taskonomy.bank.render import raycast
    from taskonomy.bank.render.camera import sample_rig
    from taskonomy.bank.render.scene import sample_scene
    from taskonomy.bank.render.split import scene_rng
    scenes, rigs = [], []
    for i in range(24):
        rng = scene_rng(11, i)
        scenes.append(sample_scene(rng, 2, 8, 2))
        rigs.append(sample_rig(rng, scenes[-1], 6, 24))
    prims = raycast.pack(scenes)
    origin = torch.tensor(np.array([r.candidates.reshape(-1, 3) for r in rigs]), dtype=torch.float32).reshape(-1, 3)
    scene = torch.arange(len(scenes)).repeat_interleave(len(origin) // len(scenes))
    dirs = torch.randn(3, len(origin), 4, generator=torch.Generator().manual_seed(0))
    dirs /= dirs.norm(dim=0, keepdim=True)
    t = raycast.first_hit_t(prims, scene, origin, dirs)
    first = raycast.nearest_hit(prims, scene, origin, dirs)
    assert torch.isfinite(t).all() and torch.allclose(t, first.t, rtol=1e-4, atol=1e-4)
    # one ray per origin, to a point before or beyond its first surface: blocked exactly when a primitive
    # (not the room, which blocks nothing) lies before that point
    fraction = (torch.rand(t.shape, generator=torch.Generator().manual_seed(1)) * 2).reshape(-1, 1)
    t_max = t.reshape(-1, 1) * fraction
    single, starts = scene.repeat_interleave(4), origin.repeat_interleave(4, dim=0)
    ray, active = dirs.reshape(3, -1, 1), torch.ones(t_max.shape, dtype=torch.bool)
    blocked = raycast.shadowed(prims, single, starts, ray, t_max, active, run=1)
    assert torch.equal(blocked, raycast.occluded(prims, single, starts, ray, t_max, active))
    on_object = (first.surface >= raycast.ROOM_FACES).reshape(-1, 1)
    assert 0 < int(blocked.sum()) < blocked.numel()
    assert torch.equal(blocked[fraction > 1.001], on_object[fraction > 1.001])
    assert not blocked[fraction < 0.999].any()


def _torch_edge3d_mask(point, normal, surface, is_room, focal):
    """labels.edge3d's edge pixels as vectorised torch (the renderer's earlier form), the reference for
    the compiled loop: (V, H, W) bool."""
    from taskonomy.bank.render.labels import OCCLUSION_GAP
    from taskonomy.bank.render.vector import planar_dot
    V, _, H, W = point.shape
    points, normals = point.reshape(V, 3, H * W), normal.reshape(V, 3, H * W)
    edge = torch.zeros(V, H * W, dtype=torch.bool)
    dot = lambda x, y: planar_dot(x.unbind(-1), y.unbind(-1))                     # noqa: E731
    for dim, step in ((2, 1), (1, W)):                                           # right, lower neighbour
        n = surface.shape[dim] - 1
        pair = surface.narrow(dim, 1, n) != surface.narrow(dim, 0, n)
        pair &= ~(is_room.narrow(dim, 1, n) & is_room.narrow(dim, 0, n))
        v, i, j = pair.nonzero(as_tuple=True)
        b = i * W + j
        a = b + step
        p_a, p_b = points[v, :, a], points[v, :, b]
        apart = p_a - p_b
        off = torch.maximum(dot(normals[v, :, a], apart).abs(), dot(normals[v, :, b], apart).abs())
        cut = off > OCCLUSION_GAP * (torch.minimum(p_a[:, 2], p_b[:, 2]) / focal)
        edge[v[cut], a[cut]] = True
        edge[v[cut], b[cut]] = True
    return edge.reshape(V, H, W)


def test_compiled_occlusion_edges_match_torch():
    """The compiled occlusion-edge pass marks the pixels the vectorised torch form marks, on rendered
    geometry (camera-frame points and normals of a few scenes' views)."""
    from taskonomy.bank.render import kernels, labels, split
    r = dataclasses.replace(PARAMS, resolution=32, objects_max=8)
    seen = []

    def spy(point, normal, surface, is_room, focal):
        seen.append((point.clone(), normal.clone(), surface.clone(), is_room.clone(), focal))
        return edge3d(point, normal, surface, is_room, focal)
    edge3d = labels.edge3d
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(labels, "edge3d", spy)
        split.render_chunk(r, 4, range(6))
    marked = 0
    for point, normal, surface, is_room, focal in seen:
        edge = torch.zeros(surface.shape, dtype=torch.bool)
        kernels.occlusion_edges(point.numpy(), normal.numpy(), surface.numpy(), is_room.numpy(),
                                labels.OCCLUSION_GAP, focal, edge.numpy())
        assert torch.equal(edge, _torch_edge3d_mask(point, normal, surface, is_room, focal))
        marked += int(edge.sum())
    assert marked > 0


def test_compiled_segment25d_keys_match_torch():
    """segment25d's compiled keys (surface, dominant normal axis with the first of ties, its sign) number
    the regions of its torch form (the renderer's earlier form), ties and zero components included."""
    from taskonomy.bank.render import labels
    gen = torch.Generator().manual_seed(0)
    normal = torch.randint(-2, 3, (6, 3, 16, 16), generator=gen).float()
    surface = torch.randint(0, 9, (6, 16, 16), generator=gen)
    x, y, z = normal.abs().unbind(1)
    is_x = (x >= y) & (x >= z)
    is_y = ~is_x & (y >= z)
    axis = torch.where(is_x, 0.0, torch.where(is_y, 1.0, 2.0))
    positive = torch.where(is_x, normal[:, 0], torch.where(is_y, normal[:, 1], normal[:, 2])) > 0
    key = surface.float().mul_(6).add_(axis, alpha=2).add_(positive)
    assert torch.equal(labels.segment25d(surface, normal), connected_components(key))


def test_compiled_harris_matches_its_torch_form():
    """The Sobel stencils give the bytes of the same sums as torch slices of the replicate-padded image, and
    the fused Harris passes (derivatives and structure tensor in one, the response in one) the float32
    bytes of the stencils plus torch's elementwise response, on 1- and 3-channel images."""
    from taskonomy.bank.render import kernels, labels
    gen = torch.Generator().manual_seed(0)
    for channels in (1, 3):
        x = torch.rand(4, channels, 24, 24, generator=gen)
        x[:, :, 8:16, 8:16] = 0.5                                                  # flat areas: response 0
        gx, gy = labels._sobel_8(x)
        q = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")            # the stencils as slices
        at = lambda di, dj: q[:, :, 1 + di:25 + di, 1 + dj:25 + dj]              # noqa: E731
        assert torch.equal(gx, (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1)))
        assert torch.equal(gy, (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1)))
        m = torch.empty(4, 3, 24, 24)
        kernels.structure_8(gx.numpy(), gy.numpy(), m.numpy())
        xx, yy, xy = labels._blur_sum(m).unbind(1)
        reference = (xx * yy - xy * xy - labels.HARRIS_K * (xx + yy) ** 2).clamp_min_(0).mul_(2.0 ** -20)[:, None]
        assert torch.equal(labels.harris(x), reference) and torch.equal(labels._harris_8(gx, gy), reference)
        assert (reference == 0).any() and (reference > 0).any()


def test_workers_write_into_shared_files_and_leave_none_behind(tiny_render):
    """Workers write the dense arrays into the split's files in shared memory; once the split is back, the
    files are gone (the mappings hold the data)."""
    from taskonomy.bank.render import split
    again, _ = render_split(dataclasses.replace(tiny_render, workers=2), "train")
    assert isinstance(again["rgb"], np.memmap) and set(split.dense_layout(tiny_render.resolution)) <= set(again)
    assert os.listdir(split._handover_folder()) == []
    first, _ = render_split(dataclasses.replace(tiny_render, workers=1), "train")
    for name in first:
        assert first[name].tobytes() == again[name].tobytes(), name


def test_workers_fall_back_to_the_pipe_without_room_for_files(tiny_render, monkeypatch, tmp_path):
    """Where no file can be made for the workers to write into, the chunks come back through the pipe."""
    from taskonomy.bank.render import split
    first, _ = render_split(dataclasses.replace(tiny_render, workers=1), "train")
    monkeypatch.setattr(split, "_handover_folder", lambda: str(tmp_path / "missing"))
    again, _ = render_split(dataclasses.replace(tiny_render, workers=2), "train")
    assert not isinstance(again["rgb"], np.memmap)
    for name in first:
        assert first[name].tobytes() == again[name].tobytes(), name


def test_a_label_of_the_wrong_shape_is_refused():
    from taskonomy.bank.render.split import _Rows, dense_layout
    rows = _Rows({}, dense_layout(8), total=4, start=0)
    rows["rgb"] = torch.zeros(2, 3, 8, 8, dtype=torch.float32)            # converted to uint8 as it is copied
    assert rows.arrays["rgb"].dtype == np.uint8 and rows.arrays["rgb"].shape == (4, 3, 8, 8)
    with pytest.raises(ValueError, match="edge2d"):
        rows["edge2d"] = torch.zeros(2, 3, 8, 8)


@pytest.mark.parametrize("size", [None, 1, 5])
def test_draw_makes_the_same_draws_as_rng_choice(size):
    from taskonomy.bank.render.scene import draw
    for seed in range(200):
        p = np.random.default_rng(10_000 + seed).random(1 + seed % 8)
        p /= p.sum()
        ours, numpy = np.random.default_rng(seed), np.random.default_rng(seed)
        assert np.array_equal(draw(ours, p, size), numpy.choice(len(p), size=size, p=p))
        assert ours.random() == numpy.random()                           # the stream is where choice left it


# Every library's AVX-512 dispatch turned off, so that one AVX-512 machine renders as an AVX2 one would
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR", "NUMBA_CPU_NAME": "haswell"}
_DIGEST = """
import hashlib, json, sys, torch
from taskonomy.config import RenderParams, from_dict
from taskonomy.bank.render import render_split
arrays, _ = render_split(from_dict(RenderParams, json.loads(sys.argv[1]), "render"), "test")
digest = hashlib.sha256(b"".join(arrays[name].tobytes() for name in sorted(arrays))).hexdigest()
print(torch.backends.cpu.get_cpu_capability(), digest)
"""


def test_bank_bytes_do_not_depend_on_the_instruction_set():
    """The same bank with torch, MKL, oneDNN, NumPy and numba held to AVX2 as with what the machine has.
    On an AVX-512 machine this is the real comparison (before the renderer kept to exact operations,
    MKL's exp, log and sqrt moved about one pixel and a few edge2d values in each 100 scenes); on an AVX2
    machine both runs are the same run. The default's resolution, 100 test scenes."""
    import subprocess
    import sys
    params = json.dumps({"resolution": 32, "scenes": {"train": 1, "transfer": 1, "test": 100}, "workers": 1})
    here, avx2 = (subprocess.run([sys.executable, "-c", _DIGEST, params], capture_output=True, text=True,
                                 check=True, env={**os.environ, **extra}).stdout.split()
                  for extra in ({}, AVX2_ONLY))
    assert avx2[0] == "AVX2" and here[0] == torch.backends.cpu.get_cpu_capability()
    assert here[1] == avx2[1]


def test_settings_that_cannot_change_the_bytes_leave_the_manifests_alone(tiny_render, tmp_path):
    """chunk_scenes, workers and sample_scenes are not recorded: changing one leaves every manifest, so
    data/bank's hash and every later stage, as it was."""
    from taskonomy.bank.render import render_bank
    render_bank(tiny_render, tmp_path / "a")
    render_bank(dataclasses.replace(tiny_render, chunk_scenes=1, workers=1, sample_scenes=2), tmp_path / "b")
    manifests = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("manifest.json"))
    assert len(manifests) == 4
    for name in manifests:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert "resolution" in json.loads((tmp_path / "a" / "manifest.json").read_text())["params"]


def test_encode_is_the_rounded_gamma_curve_and_no_last_bit_of_pow_moves_it():
    """encode(x) = round(255 * clip(x, 0, 1) ** (1 / 2.2)), but at a float32 step itself (the step is the
    exact boundary rounded to float32); and a pow one ulp off either way gives the same steps."""
    from taskonomy.bank.render.shading import ENCODE_STEPS, GAMMA, encode
    for k, step in enumerate(ENCODE_STEPS.tolist(), start=1):
        exact = ((k - 0.5) / 255) ** GAMMA
        assert np.float32(np.nextafter(exact, 0.0)) == np.float32(exact) == np.float32(np.nextafter(exact, 1.0))
        assert step == np.float32(exact)
    steps = ENCODE_STEPS.numpy()
    x = np.concatenate([np.random.default_rng(0).uniform(-0.2, 1.2, 200_000).astype(np.float32),
                        steps, np.nextafter(steps, np.float32(0)), np.nextafter(steps, np.float32(1)),
                        np.float32([0.0, 1.0, 2.0, -1.0, np.inf])])
    code = encode(torch.from_numpy(x)).numpy()
    rounded = np.round(255 * np.clip(x.astype(np.float64), 0.0, 1.0) ** (1 / GAMMA))
    assert code.dtype == np.uint8 and ((code == rounded) | np.isin(x, steps)).all()
    assert (code != rounded).sum() < len(steps) and (code[-5:] == [0, 255, 255, 0, 255]).all()


def test_scene_sampling_shortcuts_give_numpys_values():
    """The scalar forms that sample materials give NumPy's floats and draws from the same stream.

    Colours are libm's pow on Python floats, exactly (the bank's bytes rest on it, and it is the same
    function on every x86-64 machine). NumPy's vectorised power is a kernel per instruction set: with
    AVX-512 it differs from libm in the last bit for 40 of these 300 seeds, so it is the reference
    within one ulp."""
    from taskonomy.bank.render.scene import _hsv, draw, draw_one
    for seed in range(300):
        h, s, v = np.random.default_rng(seed).random(3)
        k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
        base = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)                  # (3,) exact arithmetic
        assert _hsv(h, s, v).tolist() == [math.pow(b, 2.2) for b in base.tolist()]
        np.testing.assert_array_max_ulp(_hsv(h, s, v), base ** 2.2, maxulp=1)
        weights = tuple(np.random.default_rng(10_000 + seed).random(1 + seed % 6).tolist())
        ours, numpy = np.random.default_rng(seed), np.random.default_rng(seed)
        w = np.asarray(weights)
        assert draw_one(ours, weights) == int(draw(numpy, w / w.sum()))
        assert ours.random() == numpy.random()


def test_workers_reserve_their_rows_or_say_there_is_no_room(tiny_render, monkeypatch):
    """The shared files are sized up front and each worker reserves its own rows; a full folder is one
    clear error (not a crash on the first write), and too little room up front means the pipe."""
    import errno

    from taskonomy.errors import TaskonomyError
    from taskonomy.bank.render import split
    files = split._shared_files(tiny_render, 12)
    try:
        split._reserve(files, range(3, 9))
        for path, dtype, shape in files.values():
            assert os.path.getsize(path) == int(np.prod(shape)) * dtype.itemsize

        def full(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(split.os, "posix_fallocate", full)
        with pytest.raises(TaskonomyError, match="no room in .* for the rendered views"):
            split._reserve(files, range(0, 3))
    finally:
        split._remove(files)
    monkeypatch.setattr(split.os, "statvfs", lambda path: os.statvfs_result((4096,) * 2 + (0,) * 8))
    assert split._shared_files(tiny_render, 12) is None


def test_busy_cores_counts_other_runnable_tasks_now(tmp_path):
    from taskonomy.bank.render.split import busy_cores, render_workers

    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.93 0.80 0.70 1/311 4242\n")            # a lagging average, only this task runs
    assert busy_cores(samples=3, loadavg=str(loadavg)) == 0.0
    loadavg.write_text("0.10 0.10 0.10 3/311 4242\n")            # two others run now
    assert busy_cores(samples=1, loadavg=str(loadavg)) == 2.0
    assert busy_cores(loadavg=str(tmp_path / "missing")) == pytest.approx(os.getloadavg()[0])
    assert render_workers(3) == 3 and render_workers(0) >= 1
