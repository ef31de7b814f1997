"""Params profiles (configs/*.yaml): every committed one is a valid params file over the default, and the
two ways of switching to it (in place, as a DVC experiment's -S arguments) give the same params."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from taskonomy.config import as_dict, bank_bytes, disk_warnings, dvc_cache_type, load_params
from taskonomy.errors import ParamsError
from taskonomy.profiles import PROFILES, apply_profile, leaves, load_profile, merge, set_args

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted(p.stem for p in PROFILES.glob("*.yaml"))


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskonomy", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_gpu_profiles_are_committed():
    assert {"gpu-128", "gpu-256"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_profile_passes_check_params(name):
    """What CI checks of a configuration no CI machine can run: `taskonomy check-params --profile`."""
    proc = _cli("check-params", "params.yaml", "--profile", name)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("params.yaml: ok (26 tasks, 22 targets)")


@pytest.mark.parametrize("name", ["gpu-128", "gpu-256"])
def test_gpu_profiles_say_what_the_issue_asks(name):
    p = load_params(ROOT / "params.yaml", load_profile(name))
    res = {"gpu-128": 128, "gpu-256": 256}[name]
    assert p.render.resolution == res and p.train_task.device == "cuda" == p.transfer.device
    assert res // p.train_task.bottleneck_stride == 16 and p.train_task.bottleneck_channels == 8  # 16 x 16 x 8
    assert p.train_task.epoch_items == 0 and p.transfer.epoch_items == 0                         # whole-split epochs
    assert all(t.epoch_items in (None, 0) for t in p.tasks.values())
    assert p.transfer.beam == 5 and p.transfer.decoder_width == 0 and p.transfer.max_order == 4
    assert p.train_task.eval_every > 1


def test_apply_keeps_comments_and_equals_the_merge(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    overlay = load_profile("gpu-128")
    changed = apply_profile(params, overlay)
    text = params.read_text()
    assert "# Parameters of the whole pipeline" in text and "# resamples of the readout seeds" in text
    assert "render.resolution" in changed and "transfer.seed" not in changed
    merged = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), overlay)
    assert as_dict(load_params(params)) == as_dict(load_params(ROOT / "params.yaml", overlay))
    assert yaml.safe_load(text) == merged
    assert apply_profile(params, overlay) == []                       # applied twice: nothing changes


def test_set_args_name_every_leaf_once():
    overlay = {"render": {"resolution": 128, "scenes": {"train": 8}}, "train_task": {"arch": "resnet18"},
               "finetune": {"sizes": [1, 2]}, "adapt": {"methods": {"dann": ["rgb2depth"]}}}
    assert set_args(overlay) == ["-S", "render.resolution=128", "-S", "render.scenes.train=8",
                                 "-S", "train_task.arch=resnet18", "-S", "finetune.sizes=[1,2]",
                                 "-S", 'adapt.methods.dann=["rgb2depth"]']
    assert [k for k, _ in leaves(overlay)] == ["render.resolution", "render.scenes.train", "train_task.arch",
                                               "finetune.sizes", "adapt.methods.dann"]


def test_profile_cli_lists_applies_and_refuses(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    listed = _cli("profile", "gpu-128", cwd=tmp_path)
    assert listed.returncode == 0 and "render.resolution: 128" in listed.stdout
    applied = _cli("profile", "gpu-128", "--apply", cwd=tmp_path)
    assert applied.returncode == 0 and "params set from profile gpu-128" in applied.stdout
    assert load_params(tmp_path / "params.yaml").render.resolution == 128
    missing = _cli("profile", "gpu-512", cwd=tmp_path)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "gpu-512.yaml: no such profile (known in configs/: " in missing.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_task: {batch_size: 0}\n")
    refused = _cli("profile", str(bad), "--apply", cwd=tmp_path)
    assert refused.returncode == 2 and "train_task.batch_size" in refused.stderr
    assert load_params(tmp_path / "params.yaml").train_task.batch_size == 256   # nothing written


def test_a_bank_dvc_would_copy_is_a_warning(tmp_path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    analytics = false\n")
    p = load_params(ROOT / "params.yaml", load_profile("gpu-128"))
    assert 28 * 2 ** 30 < bank_bytes(p.render) < 34 * 2 ** 30             # the issue's 31 GB
    assert dvc_cache_type(tmp_path) == "reflink,copy"
    [line] = disk_warnings(p, tmp_path)
    assert "second copy" in line and "dvc config cache.type" in line
    (tmp_path / ".dvc" / "config.local").write_text("[cache]\n    type = reflink,hardlink,symlink,copy\n")
    assert disk_warnings(p, tmp_path) == []
    assert disk_warnings(load_params(ROOT / "params.yaml"), ROOT) == []    # the CPU default's bank is small


def test_a_malformed_profile_is_one_line(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("render: [1, 2\n")
    with pytest.raises(ParamsError, match=r"p.yaml: not valid YAML \(line"):
        load_profile(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ParamsError, match="a mapping of the params it changes"):
        load_profile(bad)


@pytest.mark.parametrize("name", ["gpu-128", "gpu-256"])
def test_gpu_profile_networks_build_and_run(name):
    """The profile's task networks at their resolution (a dense one, a pair one): the shapes hold on CPU."""
    import torch

    from taskonomy.nets.models import build_task_network
    from taskonomy.tasks import get_task

    p = load_params(ROOT / "params.yaml", load_profile(name))
    r = p.render.resolution
    torch.manual_seed(0)
    for task, k in ((get_task("rgb2sfnorm"), 1), (get_task("fix_pose"), 2)):
        net = build_task_network(task, p.train_task, r).eval()
        with torch.no_grad():
            out = net(torch.randn(2, k, 3, r, r))
        assert out.shape == (2, *task.output_shape(r))
        assert net.encoder(torch.randn(1, 3, r, r)).shape == (1, 8, 16, 16)


def test_set_args_through_dvc_give_the_profile(tmp_path):
    """`dvc exp run $(taskonomy profile NAME --set-args)`: DVC's own override parser, applied to a copy of
    params.yaml, yields the same params as the profile merged in."""
    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    overlay = load_profile("gpu-128")
    args = set_args(overlay)
    apply_overrides(str(params), [args[i + 1] for i in range(0, len(args), 2)])
    assert as_dict(load_params(params)) == as_dict(load_params(ROOT / "params.yaml", overlay))
