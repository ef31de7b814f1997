"""Where a result came from: the code version recorded in checkpoints and shown in the report."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import taskonomy

PACKAGE_DIR = Path(taskonomy.__file__).parent


def git_describe(where: Path) -> str | None:
    """``git describe --always --dirty --tags`` of the checkout at ``where``; None outside git."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=where,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def code_version(package_dir: Path | None = None) -> dict[str, str]:
    """``git describe`` (or the package version) and a sha256 over every ``*.py`` of the package."""
    package_dir = Path(package_dir or PACKAGE_DIR)
    digest = hashlib.sha256()
    for py in sorted(package_dir.rglob("*.py")):
        digest.update(py.relative_to(package_dir).as_posix().encode() + b"\0" + py.read_bytes())
    return {"version": git_describe(package_dir) or taskonomy.__version__, "package": taskonomy.__version__,
            "code_sha256": digest.hexdigest()}
