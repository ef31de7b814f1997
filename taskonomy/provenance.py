"""Where a result came from: the code version recorded in checkpoints and shown in the report."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import taskonomy

PACKAGE_DIR = Path(taskonomy.__file__).parent


# the pipeline's own tracked files: a run rewrites them, so they do not make the code dirty (and a stage's
# checkpoint does not record "-dirty" for a lock that the stages before it happened to have rewritten)
OUTPUTS = ("reports", "dvc.lock")


def _git(where: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_describe(where: Path) -> str | None:
    """``git describe --always --tags`` of the checkout at ``where``, with ``-dirty`` when a tracked file
    other than the pipeline's own (``reports/``, ``dvc.lock``) differs from the commit; None outside git.

    (``git describe --dirty`` counts every tracked file, so a run marks itself dirty as soon as its first
    stage rewrites ``reports/``; the code and params are what the version must vouch for.)"""
    describe = _git(where, "describe", "--always", "--tags")
    if not describe:
        return None
    changed = _git(where, "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                   *(f":(top,exclude){path}" for path in OUTPUTS))
    return f"{describe}-dirty" if changed else describe


def code_version(package_dir: Path | None = None) -> dict[str, str]:
    """``git describe`` (or the package version) and a sha256 over every ``*.py`` of the package."""
    package_dir = Path(package_dir or PACKAGE_DIR)
    digest = hashlib.sha256()
    for py in sorted(package_dir.rglob("*.py")):
        digest.update(py.relative_to(package_dir).as_posix().encode() + b"\0" + py.read_bytes())
    return {"version": git_describe(package_dir) or taskonomy.__version__, "package": taskonomy.__version__,
            "code_sha256": digest.hexdigest()}
