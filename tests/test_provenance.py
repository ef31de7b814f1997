"""The code version that checkpoints and the report record: dirty only when code or params changed."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from taskonomy.provenance import git_describe

pytestmark = pytest.mark.skipif(subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
                                reason="git is not installed")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(repo), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "taskonomy").mkdir()
    (tmp_path / "taskonomy" / "code.py").write_text("x = 1\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "README.md").write_text("old report\n")
    (tmp_path / "params.yaml").write_text("a: 1\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "c")
    return tmp_path


def test_a_run_rewriting_its_reports_and_lock_stays_clean(repo):
    clean = git_describe(repo / "taskonomy")
    assert clean and not clean.endswith("-dirty")
    (repo / "reports" / "README.md").write_text("new report\n")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")  # the stages before this one, recorded
    (repo / "reports" / "new.png").write_bytes(b"x")               # untracked: never dirty
    assert git_describe(repo / "taskonomy") == clean


@pytest.mark.parametrize("path", ["taskonomy/code.py", "params.yaml"])
def test_changed_code_or_params_are_dirty(repo, path):
    clean = git_describe(repo)
    (repo / path).write_text("changed\n")
    assert git_describe(repo / "taskonomy") == f"{clean}-dirty"


def test_outside_git_there_is_no_version(tmp_path):
    assert git_describe(tmp_path) is None
