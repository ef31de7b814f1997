"""The target domain (issue 24): other appearance, the same geometry, bytes as deterministic as the source's."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, write_params
from taskonomy.bank import load_split, read_manifest
from taskonomy.bank.render import SPLITS, TARGET_SPLITS, Domain, render_split, render_target_bank
from taskonomy.bank.render import split as split_module
from taskonomy.bank.render.domain import blur, gaussian_weights
from taskonomy.config import ADAPT_SHIFTS, AdaptParams, TargetScenes

# the labels made from the image (from the target image before the sensor's blur and noise); the rest is geometry
IMAGE_LABELS = ("rgb", "edge2d", "keypoint2d", "segment2d")
DEFAULT = Domain(ADAPT_SHIFTS, 0.6)


def _target_test(r, domain):
    return render_split(r, "target_test", domain=domain, scenes_of="test")[0]


def _differing(a: dict, b: dict) -> list[str]:
    assert set(a) == set(b)
    return sorted(name for name in a if a[name].tobytes() != b[name].tobytes())


@pytest.fixture(scope="module")
def tiny(tiny_render):
    return dataclasses.replace(tiny_render, workers=1)


@pytest.fixture(scope="module")
def source(tiny):
    return render_split(tiny, "test")[0]


@pytest.fixture(scope="module")
def target(tiny):
    return _target_test(tiny, DEFAULT)


def test_a_domain_is_its_shifts_in_their_order_at_a_severity():
    assert Domain(("noise", "palette"), 0.5).shift == ("palette", "noise")
    assert Domain.from_params(AdaptParams()) == Domain(ADAPT_SHIFTS, 0.6)
    assert Domain(ADAPT_SHIFTS, 0.0).off and Domain((), 1.0).off and not DEFAULT.off
    with pytest.raises(ValueError, match="unknown shift 'rain'"):
        Domain(("rain",), 0.5)
    with pytest.raises(ValueError, match="severity"):
        Domain(("fog",), 1.5)


@pytest.mark.parametrize("domain", [Domain(ADAPT_SHIFTS, 0.0), Domain((), 0.6)], ids=["severity-0", "no-shift"])
def test_an_off_domain_renders_the_source_bytes(tiny, source, domain, tmp_path):
    a = AdaptParams(shift=list(domain.shift), severity=domain.severity, scenes=TargetScenes(target_train=1))
    render_target_bank(tiny, a, tmp_path)
    target = load_split(tmp_path, "target_test")
    assert set(target.arrays) == set(source)
    for name in source:
        assert target[name].tobytes() == source[name].tobytes(), name
    # and render_split's knob, off, is no knob: the source split as it renders without it
    assert _differing(render_split(tiny, "test", domain=domain)[0], source) == []


def test_the_default_shift_changes_the_image_and_no_geometric_label(source, target):
    assert _differing(target, source) == sorted(IMAGE_LABELS)
    change = np.abs(target["rgb"].astype(np.int16) - source["rgb"]).mean()
    assert change > 15, change                                  # of 255 levels: a domain, not a nudge


def test_2d_labels_come_from_the_target_image_before_the_sensor(tiny, target):
    scene_only = _target_test(tiny, Domain(("palette", "lighting", "fog"), DEFAULT.severity))
    assert _differing(target, scene_only) == ["rgb"]


@pytest.mark.parametrize("shift", ADAPT_SHIFTS)
def test_each_shift_alone_changes_the_image_and_nothing_geometric(tiny, source, shift):
    alone = _target_test(tiny, Domain((shift,), DEFAULT.severity))
    changed = _differing(alone, source)
    # the sensor's shifts reach rgb only; the scene's also the 2D labels computed from its image
    assert changed == (["rgb"] if shift in ("blur", "noise") else sorted(IMAGE_LABELS))


def test_target_train_has_new_scenes(tiny, tmp_path):
    render_target_bank(tiny, AdaptParams(scenes=TargetScenes(target_train=2)), tmp_path)
    assert read_manifest(tmp_path)["splits"] == list(TARGET_SPLITS)
    train = load_split(tmp_path, "target_train")
    assert train.n_views == 2 * tiny.views_per_scene
    assert train.manifest["params"]["domain"] == {"shift": list(ADAPT_SHIFTS), "severity": 0.6}
    first = np.asarray(train["cam_to_world"][:tiny.views_per_scene])
    for split in SPLITS:
        other = render_split(tiny, split, n_scenes=1)[0]["cam_to_world"]
        assert not np.array_equal(first, other), split


def test_bytes_do_not_depend_on_workers_chunks_or_view_slices(tiny, target, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        parallel = _target_test(dataclasses.replace(tiny, workers=2, chunk_scenes=1), DEFAULT)
    finally:
        torch.set_num_threads(threads)
    assert _differing(parallel, target) == []
    # per-pixel passes of 4 views: a scene's 6 views (and its noise stream) cut across two passes
    monkeypatch.setattr(split_module, "DENSE_PIXELS", 4 * tiny.resolution ** 2)
    assert _differing(_target_test(dataclasses.replace(tiny, chunk_scenes=5), DEFAULT), target) == []


def test_blur_is_a_normalised_gaussian_with_replicated_edges():
    weights = gaussian_weights(1.0)
    assert len(weights) == 7 and weights == weights[::-1] and abs(sum(weights) - 1) < 1e-6
    flat = torch.full((3, 2, 8 * 8), 0.25)
    assert torch.allclose(blur(flat, 8, 1.0), flat, atol=1e-7)      # a constant image stays (edges replicated)
    impulse = torch.zeros(1, 1, 9 * 9)
    impulse[0, 0, 4 * 9 + 4] = 1
    out = blur(impulse, 9, 1.0).reshape(9, 9)
    w = torch.tensor(weights)
    assert torch.allclose(out[1:8, 1:8], w[:, None] * w[None, :])


# The target domain's bytes with every library's AVX-512 dispatch off, as in tests/test_render.py
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR", "NUMBA_CPU_NAME": "haswell"}
_DIGEST = """
import hashlib, json, sys, torch
from taskonomy.config import ADAPT_SHIFTS, RenderParams, from_dict
from taskonomy.bank.render import Domain, render_split
r = from_dict(RenderParams, json.loads(sys.argv[1]), "render")
arrays, _ = render_split(r, "target_test", domain=Domain(ADAPT_SHIFTS, 0.6), scenes_of="test")
digest = hashlib.sha256(b"".join(arrays[name].tobytes() for name in sorted(arrays))).hexdigest()
print(torch.backends.cpu.get_cpu_capability(), digest)
"""


def test_target_bytes_do_not_depend_on_the_instruction_set():
    """Fog, blur and noise keep to exactly rounded operations: the same bytes with AVX2 as with AVX-512
    (on an AVX2 machine both runs are the same run). The default's resolution, 30 scenes."""
    params = json.dumps({"resolution": 32, "scenes": {"train": 1, "transfer": 1, "test": 30}, "workers": 1})
    here, avx2 = (subprocess.run([sys.executable, "-c", _DIGEST, params], capture_output=True, text=True,
                                 check=True, env={**os.environ, **extra}).stdout.split()
                  for extra in ({}, AVX2_ONLY))
    assert avx2[0] == "AVX2" and here[0] == torch.backends.cpu.get_cpu_capability()
    assert here[1] == avx2[1]


