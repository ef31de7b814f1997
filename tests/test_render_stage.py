"""The render stage end to end: params errors as one line, and `dvc repro render` in a temporary repo."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import yaml

from conftest import ROOT, TINY_RENDER, make_dvc_repo
from taskonomy.bank import load_split, read_manifest
from taskonomy.bank.render import SPLITS


def test_bad_render_value_exits_2_naming_the_key(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["render"]["resolution"] = 4
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, str(ROOT / "stages" / "render.py"), "--params", str(path),
                             "--out", str(tmp_path / "bank"), "--figures", str(tmp_path / "figures")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "render.resolution" in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "bank").exists()


def test_dvc_repro_render(tmp_path):
    repo = make_dvc_repo(tmp_path, {"render": TINY_RENDER, "train_task": {"bottleneck_stride": 4}})
    result = repo.dvc("repro", "render", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    bank = repo.path / "data" / "bank"
    assert read_manifest(bank)["splits"] == list(SPLITS)
    for split in SPLITS:
        loaded = load_split(bank, split)
        assert loaded.n_views == TINY_RENDER["scenes"][split] * TINY_RENDER["views_per_scene"]
        assert loaded["rgb"].shape[-1] == TINY_RENDER["resolution"]
    assert (repo.path / "reports" / "figures" / "bank_samples.png").stat().st_size > 1000
    lock = yaml.safe_load((repo.path / "dvc.lock").read_text())
    assert set(lock["stages"]["render"]["params"]["params.yaml"]) == {"render"}
    # a no-op repro does not rerun; the rendered bytes are reproducible
    first = np.array(load_split(bank, "test")["rgb"])
    again = repo.dvc("repro", "render")
    assert "didn't change" in again.stdout or "is cached" in again.stdout or "up to date" in again.stdout.lower()
    assert np.array_equal(first, load_split(bank, "test")["rgb"])
