"""Shared fixtures: a tiny rendered split, and a temporary copy of the repository for `dvc repro`.

``make_dvc_repo(tmp_path, params_overrides)`` follows docs (dvc-notes.md, "Testing dvc repro in
pytest"): copy the project's files (tracked and untracked, not ignored) into ``tmp_path``, ``git init``,
``dvc init`` before copying ``.dvc/config``, shrink params, commit once; DVC's config and cache dirs,
analytics and the git identity are isolated through the environment it returns.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


# Small enough for seconds, big enough that every label is meaningful.
TINY_RENDER = {"resolution": 16, "scenes": {"train": 3, "transfer": 2, "test": 2}, "views_per_scene": 6,
               "chunk_scenes": 2, "sample_scenes": 1}


@dataclass(frozen=True)
class DvcRepo:
    path: Path
    env: dict

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=self.path, env=self.env, capture_output=True, text=True,
                              check=check)

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "dvc"), *args, check=check)


def isolated_env(tmp_path: Path, pythonpath: Path) -> dict[str, str]:
    """The environment for git and DVC in a temporary repository: HOME, DVC's config and cache dirs in
    ``tmp_path``, no analytics, a git identity, this environment's executables first on PATH."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ,
            "HOME": str(home), "DVC_NO_ANALYTICS": "1",
            "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"), "DVC_GLOBAL_CONFIG_DIR": str(tmp_path / "dvc-global"),
            "DVC_SYSTEM_CONFIG_DIR": str(tmp_path / "dvc-system"),
            "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
            "GIT_CONFIG_NOSYSTEM": "1", "PYTHONPATH": str(pythonpath),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def make_dvc_repo(tmp_path: Path, params_overrides: dict | None = None) -> DvcRepo:
    """A committed git + DVC copy of the project in ``tmp_path / "repo"`` with params overridden."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = isolated_env(tmp_path, repo)
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if name.startswith(".dvc/") or not source.is_file():
            continue
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(_merge(params, params_overrides or {}), sort_keys=False))

    result = DvcRepo(repo, env)
    result.run("git", "init", "-q")
    result.dvc("init", "-q")
    shutil.copy2(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")      # the plot templates dvc.yaml names
    result.run("git", "add", "-A")
    result.run("git", "commit", "-q", "-m", "test copy")
    return result


def write_params(path: Path, sections: dict) -> Path:
    """A params file of ``sections``, every other section present and empty (the code's defaults; the
    fine-tuned targets: the first target of the task list, at the taxonomy's first budget and order; the
    multi-task study: its first two targets, alone; the adapted tasks: the first target, without
    methods): a file without a section is refused, as DVC refuses it."""
    from taskonomy.config import Params

    raw = {**{f.name: {} for f in fields(Params)}, **sections}
    if not raw["finetune"] and isinstance(raw["tasks"], dict):   # the default targets may not be listed
        targets = [t for t, p in raw["tasks"].items() if not (p or {}).get("source_only") and not (p or {}).get("target_only")]
        raw["finetune"] = {"targets": targets[:1], **{key: raw["taxonomy"][sweep][0] for key, sweep in
                                                       (("budget", "budgets"), ("max_order", "max_orders"))
                                                       if sweep in raw["taxonomy"]}}
    if not raw["multitask"] and isinstance(raw["tasks"], dict):  # nor the default multi-task tasks
        targets = [t for t, p in raw["tasks"].items() if not (p or {}).get("source_only") and not (p or {}).get("target_only")]
        raw["multitask"] = {"tasks": targets[:2], "groupings": ["single"]}
    if not raw["adapt"] and isinstance(raw["tasks"], dict):      # nor the default adapted tasks
        targets = [t for t, p in raw["tasks"].items() if not (p or {}).get("source_only") and not (p or {}).get("target_only")]
        raw["adapt"] = {"tasks": targets[:1], "methods": {}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_tiny_train_params(path: Path, threads: int) -> Path:
    """The default params with task networks shrunk for the fake bank (16x16, width 4, 2 epochs of
    batches of 8, ``threads``) and without the default's per-task overrides (e.g. fix_pose's epochs)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["render"]["resolution"] = 16
    raw["train_task"].update(width=4, head_width=16, epochs=2, batch_size=8, threads=threads)
    for task in raw["tasks"].values():
        for key in ("epochs", "lr", "epoch_items"):
            task.pop(key, None)
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def tiny_render():
    """RenderParams of a tiny bank."""
    from taskonomy.config import RenderParams, from_dict
    return from_dict(RenderParams, TINY_RENDER, "render")
