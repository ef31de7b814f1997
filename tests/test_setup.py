"""The README's commands: `make repro` runs the stages with the environment's python."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_repro_runs_the_stages_with_the_environments_python(tmp_path):
    """dvc.yaml's commands say `python`; from a fresh shell (no venv activated) that must still be
    .venv's, which has torch, not whatever python the PATH holds."""
    shutil.copy2(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    # a stand-in dvc that records which python a stage command would get
    (bin_dir / "dvc").write_text(f"#!/bin/sh\ncommand -v python > {tmp_path / 'python_used'}\n")
    (bin_dir / "python").write_text("#!/bin/sh\n")
    for tool in ("dvc", "python"):
        (bin_dir / tool).chmod(0o755)
    stamp = bin_dir.parent / ".installed"
    stamp.touch()
    os.utime(tmp_path / "pyproject.toml", (0, 0))     # the environment is up to date: no install
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run(["make", "-s", "repro"], cwd=tmp_path, env=env, check=True, capture_output=True)
    assert (tmp_path / "python_used").read_text().strip() == str(bin_dir / "python")
