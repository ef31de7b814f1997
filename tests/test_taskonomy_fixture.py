"""Checks that tests/taskonomy_fixture.py writes the real Taskonomy on-disk format (reference doc section 6)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from taskonomy_fixture import (DOMAINS, FIELD_OF_VIEW_RADS, euler_sxyz_to_matrix, obliqueness_angle, point_pitch,
                               vanishing_points, write_taskonomy_fixture)

SIXTEEN_BIT = ("depth_zbuffer", "depth_euclidean", "edge_texture", "edge_occlusion", "keypoints2d", "keypoints3d")
SINGLE_CHANNEL_8BIT = ("segment_unsup2d", "segment_unsup25d", "segment_semantic", "mask_valid")
RGB_8BIT = ("rgb", "normal", "principal_curvature", "reshading")

# omnidata_annotator/assets/taskonomy/point_202_view_5_domain_point_info.json (EPFL-VILAB/omnidata), less its
# long nonfixated_points_in_view list
REAL_POINT_INFO = {
    "vanishing_points_gaussian_sphere": {"x": [0.13107919091388934, -0.05924003526327522, 0.989600355664531],
                                         "y": [0.9913618450591504, 0.0033366408789566784, -0.13111277202684024],
                                         "z": [0.004465184237795439, 0.9982381905385361, 0.0591656748467535]},
    "nonfixated_points_in_view": [0, 1, 2, 1027, 5],
    "point_pitch": -0.04108433326217131,
    "camera_rotation_from_original_to_final": [-0.029569515958428383, -0.06881355494260788, -2.6360020637512207],
    "camera_location": [-6.191483974456787, 4.649560928344727, 1.414849042892456],
    "camera_rotation_original": [1.5845003128051758, 0.01266331784427166, 0.9350636005401611],
    "view_id": 5,
    "point_location": [1.3095685243606567, 3.6557424068450928, 0.9663798213005066],
    "camera_distance": 7.579880283037506,
    "bounding_box_ranges": {"x": [-0.416909422720634, 6.691318439720847],
                            "y": [-6.191483974456787, 1.5025687484376702],
                            "z": [-0.03157793154430988, 2.986764926138477]},
    "obliqueness_angle": 1.27849280834198,
    "resolution": 512,
    "point_uuid": "202",
    "point_normal": [-0.1649179458618164, 0.983929455280304, -0.06844611465930939],
    "camera_rotation_final": [1.5115954875946045, -0.004465199075639248, -1.702255129814148],
    "vanishing_points_image": {"x": [305.57393363980884, 278.4044835529295],
                               "y": [433.7618583811084, 255.401704346047],
                               "z": [256.87915152201356, 59.456570254025905]},
    "camera_uuid": "be1883a10d632e0f806c4e4275e59081",
    "field_of_view_rads": 1.180512021910271,
    "room": "9be1cd563f04d329bc30a6918cfb1205",
}


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return write_taskonomy_fixture(tmp_path_factory.mktemp("taskonomy"))


def _read(path) -> tuple[str, np.ndarray]:
    with Image.open(path) as image:
        return image.mode, np.array(image)


def _is_plus_minus(v, candidates, atol=1e-9) -> bool:
    return any(np.allclose(v, s * c, atol=atol) for c in candidates for s in (1, -1))


# ----------------------------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("layout, pattern", [
    ("omnidata", "{domain}/taskonomy/{building}/{name}"),
    ("flat", "{domain}/{building}/{name}"),
    ("legacy", "{building}/{domain}/{name}"),
])
def test_layouts_put_files_where_stated(tmp_path, layout, pattern):
    buildings = ("allensville", "cosmos")
    info = write_taskonomy_fixture(tmp_path, layout=layout, buildings=buildings, points=2, views=2, size=16)
    assert info["layout"] == layout and info["domains"] == list(DOMAINS)
    tokens = {"segment_semantic": "segmentsemantic", "class_scene": "class_places"}
    extensions = {"class_object": "npy", "class_scene": "npy", "point_info": "json"}
    expected = {tmp_path / "train_val_test_fixture.csv"}
    for building in buildings:
        for domain in DOMAINS:
            for p in range(2):
                for v in range(2):
                    name = f"point_{p}_view_{v}_domain_{tokens.get(domain, domain)}.{extensions.get(domain, 'png')}"
                    path = tmp_path / pattern.format(domain=domain, building=building, name=name)
                    expected.add(path)
                    assert info["files"][(building, p, v)][domain] == path
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert written == expected
    assert (tmp_path / pattern.format(domain="segment_semantic", building="cosmos",
                                      name="point_1_view_0_domain_segmentsemantic.png")).is_file()


def test_domain_subset_and_bad_arguments(tmp_path):
    info = write_taskonomy_fixture(tmp_path / "a", buildings=("darden",), points=1, views=2, size=16,
                                   domains=("rgb", "point_info"))
    written = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert written == ["point_info/taskonomy/darden/point_0_view_0_domain_point_info.json",
                       "point_info/taskonomy/darden/point_0_view_1_domain_point_info.json",
                       "rgb/taskonomy/darden/point_0_view_0_domain_rgb.png",
                       "rgb/taskonomy/darden/point_0_view_1_domain_rgb.png",
                       "train_val_test_fixture.csv"]
    assert info["splits"] == {"train": ["darden"], "val": [], "test": []}
    with pytest.raises(ValueError):
        write_taskonomy_fixture(tmp_path / "b", layout="nested")
    with pytest.raises(ValueError):
        write_taskonomy_fixture(tmp_path / "c", domains=("normals",))


def test_deterministic_from_seed(tmp_path):
    kwargs = dict(buildings=("beechwood",), points=1, views=2, size=16, domains=("rgb", "depth_zbuffer", "point_info"))
    a = write_taskonomy_fixture(tmp_path / "a", seed=3, **kwargs)
    b = write_taskonomy_fixture(tmp_path / "b", seed=3, **kwargs)
    c = write_taskonomy_fixture(tmp_path / "c", seed=4, **kwargs)
    for domain in kwargs["domains"]:
        path_a, path_b = a["files"][("beechwood", 0, 1)][domain], b["files"][("beechwood", 0, 1)][domain]
        assert path_a.read_bytes() == path_b.read_bytes()
    assert a["point_info"] == b["point_info"] != c["point_info"]


def test_split_csv(fixture):
    text = fixture["split_csv"].read_text()
    assert fixture["split_csv"].name == "train_val_test_fixture.csv"
    assert text.splitlines() == ["id,train,val,test", "allensville,1,0,0", "beechwood,1,0,0", "cosmos,0,1,0",
                                 "darden,0,0,1"]
    assert fixture["splits"] == {"train": ["allensville", "beechwood"], "val": ["cosmos"], "test": ["darden"]}


# ----------------------------------------------------------------------------------------------- encodings

def test_image_modes_and_values(fixture):
    size = fixture["size"]
    for key, files in fixture["files"].items():
        encoded = fixture["encoded"][key]
        for domain in SIXTEEN_BIT:
            mode, array = _read(files[domain])
            assert mode in ("I;16", "I"), (domain, mode)
            assert array.shape == (size, size)
            np.testing.assert_array_equal(array.astype(np.int64), encoded[domain].astype(np.int64))
        for domain in SINGLE_CHANNEL_8BIT:
            mode, array = _read(files[domain])
            assert mode == "L" and array.dtype == np.uint8 and array.shape == (size, size), domain
            np.testing.assert_array_equal(array, encoded[domain])
        for domain in RGB_8BIT:
            mode, array = _read(files[domain])
            assert mode == "RGB" and array.shape == (size, size, 3), domain
            np.testing.assert_array_equal(array, encoded[domain])
        _, reshading = _read(files["reshading"])
        assert (reshading[..., 0] == reshading[..., 1]).all() and (reshading[..., 0] == reshading[..., 2]).all()
        logits = np.load(files["class_object"])
        assert logits.dtype == np.float32 and logits.shape == (1000,) and (logits < 0).any()
        places = np.load(files["class_scene"])
        assert places.dtype == np.float32 and places.shape == (365,)
        assert (places >= 0).all() and abs(float(places.sum()) - 1) < 1e-5


def test_sparse_maps_are_mostly_small(fixture):
    for encoded in fixture["encoded"].values():
        for domain in ("edge_texture", "edge_occlusion", "keypoints2d", "keypoints3d"):
            values = encoded[domain]
            assert values.dtype == np.uint16 and np.median(values) < 1000, domain
    assert max(int(e["keypoints3d"].max()) for e in fixture["encoded"].values()) > 10000
    assert max(int(e["edge_occlusion"].max()) for e in fixture["encoded"].values()) > 0


def test_invalid_pixels_agree_across_domains(fixture):
    for key, encoded in fixture["encoded"].items():
        valid = fixture["truth"][key]["valid"]
        assert 0 < (~valid).sum() < 0.05 * valid.size
        assert ((encoded["depth_zbuffer"] == 65535) == ~valid).all()
        assert ((encoded["depth_euclidean"] == 65535) == ~valid).all()
        assert ((encoded["mask_valid"] == 255) == valid).all() and ((encoded["mask_valid"] == 0) == ~valid).all()
        assert (encoded["normal"][~valid] == 128).all()
        assert (encoded["principal_curvature"][~valid] == 0).all()
        assert (encoded["segment_semantic"][~valid] == 0).all()


def test_depth_geometry(fixture):
    size, f = fixture["size"], fixture["intrinsics"]["focal_px"]
    assert f == pytest.approx(size / 2 / math.tan(FIELD_OF_VIEW_RADS / 2))
    centres = (np.arange(size) + 0.5 - size / 2) / f
    ray_norm = np.sqrt(1 + centres[None, :] ** 2 + centres[:, None] ** 2)
    for key, files in fixture["files"].items():
        _, z = _read(files["depth_zbuffer"])
        _, e = _read(files["depth_euclidean"])
        valid = fixture["truth"][key]["valid"]
        z, e = z.astype(np.int64), e.astype(np.int64)
        assert (e[valid] >= z[valid]).all()
        np.testing.assert_allclose(e[valid] / 512, (z / 512 * ray_norm)[valid], atol=2 / 512)
        np.testing.assert_array_equal(fixture["truth"][key]["depth_zbuffer_m"], z / 512)
        assert 0.3 < (z[valid] / 512).min() and (z[valid] / 512).max() < 20
        # the fixated point is at the image centre, camera_distance away along the optical axis
        centre = z[size // 2 - 1:size // 2 + 1, size // 2 - 1:size // 2 + 1] / 512
        assert centre.mean() == pytest.approx(fixture["point_info"][key]["camera_distance"], rel=0.03)


def test_normals_face_the_camera(fixture):
    size, f = fixture["size"], fixture["intrinsics"]["focal_px"]
    centres = (np.arange(size) + 0.5 - size / 2) / f
    rays = np.stack(np.broadcast_arrays(centres[None, :], centres[:, None], 1.0), axis=-1)
    for key, files in fixture["files"].items():
        _, v = _read(files["normal"])
        valid = fixture["truth"][key]["valid"]
        n = v.astype(np.float64) / 127.5 - 1
        assert np.allclose(np.linalg.norm(n[valid], axis=-1), 1, atol=0.02)
        assert ((n * rays).sum(-1)[valid] < 0).all()  # seen from the front
        assert (v[size // 2, size // 2, 2] < 128)  # z forward: the fixated surface faces the camera


def test_semantic_labels(fixture):
    seen = set()
    for encoded in fixture["encoded"].values():
        labels = encoded["segment_semantic"]
        assert labels.max() <= 17 and (labels == 0).any() and (labels == 1).any()
        seen |= set(np.unique(labels).tolist())
    assert seen & set(range(2, 18))


# ----------------------------------------------------------------------------------------------- point_info

def _check_point_info_relations(info, atol):
    R = euler_sxyz_to_matrix(info["camera_rotation_final"])
    c, p = np.array(info["camera_location"]), np.array(info["point_location"])
    # the fixated point is on the optical axis of a Blender camera (looks down -z)
    np.testing.assert_allclose(R.T @ (p - c) / np.linalg.norm(p - c), [0, 0, -1], atol=atol)
    assert info["camera_distance"] == pytest.approx(np.linalg.norm(p - c), abs=1e-6)
    # vanishing points: the world axes in the Blender camera frame, up to sign (and, from the real code's
    # 90-degree world rotation about z, possibly with x and y swapped); z is always R^T e_z
    vps = {k: np.array(v) for k, v in info["vanishing_points_gaussian_sphere"].items()}
    assert _is_plus_minus(vps["x"], [R.T[:, 0], R.T[:, 1]], atol)
    assert _is_plus_minus(vps["y"], [R.T[:, 0], R.T[:, 1]], atol)
    assert abs(vps["x"] @ vps["y"]) < atol
    np.testing.assert_allclose(vps["z"], R.T[:, 2], atol=atol)
    image_vps, sphere_vps = vanishing_points(info["camera_rotation_final"], info["field_of_view_rads"],
                                             info["resolution"])
    for axis in "xyz":
        np.testing.assert_allclose(sphere_vps[axis], info["vanishing_points_gaussian_sphere"][axis], atol=1e-12)
        np.testing.assert_allclose(image_vps[axis], info["vanishing_points_image"][axis], atol=1e-6)
    # the final rotation is the original one turned by camera_rotation_from_original_to_final
    R_original = euler_sxyz_to_matrix(info["camera_rotation_original"])
    D = euler_sxyz_to_matrix(info["camera_rotation_from_original_to_final"])
    np.testing.assert_allclose(D @ R_original, R, atol=atol)
    assert point_pitch(c, info["camera_rotation_original"], p) == pytest.approx(info["point_pitch"], abs=atol)
    assert obliqueness_angle(c, p, info["point_normal"]) == pytest.approx(info["obliqueness_angle"], abs=atol)
    # bounding_box_ranges swaps the world x and y ranges
    box = info["bounding_box_ranges"]
    for world, key in ((c, "camera"), (p, "point")):
        assert box["y"][0] - atol <= world[0] <= box["y"][1] + atol, key
        assert box["x"][0] - atol <= world[1] <= box["x"][1] + atol, key
        assert box["z"][0] - atol <= world[2] <= box["z"][1] + atol, key


def test_real_sample_satisfies_the_relations():
    _check_point_info_relations(REAL_POINT_INFO, atol=1e-6)
    box, c = REAL_POINT_INFO["bounding_box_ranges"], REAL_POINT_INFO["camera_location"]
    assert not box["x"][0] <= c[0] <= box["x"][1]  # so the box's "x" is not the world x


def test_fixture_point_info(fixture):
    size = fixture["size"]
    for (building, point, view), info in fixture["point_info"].items():
        path = fixture["files"][(building, point, view)]["point_info"]
        on_disk = json.loads(path.read_text())
        assert on_disk == info
        assert list(on_disk) == list(REAL_POINT_INFO)  # same keys, same order as the real file
        _check_point_info_relations(on_disk, atol=1e-9)
        assert on_disk["point_uuid"] == str(point) and on_disk["view_id"] == view
        assert on_disk["field_of_view_rads"] == FIELD_OF_VIEW_RADS and on_disk["resolution"] == size
        assert 1.5 <= on_disk["camera_distance"] <= 4.0
        assert sorted(on_disk["nonfixated_points_in_view"]) == [q for q in range(fixture["points"]) if q != point]
        assert len(on_disk["camera_uuid"]) == 32 and int(on_disk["camera_uuid"], 16) >= 0
        R = euler_sxyz_to_matrix(on_disk["camera_rotation_final"])
        assert abs(R[2, 0]) < 1e-12  # roll 0: the camera's x axis is horizontal
        room = fixture["rooms"][building]
        assert on_disk["bounding_box_ranges"] == {"x": room["y"], "y": room["x"], "z": room["z"]}
        first = fixture["point_info"][(building, point, 0)]
        for field in ("point_location", "point_normal", "bounding_box_ranges", "room"):
            assert on_disk[field] == first[field]
        # cam_to_world (OpenCV): the optical axis +z goes through the fixated point
        T = np.array(fixture["cameras"][(building, point, view)]["cam_to_world"])
        assert T.shape == (4, 4)
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(T[:3, 3], on_disk["camera_location"])
        p_cam = np.linalg.inv(T) @ np.array(on_disk["point_location"] + [1.0])
        np.testing.assert_allclose(p_cam[:3], [0, 0, on_disk["camera_distance"]], atol=1e-9)
        assert T[2, 1] < 1e-9  # image y (down) never points up in the world: the camera is upright
    rooms = {fixture["point_info"][(b, 0, 0)]["room"] for b in fixture["buildings"]}
    assert len(rooms) == len(fixture["buildings"])