def test_stage_writes_both_splits_the_domain_and_the_figure(tmp_path):
    params = write_params(tmp_path / "params.yaml", {
        "tasks": {"rgb2depth": {}}, "train_task": {"bottleneck_stride": 4},
        "render": {"resolution": 16, "scenes": {"train": 1, "transfer": 1, "test": 2}, "views_per_scene": 6,
                   "sample_scenes": 2, "workers": 1},
        "adapt": {"shift": ["fog", "palette"], "severity": 0.5, "scenes": {"target_train": 3},
                  "tasks": ["rgb2depth"], "methods": {}}})
    out, figure, timing = tmp_path / "target", tmp_path / "adapt" / "domains.png", tmp_path / "timing.json"
    result = subprocess.run([sys.executable, str(ROOT / "stages" / "render_target.py"), "--params", str(params),
                             "--out", str(out), "--figures", str(figure), "--timing", str(timing)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    domain = {"shift": ["palette", "fog"], "severity": 0.5}
    assert read_manifest(out)["splits"] == list(TARGET_SPLITS) and read_manifest(out)["params"]["domain"] == domain
    for split, scenes in (("target_train", 3), ("target_test", 2)):
        loaded = load_split(out, split)
        assert loaded.n_views == scenes * 6 and loaded.manifest["params"]["domain"] == domain
    assert load_split(out, "target_test").manifest["scenes_of"] == "test"
    assert figure.stat().st_size > 1000 and json.loads(timing.read_text())["seconds"] > 0
    assert "rendered the target domain (palette + fog at severity 0.5)" in result.stderr
