"""The real-data source: a Taskonomy download (tests/taskonomy_fixture.py writes one in the real format) read
into the bank format, in each of the three layouts, and every bad input as one line naming the file."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, write_params
from taskonomy.bank import load_split, load_splits
from taskonomy.bank.real import pairs, read_split_csv, read_taskonomy_bank
from taskonomy.bank.real.decode import decode_view
from taskonomy.bank.real.layout import detect_layout, list_download
from taskonomy.config import RenderParams, TaskonomyDataParams, from_dict
from taskonomy.errors import DataError
from taskonomy.tasks import IGNORE_INDEX, get_task, per_item_loss, task_names, trivial_losses
from taskonomy_fixture import write_taskonomy_fixture

ALL_TASKS = task_names()


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    root = tmp_path_factory.mktemp("taskonomy")
    return write_taskonomy_fixture(root, size=32)


def params(root, **taskonomy) -> RenderParams:
    t = {"root": str(root), "split_file": str(Path(root) / "train_val_test_fixture.csv"), **taskonomy}
    return from_dict(RenderParams, {"source": "taskonomy", "resolution": 16, "workers": 1, "taskonomy": t}, "render")


@pytest.fixture(scope="module")
def real_bank(download, tmp_path_factory):
    out = tmp_path_factory.mktemp("bank") / "bank"
    read_taskonomy_bank(params(download["root"]), out, ALL_TASKS)
    return out


def test_each_domain_is_decoded_as_the_release_encodes_it(download):
    key = ("allensville", 1, 2)
    files, truth, info = download["files"][key], download["truth"][key], download["point_info"][key]
    view = decode_view(files, download["size"])                      # the native size: no resizing
    valid = truth["valid"]
    assert np.array_equal(view["mask"][0], valid)
    depth = view["rgb2depth"][0].astype(np.float64)
    assert np.allclose(depth[valid], truth["depth_zbuffer_m"][valid], rtol=1e-3)   # float16 of value / 512
    assert (view["rgb2mist"][0][valid] >= view["rgb2depth"][0][valid] - 1e-2).all()
    normal = view["rgb2sfnorm"].astype(np.float64)
    cosine = (normal.transpose(1, 2, 0)[valid] * truth["normal_cam"][valid]).sum(1)
    assert np.median(cosine) > 0.999                                 # 8-bit codes of unit normals
    labels = truth["segment_semantic"]
    stored = view["segmentsemantic"][0]
    assert (stored[labels == 0] == IGNORE_INDEX).all() and (stored[labels > 0] == labels[labels > 0] - 1).all()
    logits = truth["class_object_logits"].astype(np.float64)
    assert np.allclose(view["class_object"], np.exp(logits) / np.exp(logits).sum(), atol=1e-6)
    assert view["class_scene"] == truth["class_scene_probs"].argmax()
    assert np.allclose(view["cam_to_world"], np.array(download["cameras"][key]["cam_to_world"]), atol=1e-5)
    assert np.allclose(view["fixation_point"], info["point_location"], atol=1e-6)
    # the fixated point is on the optical axis of the OpenCV camera (z forward), camera_distance away
    pose = view["cam_to_world"].astype(np.float64)
    in_camera = pose[:3, :3].T @ (np.array(info["point_location"]) - pose[:3, 3])
    assert np.allclose(in_camera, [0, 0, info["camera_distance"]], atol=1e-4)
    # vanishing points: z is the world's vertical; x and y the horizontal axes up to sign and a quarter turn
    axes = view["vanishing_point"].reshape(3, 3).astype(np.float64)
    world_in_camera = pose[:3, :3].T                                 # columns: world axes in the camera frame
    assert abs(abs(axes[2] @ world_in_camera[:, 2]) - 1) < 1e-5
    for row in axes[:2]:
        assert max(abs(row @ world_in_camera[:, 0]), abs(row @ world_in_camera[:, 1])) > 1 - 1e-5
    # room layout: the box (ranges un-swapped) centre in the camera frame and its extents
    room = download["rooms"]["allensville"]
    box = np.array([room[k] for k in "xyz"])
    assert np.allclose(view["room_layout"][7:], box[:, 1] - box[:, 0], atol=1e-5)
    assert np.allclose(view["room_layout"][:3], pose[:3, :3].T @ (box.mean(1) - pose[:3, 3]), atol=1e-4)
    assert abs(view["room_layout"][4]) < 1e-5                        # roll 0, as in every Taskonomy view


def test_resizing_averages_valid_pixels_and_keeps_labels(download):
    key = ("beechwood", 0, 0)
    view = decode_view(download["files"][key], 8)
    truth = download["truth"][key]
    assert view["rgb"].shape == (3, 8, 8) and view["rgb"].dtype == np.uint8
    assert view["mask"].shape == (1, 8, 8) and view["rgb2depth"].shape == (1, 8, 8)
    # a bank pixel's depth is the mean of the valid metres it covers (4 x 4 native pixels each)
    metres, valid = truth["depth_zbuffer_m"].astype(np.float64), truth["valid"]
    block = (slice(0, 4), slice(0, 4))
    if valid[block].mean() >= 0.5:
        assert np.isclose(float(view["rgb2depth"][0, 0, 0]), metres[block][valid[block]].mean(), rtol=2e-2)
    labels = set(np.unique(view["segmentsemantic"])) - {IGNORE_INDEX}
    assert labels <= set(range(17))


def test_the_three_layouts_give_the_same_bank(download, real_bank, tmp_path):
    banks = {"omnidata": real_bank}
    for layout in ("flat", "legacy"):
        root = tmp_path / layout
        info = write_taskonomy_fixture(root, layout=layout, size=32)
        assert detect_layout(root) == layout
        banks[layout] = tmp_path / f"bank-{layout}"
        read_taskonomy_bank(params(info["root"]), banks[layout], ALL_TASKS)
    for split in ("train", "transfer", "test"):
        ref = load_split(banks["omnidata"], split)
        for layout in ("flat", "legacy"):
            other = load_split(banks[layout], split)
            assert set(ref.arrays) == set(other.arrays)
            for name in ref.arrays:
                assert np.array_equal(ref[name], other[name]), (layout, split, name)


def test_splits_follow_the_buildings_and_every_task_loads(download, real_bank):
    splits = load_splits(real_bank)
    csv = read_split_csv(download["split_csv"])
    assert csv == {"train": download["splits"]["train"], "transfer": download["splits"]["val"],
                   "test": download["splits"]["test"]}
    views_per_building = download["points"] * download["views"]
    for name, split in splits.items():
        assert split.manifest["buildings"] == csv[name]
        assert split.n_views == views_per_building * len(csv[name])
    from taskonomy.nets.data import fit_stats, load_task_data
    train, test = splits["train"], splits["test"]
    for name in ALL_TASKS:
        task = get_task(name)
        if not task.trainable:
            continue
        data = load_task_data(test, task, fit_stats(task, train))
        assert len(data) > 0, name
        assert torch.isfinite(data.target.float()).all() if data.target.is_floating_point() else True


def test_pairs_are_built_from_the_views_that_share_a_point(real_bank):
    split = load_split(real_bank, "train")
    point, building = np.asarray(split["point_id"]), np.asarray(split["scene_id"])
    fixation = np.asarray(split["fixation_point"])
    fixed = np.asarray(split["fix_pose_index"])
    assert len(fixed) and (point[fixed[:, 0]] == point[fixed[:, 1]]).all()
    assert (building[fixed[:, 0]] == building[fixed[:, 1]]).all() and (fixed[:, 0] != fixed[:, 1]).all()
    free = np.asarray(split["non_fixated_pose_index"])
    assert len(free) and (point[free[:, 0]] != point[free[:, 1]]).all()
    assert (building[free[:, 0]] == building[free[:, 1]]).all()
    triplets = np.asarray(split["ego_motion_index"])
    assert len(triplets) and (point[triplets] == point[triplets[:, :1]]).all()
    match, label = np.asarray(split["point_match_index"]), np.asarray(split["point_match"])
    same = np.all(np.isclose(fixation[match[:, 0]], fixation[match[:, 1]]), axis=1)
    assert np.array_equal(same, label == 1) and 0 < label.mean() < 1
    # the relative pose of b w.r.t. a maps camera a's frame to camera b's
    from taskonomy.bank.render.views import pose_matrix
    pose = np.asarray(split["cam_to_world"], dtype=np.float64)
    a, b = fixed[0]
    expected = np.linalg.inv(pose[b]) @ pose[a]
    assert np.allclose(pose_matrix(np.asarray(split["fix_pose"][0], dtype=np.float64)), expected, atol=1e-4)


def test_pairs_are_capped_per_point():
    views = [("b", (p, v)) for p in range(3) for v in range(6)]
    visible = [[q for q in range(3) if q != p] for _, (p, _) in views]
    out = pairs(views, visible, cap=4, seed=0)
    assert len(out["fix_pose_index"]) == 3 * 6 * 5                    # every fixated pair
    assert len(out["ego_motion_index"]) == 3 * 4 and len(out["non_fixated_pose_index"]) == 3 * 4
    assert np.array_equal(out["point_match"], np.r_[np.ones(90), np.zeros(12)])
    again = pairs(views, visible, cap=4, seed=0)
    assert all(np.array_equal(out[k], again[k]) for k in out)


def test_the_ignore_label_has_no_loss():
    task = get_task("segmentsemantic").with_outputs(4)
    target = torch.tensor([[[0, 1], [2, IGNORE_INDEX]]])
    pred = torch.randn(1, 4, 2, 2)
    loss = per_item_loss(task, pred, target)
    labelled = torch.nn.functional.cross_entropy(pred, target.clamp(max=3), reduction="none")[0].flatten()[:3]
    assert torch.allclose(loss, labelled.mean().unsqueeze(0))
    trivial = trivial_losses(task, target, target)
    assert torch.isfinite(trivial).all()


def test_max_points_keeps_whole_points(download, tmp_path):
    out = tmp_path / "bank"
    read_taskonomy_bank(params(download["root"], max_points={"train": 2}), out, ALL_TASKS)
    split = load_split(out, "train")
    assert split.n_views == 2 * download["views"]
    keys = set(zip(np.asarray(split["scene_id"]), np.asarray(split["point_id"])))
    assert len(keys) == 2


# --------------------------------------------------------------------------------------------------
# Bad input: one line naming the file, nothing prepared damaged
# --------------------------------------------------------------------------------------------------

@pytest.fixture
def scratch(tmp_path):
    info = write_taskonomy_fixture(tmp_path / "data", size=16, points=2, views=3,
                                   buildings=("allensville", "beechwood", "cosmos", "darden"))
    bank = tmp_path / "bank"
    read_taskonomy_bank(params(info["root"]), bank, ALL_TASKS)
    before = {p: p.read_bytes() for p in sorted(bank.rglob("*")) if p.is_file()}
    return info, bank, before


def _fails(info, bank, before, match, **taskonomy):
    with pytest.raises(DataError, match=match) as err:
        read_taskonomy_bank(params(info["root"], **taskonomy), bank, ALL_TASKS)
    assert "\n" not in str(err.value)
    after = {p: p.read_bytes() for p in sorted(bank.rglob("*")) if p.is_file()}
    assert after == before                                            # the earlier bank is as it was
    assert not [p for p in bank.parent.iterdir() if p.name.startswith(".bank.")]
    return str(err.value)


def test_a_root_with_no_layout_says_what_was_looked_for(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError, match="no Taskonomy layout recognised") as err:
        list_download(tmp_path)
    assert all(p in str(err.value) for p in ("<root>/<domain>/taskonomy/<building>/", "<root>/<building>/<domain>/"))


def test_a_missing_view_names_the_file(scratch):
    info, bank, before = scratch
    missing = info["files"][("darden", 1, 2)]["normal"]
    missing.unlink()
    message = _fails(info, bank, before, "missing")
    assert str(missing) in message


def test_a_corrupt_png_names_the_file(scratch):
    info, bank, before = scratch
    path = info["files"][("cosmos", 0, 1)]["reshading"]
    path.write_bytes(path.read_bytes()[:60])
    assert str(path) in _fails(info, bank, before, "corrupt or truncated")


def test_an_8_bit_file_where_16_bit_is_expected_names_the_file(scratch):
    info, bank, before = scratch
    path = info["files"][("allensville", 1, 0)]["depth_zbuffer"]
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(path)
    assert str(path) in _fails(info, bank, before, "8-bit L image, but depth_zbuffer is stored as 16-bit")


def test_a_json_without_a_needed_key_names_the_file_and_key(scratch):
    info, bank, before = scratch
    path = info["files"][("beechwood", 0, 0)]["point_info"]
    path.write_text('{"camera_location": [0, 0, 0]}')
    assert str(path) in _fails(info, bank, before, "no key 'camera_rotation_final'")


def test_class_files_of_different_lengths_name_the_file(scratch):
    info, bank, before = scratch
    path = info["files"][("allensville", 0, 2)]["class_object"]
    np.save(path, np.zeros(999, np.float32))
    assert str(path) in _fails(info, bank, before, "999 classes, but")


def test_a_listed_task_whose_domain_is_missing_names_the_folder(scratch):
    info, bank, before = scratch
    import shutil
    shutil.rmtree(info["root"] / "principal_curvature")
    message = _fails(info, bank, before, "task curvature needs the principal_curvature domain")
    assert str(info["root"] / "principal_curvature" / "taskonomy" / "allensville") in message
    # unlisted, it is skipped: the bank is read without it
    read_taskonomy_bank(params(info["root"]), bank, [t for t in ALL_TASKS if t != "curvature"])
    assert "curvature" not in load_split(bank, "train")


def test_a_split_with_no_building_on_disk_is_one_line(scratch):
    info, bank, before = scratch
    _fails(info, bank, before, "none of the test split's buildings", buildings={"test": ["woodbine"]})


def test_the_stage_and_check_params_stop_with_one_line_and_exit_2(download, tmp_path):
    tasks = {"rgb2depth": {}, "curvature": {}, "random": {"source_only": True}}
    root = tmp_path / "partial"
    write_taskonomy_fixture(root, size=16, points=1, views=2, domains=("rgb", "depth_zbuffer"))
    path = write_params(tmp_path / "params.yaml", {"tasks": tasks, "render": {
        "source": "taskonomy", "resolution": 16, "taskonomy": {"root": str(root),
                                                               "split_file": str(root / "train_val_test_fixture.csv")}}})
    for cmd in ([sys.executable, "-m", "taskonomy", "check-params", str(path)],
                [sys.executable, str(ROOT / "stages/render.py"), "--params", str(path), "--out", str(tmp_path / "b"),
                 "--figures", str(tmp_path / "f")]):
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert "principal_curvature" in lines[-1] and "task curvature" in lines[-1]
    assert not any((tmp_path / "b").rglob("*")) if (tmp_path / "b").exists() else True   # nothing written


def test_source_taskonomy_needs_a_root():
    from taskonomy.errors import ParamsError
    bad = dataclasses.replace(RenderParams(), source="taskonomy", taskonomy=TaskonomyDataParams())
    from taskonomy.config import Params, TaskParams, _check_params
    with pytest.raises(ParamsError, match="render.taskonomy.root"):
        _check_params(Params(tasks={"rgb2depth": TaskParams()}, render=bad))


# --------------------------------------------------------------------------------------------------
# End to end: `dvc repro taxonomy` on a download in the real format
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_taxonomy_half_runs_on_real_format_data(tmp_path):
    import yaml
    from conftest import make_dvc_repo

    info = write_taskonomy_fixture(tmp_path / "download", layout="legacy", size=32, points=4, views=3)
    tasks = {"rgb2depth": {"source_only": False}, "segmentsemantic": {"source_only": False},
             "class_scene": {"source_only": False}, "room_layout": {"source_only": False},
             "fix_pose": {"source_only": False}, "point_match": {"source_only": False},
             "jigsaw": {"source_only": True}, "random": {"source_only": True}}
    repo = make_dvc_repo(tmp_path, {
        "render": {"source": "taskonomy", "resolution": 16, "workers": 1, "sample_scenes": 1,
                   "taskonomy": {"root": str(info["root"]), "split_file": str(info["split_csv"])}},
        "train_task": {"width": 4, "epochs": 1, "batch_size": 8, "threads": 1},
        "transfer": {"epochs": 1, "batch_size": 8, "max_order": 2, "beam": 3, "workers": 1},
        "taxonomy": {"budgets": [1, 2], "max_orders": [1, 2]},
        "finetune": {"targets": ["rgb2depth"], "budget": 1, "max_order": 1},
        "multitask": {"tasks": ["rgb2depth", "segmentsemantic"], "groupings": ["single"], "budget": 1, "max_order": 1},
        "adapt": {"tasks": ["rgb2depth"]}})
    params = yaml.safe_load((repo.path / "params.yaml").read_text())
    params["tasks"], params["adapt"]["methods"] = tasks, {}      # replaced, not merged
    # a user's own encoder (the original task bank's architecture) as a source beside the task networks
    from taskonomy.nets.external import TaskbankEncoder
    torch.manual_seed(0)
    weights = tmp_path / "weights" / "taskbank_normal.pth"
    weights.parent.mkdir()
    torch.save({"state_dict": TaskbankEncoder().state_dict()}, weights)
    params["encoders"] = {"taskbank_normal": {"path": str(weights), "arch": "taskonomy"}}
    (repo.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repo.run("git", "commit", "-qam", "real data")
    proc = repo.dvc("repro", "taxonomy", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bank = load_splits(repo.path / "data/bank")
    assert bank["test"].manifest["buildings"] == info["splits"]["test"]
    affinities = (repo.path / "reports/affinities.csv").read_text()
    for target in ("rgb2depth", "segmentsemantic", "class_scene", "room_layout", "fix_pose", "point_match"):
        assert target in affinities
    grid = (repo.path / "reports/taxonomy/grid.csv").read_text().splitlines()
    assert len(grid) > 1
    assert "Running stage 'encoder@taskbank_normal'" in proc.stdout
    first = (repo.path / "reports/affinity/first_order_affinities.csv").read_text().splitlines()
    assert any(line.startswith("taskbank_normal,") for line in first)
    with np.load(repo.path / "outputs/transfer/taskbank_normal/losses.npz") as z:
        assert set(z.files) == {t for t, p in tasks.items() if not p["source_only"]}
    assert repo.dvc("status", "taxonomy").stdout.strip().endswith("up to date.")


def test_domains_restrict_what_is_read_and_a_task_outside_them_is_named(scratch):
    info, bank, before = scratch
    message = _fails(info, bank, before, "not in render.taskonomy.domains", domains=["depth_zbuffer"])
    assert "task rgb2mist needs the depth_euclidean domain" in message
    read_taskonomy_bank(params(info["root"], domains=["depth_zbuffer"]), bank, ["rgb2depth", "autoencoder", "random"])
    assert {"rgb", "rgb2depth", "mask", "jigsaw"} <= set(load_split(bank, "test").arrays)
    assert "rgb2mist" not in load_split(bank, "test")
